"""Live checks of the two views: errors block Apply, warnings are shown but allowed.

The angle between the views is the engine's (:meth:`sdfcar.geometry.ViewGeometry.angle_between`
and ``MIN_VIEW_SEPARATION_DEG``, imported when checked: NumPy only, no torch); before
``sdfcar`` is installed into Slicer's Python a warning says it is not checked yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .geometry import ViewSettings

#: Views further apart than this are nearly opposite and see almost the same silhouette.
MAX_SEPARATION_DEG = 160.0


@dataclass(frozen=True)
class Issue:
    """One finding: ``level`` is ``"error"`` or ``"warning"``."""

    level: str
    message: str


@dataclass(frozen=True)
class ViewInput:
    """What the user picked for one view.

    ``image_id`` identifies the selected volume (None when nothing is selected),
    ``image_shape`` is ``(frames, rows, columns)`` and ``frame`` the chosen frame.
    """

    settings: ViewSettings
    image_id: str | None
    image_shape: tuple[int, int, int] | None
    frame: int = 0


def validate_views(views: Sequence[ViewInput]) -> list[Issue]:
    """Every error and warning for the two views, errors first."""
    issues = [issue for index, view in enumerate(views, start=1)
              for issue in _check_view(index, view)]
    if len(views) == 2 and not any(i.level == "error" for i in issues):
        issues += _check_pair(*views)
    return sorted(issues, key=lambda issue: issue.level != "error")


def has_errors(issues: Sequence[Issue]) -> bool:
    """Whether any issue is an error."""
    return any(issue.level == "error" for issue in issues)


def _check_view(index: int, view: ViewInput) -> list[Issue]:
    name = f"View {index}"
    issues = []
    if view.image_id is None or view.image_shape is None:
        return [Issue("error", f"{name}: select an image volume")]
    frames, rows, columns = view.image_shape
    if rows < 2 or columns < 2:
        issues.append(Issue("error", f"{name}: the image is {rows}x{columns} pixels; "
                                     "a 2D angiogram of at least 2x2 pixels is needed"))
    if not 0 <= view.frame < frames:
        issues.append(Issue("error", f"{name}: frame {view.frame} does not exist "
                                     f"(the image has {frames} frame(s))"))
    settings = view.settings
    for label, value in (("primary angle", settings.primary_angle_deg),
                         ("secondary angle", settings.secondary_angle_deg)):
        if not -180.0 <= value <= 180.0:
            issues.append(Issue("error", f"{name}: the {label} must be in [-180, 180] degrees, "
                                         f"got {value:g}"))
    sid, sod = settings.source_to_detector_mm, settings.source_to_isocenter_mm
    if sid <= 0 or sod <= 0:
        issues.append(Issue("error", f"{name}: the source distances must be positive "
                                     f"(SID {sid:g} mm, SOD {sod:g} mm)"))
    elif sod >= sid:
        issues.append(Issue("error", f"{name}: the source-isocenter distance (SOD, {sod:g} mm) "
                                     f"must be less than the source-detector distance (SID, "
                                     f"{sid:g} mm)"))
    if min(settings.detector_spacing_mm) <= 0:
        issues.append(Issue("error", f"{name}: the detector pixel spacing must be positive"))
    return issues


def _check_pair(first: ViewInput, second: ViewInput) -> list[Issue]:
    if first.image_id == second.image_id and first.frame == second.frame:
        return [Issue("error", "View 1 and view 2 are the same image: pick two projections")]
    try:
        from sdfcar.geometry import MIN_VIEW_SEPARATION_DEG, ViewGeometry
    except ImportError:
        return [Issue("warning", "The angle between the views is checked once sdfcar is "
                                 "installed (on the first Apply)")]
    first_view, second_view = (ViewGeometry.from_dict(view.settings.to_contract(
        view.image_shape[1:])) for view in (first, second))
    angle = first_view.angle_between(second_view)
    if angle < MIN_VIEW_SEPARATION_DEG:
        return [Issue("warning", f"The views are only {angle:.1f}\u00b0 apart (between the beam "
                                 f"directions); two views need at least "
                                 f"{MIN_VIEW_SEPARATION_DEG:g}\u00b0, ideally about 90\u00b0, "
                                 "to locate vessels in depth")]
    if angle > MAX_SEPARATION_DEG:
        return [Issue("warning", f"The views are {angle:.1f}\u00b0 apart: nearly opposite views "
                                 "see almost the same silhouette; views about 90\u00b0 apart "
                                 "work best")]
    return []
