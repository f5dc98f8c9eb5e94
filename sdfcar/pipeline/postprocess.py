"""Shared post-processing of every method's reconstruction: one tree, its signed distance,
and how well it reprojects into the views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from sdfcar.errors import bad_input
from sdfcar.geometry import CaseGeometry, VolumeGrid
from sdfcar.methods.base import Reconstruction
from sdfcar.metrics import dice
from sdfcar.physics.projector import make_projector
from sdfcar.pipeline.connect import CONNECTIVITY_26, Selection, select_tree


@dataclass(frozen=True)
class Tree:
    """The selected tree: label, signed distance (``sdf < 0`` is exactly the label) and the
    occupancy it was selected from."""

    label: np.ndarray  # uint8
    sdf: np.ndarray  # float32, mm
    occupancy: np.ndarray  # float32 in [0, 1]
    selection: Selection

    @property
    def components(self) -> int:
        """26-connected components of the label."""
        return int(ndimage.label(self.label, CONNECTIVITY_26)[1])


def signed_distance(label: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Signed distance (mm, negative inside) of a voxel label, its zero level set half a
    voxel outside the boundary voxel centres."""
    half = 0.5 * min(spacing)
    return np.where(label, half - ndimage.distance_transform_edt(label, sampling=spacing),
                    ndimage.distance_transform_edt(~label, sampling=spacing) - half)


def select(reconstruction: Reconstruction, spacing: Sequence[float],
           connectivity: str) -> Tree:
    """One tree from the occupancy (:func:`sdfcar.pipeline.connect.select_tree`); its SDF is
    the method's own wherever that agrees with the label, the label's elsewhere."""
    occupancy = np.asarray(reconstruction.occupancy, dtype=np.float32)
    selection = select_tree(occupancy >= 0.5, occupancy, connectivity)
    label = selection.label
    sdf = signed_distance(label, spacing)
    if reconstruction.sdf is not None:
        sdf = np.where((reconstruction.sdf < 0.0) == label, reconstruction.sdf, sdf)
    return Tree(label.astype(np.uint8), sdf.astype(np.float32), occupancy, selection)


def output_grid(grid: VolumeGrid, spacing_mm: float | None) -> VolumeGrid:
    """The grid the outputs are written on: ``grid`` itself (``spacing_mm`` None), or the
    same field of view refined by the whole number of times that gives ``spacing_mm``."""
    if spacing_mm is None:
        return grid
    factors = [h / spacing_mm for h in grid.spacing_mm] if spacing_mm > 0 else [0.0]
    factor = round(factors[0])
    if factor < 1 or any(abs(f - factor) > 1e-6 * factor for f in factors):
        raise bad_input("output_spacing_mm (--output-spacing)",
                        f"expected the grid's spacing ({grid.spacing_mm[0]:g} mm) divided by "
                        f"a whole number, got {spacing_mm!r}")
    return grid.refined(factor)


def on_grid(reconstruction: Reconstruction, grid: VolumeGrid, target: VolumeGrid
            ) -> Reconstruction:
    """``reconstruction`` on the ``target`` grid (a refinement of ``grid``): its model
    evaluated there when it has one, else its occupancy interpolated (trilinear)."""
    if target == grid:
        return reconstruction
    if reconstruction.resample is not None:
        occupancy, sdf = reconstruction.resample(target)
        return Reconstruction(occupancy, sdf, reconstruction.statistics)
    factor = target.shape[0] // grid.shape[0]
    axes = [(np.arange(n * factor) + 0.5) / factor - 0.5 for n in grid.shape]
    coordinates = np.stack(np.meshgrid(*axes, indexing="ij"))
    occupancy = ndimage.map_coordinates(np.asarray(reconstruction.occupancy, np.float32),
                                        coordinates, order=1, mode="nearest")
    return Reconstruction(occupancy.astype(np.float32), None, reconstruction.statistics)


def reproject(label: np.ndarray, geometry: CaseGeometry, device: torch.device
              ) -> list[np.ndarray]:
    """Line integrals (mm) of the label in every view."""
    projector = make_projector(geometry.views, geometry.volume, device=device)
    with torch.no_grad():
        volume = torch.as_tensor(label, dtype=torch.float32, device=device)
        return [p.cpu().numpy() for p in projector.project(volume)]


def reprojection_fit(reprojections: Sequence[np.ndarray], views: Sequence[np.ndarray],
                     silhouettes: Sequence[np.ndarray], threshold_mm: float
                     ) -> list[dict[str, Any]]:
    """Per view: RMSE (mm) and relative L2 against the view, and the Dice of the
    reprojection's silhouette (integral above ``threshold_mm``) with the measured one."""
    fit = []
    for index, (p, t, mask) in enumerate(zip(reprojections, views, silhouettes), start=1):
        fit.append({"view": index, "rmse_mm": float(np.sqrt(np.mean((p - t) ** 2))),
                    "relative_l2": float(np.linalg.norm(p - t) / np.linalg.norm(t)),
                    "silhouette_dice": dice((p > threshold_mm)[None], np.asarray(mask)[None])})
    return fit
