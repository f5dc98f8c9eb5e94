"""Vessel surface: the zero level set of the SDF as a smoothed triangle mesh in LPS mm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.measure import marching_cubes

from sdfcar.geometry import VolumeGrid

#: Taubin lambda/mu: a smoothing step then an un-shrinking step (Taubin 1995).
TAUBIN_LAMBDA = 0.5
TAUBIN_MU = -0.53


def surface_from_sdf(sdf: np.ndarray, grid: VolumeGrid, smoothing_iterations: int = 10
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of ``sdf == 0`` (negative inside), Taubin-smoothed.

    Returns vertices ``(V, 3)`` float64 in LPS mm and faces ``(F, 3)`` int64 wound so that
    normals point out of the vessel; both are empty when the SDF has no zero crossing.
    Where a vessel leaves the grid the surface is left open.
    """
    sdf = np.asarray(sdf, dtype=np.float32)
    if sdf.shape != grid.shape:
        raise ValueError(f"sdf shape {sdf.shape} does not match grid {grid.shape}")
    if not (sdf.min() < 0.0 < sdf.max()):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    # skimage's default winding gives right-handed normals towards increasing values,
    # i.e. out of the vessel for an SDF that is negative inside (checked in the tests).
    index, faces, _, _ = marching_cubes(sdf, level=0.0)
    vertices = index @ grid.index_to_lps.T + grid.origin_mm
    faces = faces.astype(np.int64)
    if np.linalg.det(grid.direction_matrix) < 0:  # a mirroring grid flips the winding
        faces = faces[:, ::-1].copy()
    return _taubin_smooth(vertices, faces, smoothing_iterations), faces


def _taubin_smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Taubin smoothing with the uniform (umbrella) Laplacian; one iteration = two steps."""
    count = len(vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    source = np.concatenate([edges[:, 0], edges[:, 1]])
    target = np.concatenate([edges[:, 1], edges[:, 0]])
    degree = np.bincount(source, minlength=count).astype(float)
    has_neighbours = (degree > 0)[:, None]
    degree = np.maximum(degree, 1.0)[:, None]

    def laplacian(points: np.ndarray) -> np.ndarray:
        sums = np.stack([np.bincount(source, weights=points[target, axis], minlength=count)
                         for axis in range(3)], axis=1)
        return np.where(has_neighbours, sums / degree - points, 0.0)

    points = np.array(vertices, dtype=float)
    for _ in range(iterations):
        points += TAUBIN_LAMBDA * laplacian(points)
        points += TAUBIN_MU * laplacian(points)
    return points


def write_vtk(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a legacy binary VTK PolyData file (float32 points in LPS mm, triangles).

    The header carries ``SPACE=LPS``, which 3D Slicer reads to place the model.
    """
    vertices = np.asarray(vertices, dtype=">f4").reshape(-1, 3)
    faces = np.asarray(faces).reshape(-1, 3)
    cells = np.concatenate([np.full((len(faces), 1), 3), faces], axis=1).astype(">i4")
    header = ("# vtk DataFile Version 3.0\n"
              "sdfcar coronary artery surface, units mm SPACE=LPS\n"
              "BINARY\nDATASET POLYDATA\n")
    path = Path(path)
    with path.open("wb") as file:
        file.write(header.encode("ascii"))
        file.write(f"POINTS {len(vertices)} float\n".encode("ascii"))
        file.write(vertices.tobytes() + b"\n")
        if len(faces):  # VTK's reader rejects an empty POLYGONS block (its writer omits it)
            file.write(f"POLYGONS {len(faces)} {cells.size}\n".encode("ascii"))
            file.write(cells.tobytes() + b"\n")
    return path
