"""One view's C-arm settings as the module edits them, and the true angle between two views.

The conventions are the project's geometry contract (patient LPS, isocenter at the origin):
``R = Rz(primary) @ Rx(-secondary)``, the source sits at ``R @ (0, SOD, 0)`` and the beam runs
from the source through the isocenter to the detector. Only numpy is used here, so the module
can validate views live before the ``sdfcar`` package is installed into Slicer's Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def beam_direction(primary_angle_deg: float, secondary_angle_deg: float) -> np.ndarray:
    """Unit vector from the source towards the detector, ``R @ (0, -1, 0)`` (LPS).

    AP (0/0) gives (0, -1, 0) (posterior to anterior), LAO 90 gives +x, CRA 90 gives +z.
    """
    p, s = math.radians(primary_angle_deg), math.radians(secondary_angle_deg)
    return np.array([math.sin(p) * math.cos(s), -math.cos(p) * math.cos(s), math.sin(s)])


def angle_between_views(first: ViewSettings, second: ViewSettings) -> float:
    """Angle in degrees between the two beam directions.

    This is not the difference of the primary angles: LAO 0 / CRA 85 and LAO 90 / CRA 85
    differ by 90 degrees of primary angle but both look down from the head, 7 degrees apart.
    """
    a = beam_direction(first.primary_angle_deg, first.secondary_angle_deg)
    b = beam_direction(second.primary_angle_deg, second.secondary_angle_deg)
    return math.degrees(math.acos(float(np.clip(a @ b, -1.0, 1.0))))
