"""The unknowns and rays of the per-voxel methods (voxel fit, neural field).

Inside the two-view visual hull (``hull.mode`` auto/on) only the hull's voxels are unknowns
and each view is rendered by a sparse system matrix over the rays around its silhouette;
otherwise (``off``, or an unsafe hull under ``auto``) every voxel is an unknown and the
matrix-free projector renders whole views.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from sdfcar.errors import bad_input
from sdfcar.methods.losses import signed_distance_2d
from sdfcar.physics.hull import dilate, visual_hull
from sdfcar.physics.projector import ConeBeamProjector, SparseSystemMatrix, make_projector

if TYPE_CHECKING:
    from sdfcar.config import HullSettings
    from sdfcar.methods.base import Problem

log = logging.getLogger("sdfcar")


@dataclass
class HullSystem:
    """Points to evaluate and how to render them into the rays that are fitted."""

    points: torch.Tensor  # (M, 3) LPS mm
    render: Callable[[torch.Tensor], list[torch.Tensor]]  # values (M,) -> rays per view
    measured: list[torch.Tensor]  # the measured values of those rays (integrals or 0/1)
    measured_sdf: list[torch.Tensor]  # 2D signed distance of the silhouettes there (mm)
    grid_shape: tuple[int, int, int]
    hull: np.ndarray | None = None  # boolean grid mask of the unknowns; None: every voxel
    systems: list[SparseSystemMatrix] | None = None  # per view, inside the hull

    @property
    def sampling(self) -> str:
        """``"hull"`` (visual-hull voxels, sparse rays) or ``"grid"`` (every voxel)."""
        return "grid" if self.hull is None else "hull"

    def on_grid(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Values of the unknowns ``(M,)`` placed on the grid (``fill`` elsewhere)."""
        if self.hull is None:
            return np.asarray(values, dtype=np.float32).reshape(self.grid_shape)
        grid = np.full(self.grid_shape, fill, dtype=np.float32)
        grid[self.hull] = values
        return grid


def unsafe_hull_reason(hull: np.ndarray, settings: HullSettings) -> str | None:
    """Why ``hull`` cannot be trusted as the support of the vessels, or None."""
    if not hull.any():
        return "it is empty (the silhouettes do not intersect in the volume)"
    if hull.mean() > settings.max_fraction:
        return (f"it covers {100 * hull.mean():.0f} % of the grid (noisy views?), more than "
                f"hull.max_fraction={settings.max_fraction}")
    return None


def build_hull_system(problem: Problem) -> HullSystem:
    """The :class:`HullSystem` of ``problem`` (see the module docstring)."""
    grid, settings, device = problem.grid, problem.hull, problem.device
    measured_sdf = [signed_distance_2d(mask, view.detector_spacing_mm)
                    for mask, view in zip(problem.silhouettes, problem.geometry.views)]
    hull = None
    if settings.mode != "off":
        hull = visual_hull(problem.geometry.views, grid, problem.silhouettes,
                           settings.margin_px)
        reason = unsafe_hull_reason(hull, settings)
        if reason and settings.mode == "on":
            raise bad_input("hull.mode", f"the visual hull is unusable: {reason}")
        if reason:
            log.warning("visual hull off: %s; every voxel is an unknown", reason)
            hull = None

    def as_tensor(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=torch.float32, device=device)

    if hull is None:
        projector = make_projector(problem.geometry.views, grid, device=device)
        return HullSystem(
            as_tensor(grid.voxel_centers().reshape(-1, 3)),
            lambda values: [p.reshape(-1) for p in projector.project(values.reshape(grid.shape))],
            [as_tensor(image.reshape(-1)) for image in problem.measured],
            [as_tensor(sdf.reshape(-1)) for sdf in measured_sdf], grid.shape)
    columns = torch.full(grid.shape, -1, dtype=torch.int64)
    columns[torch.as_tensor(hull)] = torch.arange(int(hull.sum()))
    projector = ConeBeamProjector(problem.geometry.views, grid, device=device)
    systems, measured, sdfs = [], [], []
    for index, (image, mask) in enumerate(zip(problem.measured, problem.silhouettes)):
        rays = torch.as_tensor(np.flatnonzero(dilate(mask, settings.ray_margin_px)),
                               device=device)
        systems.append(projector.system_matrix(index, rays, columns))
        measured.append(as_tensor(image.reshape(-1))[rays])
        sdfs.append(as_tensor(measured_sdf[index].reshape(-1))[rays])
    log.info("visual hull: %d voxels (%.2f %% of the grid), rays %s", int(hull.sum()),
             100 * hull.mean(), [int(t.numel()) for t in measured])
    return HullSystem(as_tensor(grid.voxel_centers()[hull]),
                      lambda values: [system(values) for system in systems], measured, sdfs,
                      grid.shape, hull, systems)
