"""The neural-field method: a hash-grid field fitted to both views, optionally pulled towards a
prior (the ``field`` preset: the voxel fit).

The field is evaluated at the unknowns of the problem's :class:`~sdfcar.methods.hull_system.HullSystem`
(visual-hull voxels, or every voxel), turned into occupancy and rendered into the views.
Losses: projection MSE on line integrals (or silhouette BCE on masks), the 2D-SDF term
(differentiable ``boundary`` or the reference code's ``thresholded``), an eikonal term and
the pull towards the prior's occupancy.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage
from torch.utils.checkpoint import checkpoint

from sdfcar.geometry import VolumeGrid
from sdfcar.methods.base import Problem, Reconstruction
from sdfcar.methods.field.network import ImplicitField, NetworkSettings
from sdfcar.methods.hull_system import HullSystem
from sdfcar.methods.losses import (boundary_sdf2d, eikonal, projection_mse, silhouette_bce,
                                   thresholded_sdf2d)
from sdfcar.progress import Progress, Step

#: Points per field evaluation chunk (bounds activation memory on the dense grid).
FIELD_CHUNK = 1 << 17


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (0 disables a term)."""

    projection: float = 1.0
    sdf2d: float = 0.0
    eikonal: float = 0.0
    #: Pull of the field's occupancy towards the prior's (when the config names a prior).
    prior: float = 0.0


@dataclass(frozen=True)
class FieldSettings:
    """Settings of the neural-field method (``field`` section)."""

    network: NetworkSettings = dataclasses.field(default_factory=NetworkSettings)
    loss: LossWeights = dataclasses.field(default_factory=LossWeights)
    #: Occupancy sharpness: occupancy = sigmoid(-alpha * sdf), alpha in 1/mm.
    alpha: float = 4.0
    #: 2D-SDF term: "boundary" (differentiable) or "thresholded" (the reference code's, no
    #: gradient).
    sdf2d_mode: str = "boundary"
    iterations: int = 300
    optimizer: str = "adam"
    lr: float = 1e-3
    #: Learning rate of the hash-grid tables (None: same as ``lr``).
    lr_encoding: float | None = None
    weight_decay: float = 0.0
    #: Eikonal samples per iteration and finite-difference step (mm).
    eikonal_samples: int = 4096
    eikonal_step_mm: float = 0.4

    #: Settings that are None by default but numbers when given.
    NUMBERS: ClassVar[tuple[str, ...]] = ("lr_encoding",)
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "sdf2d_mode": ("boundary", "thresholded"), "optimizer": ("adam", "adamw")}
    POSITIVE: ClassVar[tuple[str, ...]] = ("alpha", "iterations", "lr", "lr_encoding",
                                           "eikonal_samples", "eikonal_step_mm")


class FieldMethod:
    """A neural implicit field (hybrid SDF-occupancy, or NeCA's occupancy) fitted by Adam."""

    name: ClassVar[str] = "field"
    priors: ClassVar[tuple[str, ...]] = ("none", "voxel")

    def unusable(self, problem: Problem) -> str | None:
        """None: the field runs on the hull or on the whole grid."""
        return None

    def fit(self, problem: Problem, settings: FieldSettings, progress: Progress,
            prior: Reconstruction | None = None) -> Reconstruction:
        """Optimise the field; its occupancy (the voxel-wise maximum with the prior's, which
        holds thin branches the small field breaks) and, in hybrid mode, its SDF."""
        torch.manual_seed(problem.seed)
        system = problem.hull_system
        pull = None
        if prior is not None and settings.loss.prior > 0:
            values = prior.occupancy if system.hull is None else prior.occupancy[system.hull]
            pull = torch.as_tensor(values.reshape(-1), dtype=torch.float32,
                                   device=problem.device)
        model = ImplicitField(settings.network, problem.grid, problem.device).to(problem.device)
        optimiser = _optimiser(model, settings)
        curve: list[float] = []
        started = time.perf_counter()
        for iteration in range(settings.iterations):
            optimiser.zero_grad(set_to_none=True)
            loss = _loss(model, system, problem, settings, pull)
            loss.backward()
            optimiser.step()
            curve.append(float(loss.detach()))
            progress(Step("field", iteration + 1, settings.iterations, "iteration", curve[-1]))
        seconds = time.perf_counter() - started
        raw, occupancy = _field_on_grid(model, problem.grid, settings.alpha, problem.device)
        sdf = None
        if system.hull is not None:
            occupancy = np.where(system.hull, occupancy, 0.0)
        if settings.network.mode == "hybrid":
            sdf = raw
            if system.hull is not None:
                outside = ndimage.distance_transform_edt(~system.hull,
                                                         sampling=problem.grid.spacing_mm)
                sdf = np.where(system.hull, raw, np.maximum(raw, outside))
        if prior is not None:
            occupancy = np.maximum(occupancy, prior.occupancy)
        statistics = {"iterations": settings.iterations, "sampling": system.sampling,
                      "points_per_iteration": int(system.points.shape[0]),
                      "seconds": round(seconds, 3),
                      "seconds_per_iteration": round(seconds / max(settings.iterations, 1), 5),
                      "loss_curve": [round(v, 6) for v in curve]}
        return Reconstruction(occupancy.astype(np.float32), sdf, statistics)


def _optimiser(model: ImplicitField, settings: FieldSettings) -> torch.optim.Optimizer:
    encoding = list(model.encoding.parameters())
    head = [p for name, p in model.named_parameters() if not name.startswith("encoding.")]
    groups = [{"params": head, "lr": settings.lr},
              {"params": encoding, "lr": settings.lr_encoding or settings.lr}]
    kind = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=settings.lr, weight_decay=settings.weight_decay)


def _evaluate(model: ImplicitField, points: torch.Tensor) -> torch.Tensor:
    """Raw field values; large point sets go through checkpointed chunks."""
    if points.shape[0] <= FIELD_CHUNK:
        return model(points)
    return torch.cat([checkpoint(model, chunk, use_reentrant=False)
                      for chunk in points.split(FIELD_CHUNK)])


def _loss(model: ImplicitField, system: HullSystem, problem: Problem,
          settings: FieldSettings, pull: torch.Tensor | None) -> torch.Tensor:
    occupancy = model.occupancy(_evaluate(model, system.points), settings.alpha)
    predicted = system.render(occupancy)
    weights, views = settings.loss, len(predicted)
    if problem.target == "mask":
        def fit(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            return silhouette_bce(p, m, problem.silhouette.k)
    else:
        fit = projection_mse
    total = weights.projection * (sum(fit(p, m) for p, m in zip(predicted, system.measured))
                                  / views)
    if weights.sdf2d > 0:
        if settings.sdf2d_mode == "boundary":
            term = sum(boundary_sdf2d(p, s) for p, s in zip(predicted, system.measured_sdf))
        else:
            term = sum(thresholded_sdf2d(p, s, v.detector_shape, v.detector_spacing_mm)
                       for p, s, v in zip(predicted, system.measured_sdf,
                                          problem.geometry.views))
        total = total + weights.sdf2d * (term / views)
    if weights.eikonal > 0 and settings.network.mode == "hybrid":
        pick = torch.randint(0, system.points.shape[0], (settings.eikonal_samples,),
                             device=system.points.device)
        total = total + weights.eikonal * eikonal(model, system.points[pick],
                                                  settings.eikonal_step_mm)
    if pull is not None:
        total = total + weights.prior * torch.mean((occupancy - pull) ** 2)
    return total


def _field_on_grid(model: ImplicitField, grid: VolumeGrid, alpha: float,
                   device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The field's raw output and occupancy at every voxel centre."""
    points = torch.as_tensor(grid.voxel_centers().reshape(-1, 3), dtype=torch.float32,
                             device=device)
    with torch.no_grad():
        raw = torch.cat([model(chunk) for chunk in points.split(FIELD_CHUNK)])
        occupancy = model.occupancy(raw, alpha).reshape(grid.shape).cpu().numpy()
    return raw.reshape(grid.shape).cpu().numpy(), occupancy
