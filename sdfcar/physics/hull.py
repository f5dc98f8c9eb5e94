"""Two-view visual hull: the voxels whose projection is vessel in every view.

A voxel whose centre projects onto background in either view cannot be vessel, so the
field only needs evaluating inside the hull (about 1 % of a 128^3 grid for a coronary
tree) and the projector only needs the rays that cross it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from sdfcar.geometry import ViewGeometry, VolumeGrid


#: Gaussian smoothing (px) of a noisy view before it is thresholded into a silhouette.
SMOOTHING_PX = 1.5
#: Silhouette blobs smaller than this (px) are noise and dropped.
MIN_BLOB_PX = 20
#: Views whose estimated noise is below this (mm) are thresholded as they are.
CLEAN_NOISE_MM = 0.01
_LAPLACIAN = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def noise_sigma(image: np.ndarray) -> float:
    """Robust standard deviation of white noise in an image (mm).

    The 3x3 second-difference mask of Immerkaer (1996) cancels smooth structure and has a
    response of standard deviation 6 sigma to white noise; the median of its absolute value
    (0.6745 of that standard deviation) ignores vessel edges."""
    response = ndimage.convolve(image.astype(np.float64), _LAPLACIAN, mode="reflect")
    return float(np.median(np.abs(response)) / (6.0 * 0.6745))


def threshold_silhouette(image: np.ndarray, threshold_mm: float, noise_sigmas: float
                         ) -> tuple[np.ndarray, float]:
    """Vessel mask of a line-integral view and the threshold used (mm).

    A clean view is thresholded at ``threshold_mm``. A noisy one is smoothed first and
    thresholded at ``noise_sigmas`` times its smoothed noise level (at least
    ``threshold_mm``), and blobs under :data:`MIN_BLOB_PX` pixels are dropped."""
    sigma = noise_sigma(image)
    if sigma < CLEAN_NOISE_MM:
        return image > threshold_mm, threshold_mm
    smoothed = ndimage.gaussian_filter(image, SMOOTHING_PX)
    # White noise smoothed by a Gaussian of width s keeps 1 / (2 sqrt(pi) s) of its sigma.
    threshold = max(threshold_mm, noise_sigmas * sigma / (2.0 * np.sqrt(np.pi) * SMOOTHING_PX))
    mask = smoothed > threshold
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= MIN_BLOB_PX
    keep[0] = False
    return keep[labels], float(threshold)


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
