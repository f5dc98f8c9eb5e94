"""Analytic line integrals of tubes (cylinders and capsule chains) in one C-arm view.

A ray from the source ``S`` with unit direction ``e`` crosses a cylinder of radius ``r``
around the axis ``X + t d`` (``d`` unit) along a chord of length
``2 sqrt(r^2 - delta^2) / sin(theta)``, where ``delta`` is the distance between the ray and
the axis and ``theta`` the angle between them. The tube tracer (:mod:`sdfcar.methods.tubes.tracing`) fits
this to small windows of the views and subtracts whole traced vessels from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdfcar.geometry import ViewGeometry

#: Rays almost parallel to a tube axis are treated as this far from parallel (sin theta), so
#: the chord stays finite (a tube seen end-on).
MIN_SIN_THETA = 0.2


@dataclass(frozen=True)
class Window:
    """Detector pixels near a tube piece: indices and the unit ray direction of each."""

    rows: np.ndarray  # (N,) int
    cols: np.ndarray  # (N,) int
    rays: np.ndarray  # (N, 3)


class DetectorRays:
    """Rays of one view: source position, per-pixel directions and point projection."""

    def __init__(self, view: ViewGeometry) -> None:
        self.view = view
        self.shape = tuple(view.detector_shape)
        self.source = view.source
        spacing = min(view.detector_spacing_mm)
        #: Pixel size at the isocenter (mm), the scale of a tube's image.
        self.pixel_mm_at_isocenter = float(
            spacing * view.source_to_isocenter_mm / view.source_to_detector_mm)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Detector coordinates ``(..., 2)`` as (row, col) of LPS points ``(..., 3)``."""
        return self.view.project_points(points)

    def window(self, centre: np.ndarray, axis: np.ndarray, half_length: float,
               reach_mm: float) -> Window | None:
        """Pixels whose ray passes within ``reach_mm`` of the axis segment
        ``centre +- half_length * axis`` (closest approach inside it); None if fewer than 4."""
        ends = self.project(np.stack([centre - half_length * axis, centre + half_length * axis]))
        pad = reach_mm / self.pixel_mm_at_isocenter * 1.5 + 2.0
        low = np.maximum(np.floor(ends.min(axis=0) - pad).astype(int), 0)
        high = np.minimum(np.ceil(ends.max(axis=0) + pad).astype(int) + 1, self.shape)
        if np.any(high <= low):
            return None
        rows, cols = np.mgrid[low[0]:high[0], low[1]:high[1]]
        rows, cols = rows.ravel(), cols.ravel()
        rays = self.view.pixel_rays(rows, cols)
        distance, along = ray_axis_distance(self.source, rays, centre, axis)
        keep = (np.abs(along) <= half_length) & (distance <= reach_mm)
        if np.count_nonzero(keep) < 4:
            return None
        return Window(rows[keep], cols[keep], rays[keep])


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross(a, b)`` over the last axis (``(..., 3)`` with ``(..., 3)`` or ``(3,)``),
    written out: the tracer calls it some 10^5 times, and ``np.cross``'s axis handling
    dominated its time."""
    x, y, z = a[..., 0], a[..., 1], a[..., 2]
    return np.stack([y * b[..., 2] - z * b[..., 1], z * b[..., 0] - x * b[..., 2],
                     x * b[..., 1] - y * b[..., 0]], axis=-1)


def _geometry(source: np.ndarray, rays: np.ndarray, centre: np.ndarray, axis: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance between each ray and the axis line, the axis parameter of their closest
    approach and ``sin`` of the angle between them."""
    offset = centre - source
    cos = rays @ axis
    along = (cos * (rays @ offset) - offset @ axis) / np.maximum(1.0 - cos * cos, 1e-12)
    normal = _cross(rays, axis)
    sin = np.sqrt(np.sum(normal * normal, axis=1))
    distance = np.abs(normal @ offset) / np.maximum(sin, 1e-12)
    return distance, along, sin


def ray_axis_distance(source: np.ndarray, rays: np.ndarray, centre: np.ndarray,
                      axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) between each ray and the axis line ``centre + t axis``, and the axis
    parameter ``t`` of their closest approach."""
    distance, along, _ = _geometry(source, rays, centre, axis)
    return distance, along


def cylinder_chords(source: np.ndarray, rays: np.ndarray, centres: np.ndarray,
                    axes: np.ndarray, radii: float | np.ndarray) -> np.ndarray:
    """Chord lengths (mm) of unit rays ``(N, 3)`` through infinite cylinders: one (centre,
    unit axis, radius) gives ``(N,)``; a batch ``(K, 3)``, ``(K, 3)``, ``(K,)`` gives
    ``(K, N)`` in one pass (the tracer's fits evaluate their finite differences so)."""
    single = np.ndim(centres) == 1
    centres, axes = np.atleast_2d(centres), np.atleast_2d(axes)
    radii = np.atleast_1d(np.asarray(radii, dtype=float))[:, None]
    cos = axes @ rays.T
    sin = np.sqrt(np.maximum(np.sum(axes * axes, axis=1)[:, None] - cos * cos, 0.0))
    # (ray x axis) . offset, as ray . (axis x offset): the ray-axis distance times sin.
    distance = np.abs(_cross(axes, centres - source) @ rays.T) / np.maximum(sin, 1e-12)
    chords = 2.0 * np.sqrt(np.maximum(radii * radii - distance * distance, 0.0)) \
        / np.maximum(sin, MIN_SIN_THETA)
    return chords[0] if single else chords


def render_chain(detector: DetectorRays, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Line integrals (mm, detector-shaped) of a chain of tube pieces through ``points``
    ``(N, 3)`` with ``radii`` ``(N,)``: each piece is a cylinder of its larger end radius
    cut at the perpendicular planes through its ends (slightly overlapping its neighbours),
    and a pixel takes the longest chord of any piece (their union, for a smooth vessel)."""
    image = np.zeros(detector.shape)
    for start, end, r_start, r_end in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        length = float(np.linalg.norm(end - start))
        if length < 1e-6:
            continue
        axis, centre, radius = (end - start) / length, (start + end) / 2.0, max(r_start, r_end)
        window = detector.window(centre, axis, length / 2.0 + 0.3 * radius, radius)
        if window is None:
            continue
        chords = cylinder_chords(detector.source, window.rays, centre, axis, radius)
        np.maximum.at(image, (window.rows, window.cols), chords)
    return image
