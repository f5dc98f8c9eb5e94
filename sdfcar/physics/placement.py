"""Place the reconstruction grid on the vessels two silhouettes see.

Two XA runs say where their isocenter is, not where the heart is: a coronary tree sits
30-40 mm off the isocenter and spans 100-130 mm, so a fixed 102 mm cube on the isocenter
cuts it. :func:`placed_grid` searches a wide coarse grid for the two views' visual hull
(:func:`sdfcar.physics.hull.visual_hull`, silhouettes grown to absorb a geometry error of
a few mm), shrinks the hull's box while what is left of the hull still projects onto
:data:`COVERAGE` of each view's silhouette (ghost pairings far from the tree, which explain
little of either view, fall outside), and returns a grid at the wanted spacing that holds
that box plus a margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdfcar.geometry import ViewGeometry, VolumeGrid
from sdfcar.physics.hull import visual_hull

#: The searched cube's side over the larger field of view (at the isocenter): wide enough
#: to hold the whole region that both views see at 30-90 degrees apart.
SEARCH_SIDE = 2.5
#: Voxels along each axis of the coarse search grid.
SEARCH_VOXELS = 128
#: Silhouettes are grown by this much (mm at the isocenter) so that a geometry error of
#: this size (before self-calibration) still leaves the vessels inside the hull.
GROWTH_MM = 3.0
#: Room added on every side of the hull's box (mm).
MARGIN_MM = 6.0
#: The share of each view's (coarsened) silhouette that the hull inside the box must
#: still cover while the box shrinks.
COVERAGE = 0.97
#: The most voxels a placed grid may hold; beyond it the spacing grows.
MAX_VOXELS = 160**3


@dataclass(frozen=True)
class Placement:
    """A placed grid and how it was found (``hull_box_mm``: the trimmed hull's corners)."""

    grid: VolumeGrid
    hull_box_mm: tuple[tuple[float, ...], tuple[float, ...]] | None
    rule: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the placement."""
        box = None if self.hull_box_mm is None else [
            [round(v, 1) for v in corner] for corner in self.hull_box_mm]
        return {"rule": self.rule, "hull_box_mm": box, "growth_mm": GROWTH_MM,
                "margin_mm": MARGIN_MM, "coverage": COVERAGE}


def field_of_view_mm(view: ViewGeometry) -> float:
    """The larger side of the detector, scaled back to the isocenter (mm)."""
    magnification = view.source_to_detector_mm / view.source_to_isocenter_mm
    extent = np.asarray(view.detector_shape, float) * np.asarray(view.detector_spacing_mm)
    return float(extent.max() / magnification)


def placed_grid(views: Sequence[ViewGeometry], masks: Sequence[np.ndarray],
                spacing_mm: float = VolumeGrid.spacing_mm[0]) -> Placement:
    """The grid (spacing ``spacing_mm``, axes along LPS) that holds the views' visual hull.

    The search covers a cube :data:`SEARCH_SIDE` times the larger field of view on the
    isocenter. When the
    hull is empty (views that see nothing in common) the default grid on the isocenter is
    returned, with ``rule`` saying so."""
    side = SEARCH_SIDE * max(field_of_view_mm(view) for view in views)
    step = side / SEARCH_VOXELS
    search = VolumeGrid((SEARCH_VOXELS,) * 3, (step,) * 3)
    growth_px = max(int(np.ceil(GROWTH_MM / _pixel_at_isocenter_mm(view)))
                    for view in views)
    hull = visual_hull(views, search, [np.asarray(m, bool) for m in masks], growth_px)
    if not hull.any():
        return Placement(VolumeGrid(spacing_mm=(spacing_mm,) * 3), None,
                         "default grid on the isocenter: the views' silhouettes share no "
                         "point in the searched cube")
    indices = np.argwhere(hull)
    points = search.voxel_centers()[hull]
    cells = [_coarse_cells(view, points, step) for view in views]
    first, last = _shrunk_box(indices, cells)
    origin = search.origin_mm
    low = origin + (first - 0.5) * step - MARGIN_MM
    high = origin + (last + 0.5) * step + MARGIN_MM
    spacing = max(spacing_mm, float(np.cbrt(np.prod(high - low) / MAX_VOXELS)))
    shape = tuple(int(np.ceil((h - lo) / spacing)) for lo, h in zip(low, high))
    grid = VolumeGrid(shape, (spacing,) * 3, tuple(float(c) for c in (low + high) / 2))
    corners = (tuple(float(v) for v in low + MARGIN_MM),
               tuple(float(v) for v in high - MARGIN_MM))
    return Placement(grid, corners, f"box of the two views' visual hull covering "
                                    f"{COVERAGE:.0%} of each silhouette")


def _coarse_cells(view: ViewGeometry, points: np.ndarray, step_mm: float) -> np.ndarray:
    """Per point, the index (0..n-1) of the detector cell it projects into; cells are
    ``step_mm`` wide at the isocenter, so that each search voxel fills about one."""
    cell_px = step_mm / _pixel_at_isocenter_mm(view)
    row_col = np.floor(view.project_points(points) / cell_px).astype(np.int64)
    keys = row_col[:, 0] * (int(max(view.detector_shape) / cell_px) + 2) + row_col[:, 1]
    return np.unique(keys, return_inverse=True)[1].ravel()


def _coverage(inside: np.ndarray, cells: Sequence[np.ndarray]) -> float:
    """The smallest share, over the views, of silhouette cells hit by the ``inside`` points."""
    return min(np.count_nonzero(np.bincount(c[inside], minlength=c.max() + 1)) / (c.max() + 1)
               for c in cells)


def _shrunk_box(indices: np.ndarray, cells: Sequence[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """First and last voxel index (inclusive) of the smallest box, shrunk one face at a time
    (the face whose move keeps most coverage), whose points cover :data:`COVERAGE`."""
    first, last = indices.min(axis=0), indices.max(axis=0)
    while True:
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for axis in range(3):
            if last[axis] - first[axis] < 2:
                continue
            for moved_first in (True, False):
                low, high = first.copy(), last.copy()
                if moved_first:
                    low[axis] += 1
                else:
                    high[axis] -= 1
                inside = np.all((indices >= low) & (indices <= high), axis=1)
                coverage = _coverage(inside, cells)
                if coverage >= COVERAGE and (best is None or coverage > best[0]):
                    best = (coverage, low, high)
        if best is None:
            return first, last
        _, first, last = best


def _pixel_at_isocenter_mm(view: ViewGeometry) -> float:
    magnification = view.source_to_detector_mm / view.source_to_isocenter_mm
    return float(min(view.detector_spacing_mm) / magnification)
