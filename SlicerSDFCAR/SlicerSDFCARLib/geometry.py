"""One view's C-arm settings as the module edits them, as ``geometry.json`` objects.

The conventions are the project's geometry contract (``sdfcar.geometry``); beam directions
and the angle between views come from the engine's
:class:`~sdfcar.geometry.ViewGeometry` (see :mod:`SlicerSDFCARLib.validation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ViewSettings:
    """A view's gantry angles, distances and detector pixel spacing (contract field names)."""

    primary_angle_deg: float
    secondary_angle_deg: float
    source_to_detector_mm: float
    source_to_isocenter_mm: float
    detector_spacing_mm: tuple[float, float]  # (row, column)

    def to_contract(self, detector_shape: tuple[int, int]) -> dict[str, Any]:
        """The ``views[i]`` object of ``geometry.json`` for an image of ``detector_shape``."""
        return {
            "primary_angle_deg": float(self.primary_angle_deg),
            "secondary_angle_deg": float(self.secondary_angle_deg),
            "source_to_detector_mm": float(self.source_to_detector_mm),
            "source_to_isocenter_mm": float(self.source_to_isocenter_mm),
            "detector_shape": [int(detector_shape[0]), int(detector_shape[1])],
            "detector_spacing_mm": [float(v) for v in self.detector_spacing_mm],
        }


def volume_contract(voxels_per_axis: int, spacing_mm: float) -> dict[str, Any]:
    """The ``volume`` object of ``geometry.json``: a cube centred on the isocenter."""
    return {"shape": [int(voxels_per_axis)] * 3, "spacing_mm": [float(spacing_mm)] * 3,
            "center_mm": [0.0, 0.0, 0.0]}
