"""Right-handed rotation matrices about the coordinate axes (angles in degrees)."""

from __future__ import annotations

import math

import numpy as np


def _cos_sin(deg: float) -> tuple[float, float]:
    radians = math.radians(deg)
    return math.cos(radians), math.sin(radians)


def rotation_x(deg: float) -> np.ndarray:
    """Rotation about +x by ``deg`` degrees."""
    c, s = _cos_sin(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(deg: float) -> np.ndarray:
    """Rotation about +y by ``deg`` degrees."""
    c, s = _cos_sin(deg)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(deg: float) -> np.ndarray:
    """Rotation about +z by ``deg`` degrees."""
    c, s = _cos_sin(deg)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
