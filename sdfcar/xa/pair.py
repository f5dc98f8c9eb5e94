"""Two XA runs -> what the reconstruction consumes.

:func:`prepare_xa_pair` turns two runs into one frame of each (:mod:`sdfcar.xa.frames`),
its vessel mask and line-integral proxy (:mod:`sdfcar.xa.vessels`), a
:class:`~sdfcar.io.case.Case` and a report; :func:`load_xa_pair` returns the case alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from sdfcar.errors import bad_input
from sdfcar.geometry import MIN_VIEW_SEPARATION_DEG, CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.io.case import Case
from sdfcar.physics.contrast import CONTRAST_MU_PER_MM
from sdfcar.physics.placement import placed_grid
from sdfcar.xa.dicom import XARun, read_xa
from sdfcar.xa.pixels import reason
from sdfcar.xa.frames import FrameChoice, choose_frame
from sdfcar.xa.overrides import GeometryOverrides
from sdfcar.xa.table import TableMotion, table_motion
from sdfcar.xa.vessels import (Extraction, VesselParams, extract_vessels, scaled_by_widths,
                               write_extraction)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PreparedView:
    """One run reduced to what the reconstruction needs: a frame, its geometry, its vessel
    mask and line-integral proxy."""

    run: XARun
    choice: FrameChoice
    view: ViewGeometry
    extraction: Extraction
    report: dict[str, Any]


@dataclass(frozen=True)
class XAPair:
    """Two prepared runs: the case (line-integral proxies), the masks and a report."""

    case: Case
    masks: tuple[np.ndarray, np.ndarray]
    views: tuple[PreparedView, PreparedView]
    report: dict[str, Any]

    def write_views(self, folder: str | Path) -> Path:
        """Write each view's 2D step (:func:`sdfcar.xa.vessels.write_extraction`: mask and
        line-integral proxy as NIfTI and PNG, overlay, report) into ``folder/view1`` and
        ``folder/view2``."""
        folder = Path(folder)
        for index, prepared in enumerate(self.views, start=1):
            write_extraction(folder / f"view{index}", prepared.extraction,
                             prepared.run.attenuation(prepared.choice.number),
                             prepared.view.detector_spacing_mm, prepared.report)
        return folder

    def frames_line(self) -> str:
        """One line naming the frame chosen in each run and why."""
        return "; ".join(f"view{index}: frame {p.choice.number} of {p.run.number_of_frames} "
                         f"({p.choice.rule})" for index, p in enumerate(self.views, start=1))

    def warnings(self) -> list[str]:
        """The runs' and the pair's warnings, each once, naming the file where it applies."""
        notes = [f"{p.run.path}: {note}" for p in self.views for note in p.run.warnings]
        return list(dict.fromkeys(notes + list(self.report["warnings"])))


def read_mask(source: str | Path | np.ndarray, shape: tuple[int, int], frame: int = 1,
              frames: int = 1) -> np.ndarray:
    """A user mask (nonzero = vessel) checked against the frame's ``(rows, cols)``.

    ``source`` is an array or an image file: a 2D image, a volume with a single slice, or a
    volume with one slice per frame of the run (as 3D Slicer exports a segmentation drawn
    on a loaded cine run), of which slice ``frame`` (1-based) is used."""
    if isinstance(source, np.ndarray):
        where, mask = "mask", np.asarray(source)
    else:
        where, mask = str(source), _mask_array(Path(source), frame, frames)
    if mask.shape != tuple(shape):
        raise bad_input(where, f"mask has shape {mask.shape} but the frame is "
                               f"{shape[0]}x{shape[1]} (same rows and columns, row 0 at the top)")
    if not np.any(mask > 0):
        raise bad_input(where, "the mask is empty (no nonzero pixel)")
    return mask > 0


def _mask_array(path: Path, frame: int, frames: int) -> np.ndarray:
    if not path.is_file():
        raise bad_input(str(path), "file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise bad_input(str(path), f"cannot read the mask image ({reason(error)})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise bad_input(str(path), "expected a grayscale mask, got "
                                   f"{image.GetNumberOfComponentsPerPixel()} components (RGB?)")
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3 and array.shape[0] in (1, frames):
        return array[0 if array.shape[0] == 1 else frame - 1]
    if array.ndim != 2:
        raise bad_input(str(path), f"expected a 2D mask, a single slice or one slice per frame "
                                   f"({frames}), got shape {array.shape}")
    return array


def prepare_xa_view(path: str | Path, frame: int | None = None,
                    overrides: Mapping[str, Any] | None = None,
                    mask: str | Path | np.ndarray | None = None,
                    mu_per_mm: float | None = None,
                    params: VesselParams = VesselParams()) -> PreparedView:
    """Read one run, choose its frame and extract its vessels (or take ``mask``).

    ``mu_per_mm``: the contrast's attenuation per mm that scales the line-integral proxy;
    None: :data:`~sdfcar.physics.contrast.CONTRAST_MU_PER_MM` for linear pixel data, and for
    display-coded data (LOG, DISP: no recorded scale) the scale at which the proxy along the
    vessels' centrelines equals their widths (:func:`~sdfcar.xa.vessels.scaled_by_widths`)."""
    run = read_xa(path, overrides)
    choice = choose_frame(run, frame, params)
    view = run.view(choice.number)
    user_mask = None if mask is None else read_mask(mask, view.detector_shape, choice.number,
                                                    run.number_of_frames)
    pixel_mm = run.pixel_mm(choice.number)
    extraction = extract_vessels(run.attenuation(choice.number), pixel_mm,
                                 CONTRAST_MU_PER_MM if mu_per_mm is None else mu_per_mm,
                                 user_mask, params)
    if mu_per_mm is None and run.intensity.relationship != "LIN":
        extraction = scaled_by_widths(extraction, pixel_mm)
    if user_mask is not None and not isinstance(mask, np.ndarray):
        extraction.info["mask_file"] = str(mask)
    frame_report = choice.to_dict()
    if run.frame_times_ms is not None:
        frame_report["time_ms"] = float(run.frame_times_ms[choice.number - 1])
    report = {**run.summary(), "frame": frame_report, "geometry": view.to_dict(),
              "extraction": extraction.info}
    return PreparedView(run, choice, view, extraction, report)


def _per_view(value: Any, name: str) -> tuple[Any, Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise bad_input(name, f"expected one value per view (2), got {len(value)}")
        return value[0], value[1]
    return value, value


def prepare_xa_pair(view1: str | Path, view2: str | Path,
                    frame: int | None | Sequence[int | None] = None,
                    overrides: Mapping[str, Any] | Sequence[Mapping[str, Any]]
                    | GeometryOverrides | None = None,
                    volume: VolumeGrid | None = None,
                    masks: Sequence[str | Path | np.ndarray | None] | None = None,
                    mu_per_mm: float | None = None,
                    params: VesselParams = VesselParams()) -> XAPair:
    """Two XA runs -> case, masks and report.

    ``frame``: one 1-based frame number for both runs, a pair, or None (automatic choice,
    see :mod:`sdfcar.xa.frames`). ``overrides``: contract fields for both views, a pair of
    mappings, or a :class:`GeometryOverrides` (whose volume is used when ``volume`` is None).
    ``masks``: a pair of user masks (file or array, None to extract). ``volume``: the
    reconstruction grid (default: placed on the vessels the two masks see,
    :func:`sdfcar.physics.placement.placed_grid`)."""
    if isinstance(overrides, GeometryOverrides):
        volume = volume if volume is not None else overrides.volume
        overrides = overrides.views
    frames = _per_view(frame, "frame")
    per_view = _per_view(overrides, "overrides")
    user_masks = _per_view(list(masks) if masks is not None else None, "masks")
    prepared = tuple(prepare_xa_view(path, f, o, m, mu_per_mm, params)
                     for path, f, o, m in zip((view1, view2), frames, per_view, user_masks))
    first, second = prepared
    motion = table_motion(first.run.table, second.run.table)
    second = _followed_table(second, motion, per_view[1])
    placement = None
    if volume is None:
        placement = placed_grid((first.view, second.view), (first.extraction.mask,
                                                            second.extraction.mask))
        volume = placement.grid
        log.info("volume placed on the vessels: %s, shape %s, centre %s mm", placement.rule,
                 list(volume.shape), [round(c, 1) for c in volume.center_mm])
    geometry = CaseGeometry((first.view, second.view), volume)
    case = Case(geometry, (first.extraction.integral, second.extraction.integral))
    separation = first.view.angle_between(second.view)
    notes = []
    if separation < MIN_VIEW_SEPARATION_DEG:
        notes.append(f"the views are only {separation:.1f} degrees apart; two-view "
                     "reconstruction needs well-separated views (30-90 degrees)")
    table = None
    if motion is not None and motion.moved:
        table = {**motion.to_dict(), "note": motion.note()}
        if motion.shift_mm is None:
            notes.append(motion.note())
        elif second.view == prepared[1].view:
            table["applied_shift_mm"] = None
            table["note"] += ("; not applied: view 2's correction_translation_mm was given "
                              "with the geometry overrides")
        log.info(table["note"])
    report = {"views": [first.report, second.report],
              "angle_between_views_deg": round(separation, 3),
              "volume": geometry.volume.to_dict(),
              "volume_placement": None if placement is None else placement.to_dict(),
              "table": table, "warnings": notes}
    return XAPair(case, (first.extraction.mask, second.extraction.mask), (first, second),
                  report)


def _followed_table(second: PreparedView, motion: TableMotion | None,
                    overrides: Mapping[str, Any] | None) -> PreparedView:
    """View 2 with its C-arm shifted against the table's move since run 1
    (:mod:`sdfcar.xa.table`), unless the overrides give its correction shift."""
    if (motion is None or not motion.moved or motion.shift_mm is None
            or "correction_translation_mm" in (overrides or {})):
        return second
    view = second.view.moved((0.0, 0.0, 0.0), motion.shift_mm)
    return replace(second, view=view, report={**second.report, "geometry": view.to_dict()})


def load_xa_pair(view1: str | Path, view2: str | Path,
                 frame: int | None | Sequence[int | None] = None,
                 overrides: Mapping[str, Any] | Sequence[Mapping[str, Any]]
                 | GeometryOverrides | None = None,
                 volume: VolumeGrid | None = None) -> Case:
    """The :class:`~sdfcar.io.case.Case` of two XA runs: the chosen frames' line-integral
    proxies and their geometry (see :func:`prepare_xa_pair` for masks and the report)."""
    return prepare_xa_pair(view1, view2, frame, overrides, volume).case
