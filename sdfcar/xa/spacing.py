"""Detector pixel spacing of an XA frame: the documented fallback chain.

The geometry contract needs the spacing **at the detector** (mm). In order:

1. ``override``: ``detector_spacing_mm`` from ``--geometry``;
2. ``ImagerPixelSpacing`` (0018,1164): at the detector by definition;
3. ``PixelSpacing x EstimatedRadiographicMagnificationFactor``: PixelSpacing (0028,0030)
   whose Pixel Spacing Calibration Type (0028,0A02) is GEOMETRY or FIDUCIAL is calibrated
   in the patient, so it is multiplied by the magnification factor (0018,1114), or by
   SID / SOD when that tag is absent;
4. ``PixelSpacing``: without a calibration type, taken as is (it may be calibrated at the
   isocenter: a warning says so);
5. ``FieldOfViewDimensions / (Rows, Columns)``: a RECTANGLE field of view (0018,1147/1149)
   in mm at the detector spread over the stored image (on the GE phantom runs IM5/IM6,
   200 mm / 512 equals their ImagerPixelSpacing 0.390625 exactly; IM1 has only this);
6. none of them: a one-line error naming ImagerPixelSpacing and the override.

:func:`detector_spacing` returns the spacing and its source; the run record states it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sdfcar.errors import bad_input
from sdfcar.xa.tags import numbers

Lookup = Callable[[str], Any]


@dataclass(frozen=True)
class Spacing:
    """A detector spacing ``(row, col)`` mm and where it came from."""

    spacing_mm: tuple[float, float]
    source: str
    note: str = ""


def _pair(value: Any, where: str, keyword: str) -> tuple[float, float]:
    values = numbers(value, f"{where}: {keyword}")
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not all(v > 0 for v in values):
        raise bad_input(f"{where}: {keyword}", f"expected two positive values, got {value!r}")
    return values[0], values[1]


def _magnification(lookup: Lookup) -> tuple[float, str] | None:
    factor = lookup("EstimatedRadiographicMagnificationFactor")
    if factor not in (None, ""):
        return float(factor), "EstimatedRadiographicMagnificationFactor"
    sid, sod = lookup("DistanceSourceToDetector"), lookup("DistanceSourceToPatient")
    if sid not in (None, "") and sod not in (None, "") and float(sod) > 0:
        return float(sid) / float(sod), "SID / SOD"
    return None


def detector_spacing(lookup: Lookup, overrides: Mapping[str, Any], where: str) -> Spacing:
    """The detector spacing of one frame; ``lookup(keyword)`` gives a tag's value or None."""
    if "detector_spacing_mm" in overrides:
        return Spacing(_pair(overrides["detector_spacing_mm"], where, "detector_spacing_mm"),
                       "override")
    imager = lookup("ImagerPixelSpacing")
    if imager not in (None, ""):
        return Spacing(_pair(imager, where, "ImagerPixelSpacing"), "ImagerPixelSpacing")
    pixel = lookup("PixelSpacing")
    if pixel not in (None, ""):
        spacing = _pair(pixel, where, "PixelSpacing")
        calibration = str(lookup("PixelSpacingCalibrationType") or "").upper()
        magnification = _magnification(lookup)
        if calibration in ("GEOMETRY", "FIDUCIAL") and magnification is not None:
            factor, name = magnification
            return Spacing((spacing[0] * factor, spacing[1] * factor), f"PixelSpacing x {name}",
                           f"ImagerPixelSpacing (0018,1164) missing; PixelSpacing (0028,0030), "
                           f"calibrated in the patient ({calibration}), times {name} "
                           f"{factor:.5g}")
        return Spacing(spacing, "PixelSpacing",
                       "ImagerPixelSpacing (0018,1164) missing; using PixelSpacing "
                       "(0028,0030), which may be calibrated at the isocenter")
    field = lookup("FieldOfViewDimensions")
    shape = str(lookup("FieldOfViewShape") or "").upper()
    rows, cols = lookup("Rows"), lookup("Columns")
    if field not in (None, "") and shape == "RECTANGLE" and rows and cols:
        height, width = _pair(field, where, "FieldOfViewDimensions")
        spacing = (height / float(rows), width / float(cols))
        return Spacing(spacing, "FieldOfViewDimensions / (Rows, Columns)",
                       f"ImagerPixelSpacing (0018,1164) missing; derived from the field of view "
                       f"{height:g} x {width:g} mm over {rows} x {cols} pixels: "
                       f"{spacing[0]:.6g} x {spacing[1]:.6g} mm (give detector_spacing_mm "
                       "with --geometry if the image is cropped or binned)")
    raise bad_input(f"{where}: ImagerPixelSpacing (0018,1164)",
                    "missing tag, and no PixelSpacing or rectangular FieldOfViewDimensions to "
                    "derive it from (give detector_spacing_mm with --geometry)")
