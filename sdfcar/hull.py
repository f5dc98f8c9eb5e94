"""Two-view visual hull: the voxels whose projection is vessel in every view.

A voxel whose centre projects onto background in either view cannot be vessel, so the
field only needs evaluating inside the hull (about 1 % of a 128^3 grid for a coronary
tree) and the projector only needs the rays that cross it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .geometry import ViewGeometry, VolumeGrid


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation by a disc of radius ``pixels``."""
    if pixels <= 0:
        return mask.astype(bool)
    radius = np.arange(-pixels, pixels + 1)
    disc = radius[:, None] ** 2 + radius[None, :] ** 2 <= pixels**2
    return ndimage.binary_dilation(mask, structure=disc)


def visual_hull(views: Sequence[ViewGeometry], grid: VolumeGrid,
                silhouettes: Sequence[np.ndarray], margin_px: int) -> np.ndarray:
    """Boolean ``grid.shape`` mask of voxels whose centre projects inside every silhouette
    dilated by ``margin_px`` pixels (voxels projecting off a detector are excluded)."""
    centres = grid.voxel_centers().reshape(-1, 3)
    inside = np.ones(len(centres), dtype=bool)
    for view, silhouette in zip(views, silhouettes):
        grown = dilate(silhouette, margin_px)
        row_col = np.rint(view.project_points(centres)).astype(np.int64)
        rows, cols = row_col[:, 0], row_col[:, 1]
        on_detector = ((rows >= 0) & (rows < grown.shape[0]) & (cols >= 0)
                       & (cols < grown.shape[1]))
        hit = np.zeros(len(centres), dtype=bool)
        hit[on_detector] = grown[rows[on_detector], cols[on_detector]]
        inside &= hit
    return inside.reshape(grid.shape)
