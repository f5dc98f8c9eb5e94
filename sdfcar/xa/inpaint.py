"""Harmonic inpainting: fill a region of an image from its surroundings.

The filled values solve Laplace's equation inside the region with the surrounding pixels
as boundary values (5-point stencil; image edges are mirror boundaries). Across a narrow
region such as a vessel this is close to linear interpolation between its two sides, so
anatomy edges, ribs and texture that cross the region are followed instead of averaged
away as a wide smoothing kernel would.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from sdfcar.errors import bad_input

_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def harmonic_inpaint(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Copy of the 2D ``image`` whose pixels in ``region`` (bool, same shape) are replaced by
    the harmonic interpolation of the pixels around it."""
    image = np.asarray(image, dtype=np.float64)
    region = np.asarray(region, dtype=bool)
    if region.shape != image.shape:
        raise ValueError(f"region shape {region.shape} differs from image shape {image.shape}")
    filled = image.copy()
    count = int(region.sum())
    if count == 0:
        return filled
    if count == region.size:
        raise bad_input("mask", "covers the whole image: no background is left to interpolate from")
    index = np.full(image.shape, -1, dtype=np.int64)
    index[region] = np.arange(count)
    rows, cols = np.nonzero(region)
    unknown = index[rows, cols]
    degree = np.zeros(count)
    rhs = np.zeros(count)
    coupled_rows, coupled_cols = [], []
    for d_row, d_col in _NEIGHBOURS:
        n_rows, n_cols = rows + d_row, cols + d_col
        inside = ((n_rows >= 0) & (n_rows < image.shape[0])
                  & (n_cols >= 0) & (n_cols < image.shape[1]))
        here, n_rows, n_cols = unknown[inside], n_rows[inside], n_cols[inside]
        degree[here] += 1.0
        neighbour = index[n_rows, n_cols]
        free = neighbour >= 0
        coupled_rows.append(here[free])
        coupled_cols.append(neighbour[free])
        np.add.at(rhs, here[~free], image[n_rows[~free], n_cols[~free]])
    coupled_rows, coupled_cols = np.concatenate(coupled_rows), np.concatenate(coupled_cols)
    laplacian = sparse.csc_matrix(
        (np.concatenate([degree, -np.ones(coupled_rows.size)]),
         (np.concatenate([np.arange(count), coupled_rows]),
          np.concatenate([np.arange(count), coupled_cols]))), shape=(count, count))
    filled[region] = spsolve(laplacian, rhs)
    return filled
