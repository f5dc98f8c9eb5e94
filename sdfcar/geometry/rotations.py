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


def rotation_vector(vector_deg: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """Rotation by ``|vector_deg|`` degrees about the axis ``vector_deg`` (Rodrigues)."""
    vector = np.radians(np.asarray(vector_deg, dtype=float))
    angle = float(np.linalg.norm(vector))
    if angle < 1e-15:
        return np.eye(3)
    kx, ky, kz = vector / angle
    k = np.array([[0.0, -kz, ky], [kz, 0.0, -kx], [-ky, kx, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def rotation_vector_of(matrix: np.ndarray) -> np.ndarray:
    """The rotation vector (degrees) of a rotation ``matrix`` (inverse of
    :func:`rotation_vector` for angles below 180 degrees)."""
    cos = float(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0))
    angle = math.acos(cos)
    if angle < 1e-12:
        return np.zeros(3)
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0],
                     matrix[1, 0] - matrix[0, 1]]) / (2.0 * math.sin(angle))
    return np.degrees(angle) * axis
