"""A vessel as a tube: centreline samples with radii, and its voxelisation on a grid.

The data model shared by the phantom generator (:mod:`sdfcar.synthetic.phantom`) and the tube
methods (:mod:`sdfcar.methods.tubes`): a vessel is the union of tapered capsules between
consecutive centreline samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdfcar.errors import bad_input
from sdfcar.geometry.contract import VolumeGrid

CORNERS = np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)], dtype=float)


@dataclass
class Segment:
    """One vessel: centerline samples, their radii and the name of the parent vessel."""

    name: str
    points: np.ndarray  # (N, 3) LPS mm
    radii: np.ndarray  # (N,) mm
    parent: str | None


def centreline_record(vessels: Sequence[Segment]) -> list[dict[str, Any]]:
    """The vessels' centrelines (LPS mm, rounded to 0.01 mm) and radii (mm, to 0.001 mm and
    at least that), for the run record (``statistics.<method>.centrelines``;
    :mod:`sdfcar.analysis` reads it back)."""
    return [{"name": v.name, "parent": v.parent, "points": np.round(v.points, 2).tolist(),
             "radii": np.maximum(np.round(v.radii, 3), 0.001).tolist()}
            for v in vessels]


def branch_point(parent: Segment, branch: Segment) -> int:
    """The index of ``parent``'s centreline point that ``branch`` leaves from (the one
    nearest its first point)."""
    return int(np.argmin(np.linalg.norm(parent.points - branch.points[0], axis=1)))


def segments_sdf(segments: Sequence[Segment], grid: VolumeGrid, band_mm: float = 0.0
                 ) -> np.ndarray:
    """Signed distance (mm, negative inside; float32, ``grid.shape``) of the voxel centres to
    the union of the tapered capsules: per piece, the distance to its axis segment minus the
    radius interpolated at the closest point, the minimum over pieces. Exact within
    ``band_mm`` of the surface (and inside); farther voxels hold ``band_mm``."""
    sdf = np.full(grid.shape, max(band_mm, 1e-6), dtype=np.float32)
    to_lps, origin, shape = grid.index_to_lps, grid.origin_mm, np.array(grid.shape)
    for seg in segments:
        a, b, ra, rb = seg.points[:-1], seg.points[1:], seg.radii[:-1], seg.radii[1:]
        reach = np.maximum(ra, rb)[:, None] + band_mm
        lo, hi = np.minimum(a, b) - reach, np.maximum(a, b) + reach
        corners = grid.lps_to_index(lo[:, None] + CORNERS * (hi - lo)[:, None])
        first = np.maximum(np.ceil(corners.min(axis=1)), 0).astype(int)
        last = np.minimum(np.floor(corners.max(axis=1)) + 1, shape).astype(int)
        for n in np.flatnonzero(np.all(last > first, axis=1)):
            axes = np.ix_(*(np.arange(first[n, d], last[n, d]) for d in range(3)))
            rel = origin - a[n] + sum(axes[d][..., None] * to_lps[:, d] for d in range(3))
            ab = b[n] - a[n]
            t = np.clip(rel @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
            distance = np.sqrt(np.sum((rel - t[..., None] * ab) ** 2, axis=-1)) \
                - (ra[n] + t * (rb[n] - ra[n]))
            box = tuple(slice(first[n, d], last[n, d]) for d in range(3))
            np.minimum(sdf[box], distance, out=sdf[box])
    return sdf


def rasterize_segments(segments: Sequence[Segment], grid: VolumeGrid, supersample: int = 1
                       ) -> np.ndarray:
    """Occupancy in [0, 1] (float32, ``grid.shape``, index order i, j, k): the fraction of
    ``supersample^3`` sub-points per voxel that lie inside one of the tapered capsules
    between consecutive centreline points of ``segments``."""
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) \
            or supersample < 1:
        raise bad_input("supersample", f"expected an integer >= 1, got {supersample!r}")
    s = int(supersample)
    fine = VolumeGrid(tuple(n * s for n in grid.shape), tuple(h / s for h in grid.spacing_mm),
                      grid.center_mm, grid.direction)
    n = grid.shape
    mask = (segments_sdf(segments, fine) <= 0.0).reshape(n[0], s, n[1], s, n[2], s)
    return mask.mean(axis=(1, 3, 5), dtype=np.float32)


def centreline_voxels(segments: Sequence[Segment], grid: VolumeGrid) -> np.ndarray:
    """Voxels (bool, ``grid.shape``) that the centrelines pass through: each polyline
    sampled every half of the smallest voxel spacing, so that the voxels of consecutive
    samples are 26-neighbours and a vessel's voxels form one chain."""
    mask = np.zeros(grid.shape, dtype=bool)
    step = 0.5 * min(grid.spacing_mm)
    for seg in segments:
        pieces = [seg.points[:1]]
        for a, b in zip(seg.points[:-1], seg.points[1:]):
            count = max(int(np.ceil(np.linalg.norm(b - a) / step)), 1)
            pieces.append(a + np.arange(1, count + 1)[:, None] / count * (b - a))
        index = np.rint(grid.lps_to_index(np.vstack(pieces))).astype(int)
        inside = np.all((index >= 0) & (index < np.array(grid.shape)), axis=1)
        mask[tuple(index[inside].T)] = True
    return mask


def tree_occupancy(segments: Sequence[Segment], grid: VolumeGrid, supersample: int = 1
                   ) -> np.ndarray:
    """:func:`rasterize_segments`, with the voxels the centrelines pass through
    (:func:`centreline_voxels`) at least 0.5: a vessel thinner than about half a voxel,
    whose partial volume stays under a half between voxel centres, would otherwise fall
    apart in the label (occupancy >= 0.5), though its tubes are joined."""
    occupancy = rasterize_segments(segments, grid, supersample)
    return np.maximum(occupancy, 0.5 * centreline_voxels(segments, grid), dtype=np.float32)
