"""C-arm geometry from the DICOM tag values of an X-ray angiogram.

Slicer's DICOM plugin keeps the instance UIDs of a loaded series in the volume's
``DICOM.instanceUIDs`` attribute and the database returns any tag of an instance as text
(``"29.7"``, ``"0.278\\0.278"``). :func:`geometry_from_tags` takes such a reader and fills
what it can: the module pre-fills the editable fields with it and shows the notes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

#: Contract field -> (DICOM keyword, tag) of the single-valued geometry tags.
SCALAR_TAGS = {
    "primary_angle_deg": ("PositionerPrimaryAngle", "0018,1510"),
    "secondary_angle_deg": ("PositionerSecondaryAngle", "0018,1511"),
    "source_to_detector_mm": ("DistanceSourceToDetector", "0018,1110"),
    "source_to_isocenter_mm": ("DistanceSourceToPatient", "0018,1111"),
}
IMAGER_PIXEL_SPACING = ("ImagerPixelSpacing", "0018,1164")
PIXEL_SPACING = ("PixelSpacing", "0028,0030")
#: Every field :func:`geometry_from_tags` can fill.
FIELDS = (*SCALAR_TAGS, "detector_spacing_mm")


@dataclass
class TagGeometry:
    """The fields found (contract names; ``detector_spacing_mm`` is ``(row, col)``) and notes
    about missing, replaced or unreadable tags."""

    values: dict[str, float | tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every geometry field came from the tags."""
        return all(name in self.values for name in FIELDS)


def geometry_from_tags(read: Callable[[str], str | None]) -> TagGeometry:
    """Read the geometry tags through ``read("gggg,eeee") -> text or None``.

    ImagerPixelSpacing is the detector pixel size the contract needs; when it is absent,
    PixelSpacing is used and a note says it may be calibrated at the isocenter instead.
    """
    found = TagGeometry()
    for name, (keyword, tag) in SCALAR_TAGS.items():
        values = _numbers(read(tag), keyword, tag, found.notes)
        if values is None:
            continue
        if len(values) != 1:
            found.notes.append(f"{keyword} ({tag}): expected one value, got {len(values)}")
            continue
        found.values[name] = values[0]
    spacing = _spacing(read, IMAGER_PIXEL_SPACING, found.notes)
    if spacing is None:
        spacing = _spacing(read, PIXEL_SPACING, found.notes)
        if spacing is not None:
            found.notes.append(f"{IMAGER_PIXEL_SPACING[0]} ({IMAGER_PIXEL_SPACING[1]}) missing: "
                               f"{PIXEL_SPACING[0]} ({PIXEL_SPACING[1]}) used, which may be "
                               "calibrated at the isocenter rather than the detector")
    if spacing is not None:
        found.values["detector_spacing_mm"] = spacing
    return found


def _spacing(read: Callable[[str], str | None], tag_name: tuple[str, str],
             notes: list[str]) -> tuple[float, float] | None:
    keyword, tag = tag_name
    values = _numbers(read(tag), keyword, tag, notes, report_missing=False)
    if values is None:
        return None
    if len(values) != 2 or min(values) <= 0:
        notes.append(f"{keyword} ({tag}): expected two positive values, got {values}")
        return None
    return values[0], values[1]


def _numbers(text: str | None, keyword: str, tag: str, notes: list[str],
             report_missing: bool = True) -> list[float] | None:
    """A DICOM DS/IS value (backslash-separated) as floats; None (with a note) otherwise."""
    if text is None or not str(text).strip():
        if report_missing:
            notes.append(f"{keyword} ({tag}) missing")
        return None
    try:
        values = [float(part) for part in str(text).strip().split("\\")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        notes.append(f"{keyword} ({tag}): not a number: {text!r}")
        return None
    return values
