"""The voxel method: box-constrained fit of per-voxel occupancy inside the visual hull.

Finds ``0 <= x <= 1`` minimising ``sum_k || A_k x - y_k ||^2_{R_k}`` (``loss="lsq"``, line
integrals) or the silhouette binary cross-entropy of ``s = 1 - exp(-k A_k x)`` against
masks (``loss="bce"``) with accelerated, SIRT-preconditioned projected gradient steps
(FISTA with the row/column-sum scaling of SIRT). The upper bound is what resolves most of
the two-view ambiguity: a vessel voxel is
either full or empty, so mass cannot spread over ghost pairings for free (measured in
``docs/reconstruction-notes.md``). Voxels pinned at zero are pruned from the problem as the
fit goes, which is most of the hull.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from sdfcar.methods.base import Problem, Reconstruction
from sdfcar.physics.projector import SparseSystemMatrix
from sdfcar.progress import Progress, Step, silent

#: The stage :func:`fit_occupancy` reports its iterations under.
STAGE = "voxel fit"
#: Fitting losses of :func:`fit_occupancy`.
LOSSES = ("lsq", "bce")
#: Smallest rendered silhouette used in the BCE gradient ``k (s - m) / s``: an empty ray
#: inside the mask is pushed as if it rendered this much (bounds the step near ``s = 0``).
MIN_SILHOUETTE = 0.05


def to_scipy(system: SparseSystemMatrix) -> sp.csr_matrix:
    """The CSR system matrix of a view as a float32 SciPy matrix (CPU)."""
    matrix = system.matrix.to_sparse_csr().cpu()
    return sp.csr_matrix((matrix.values().numpy().astype(np.float32),
                          matrix.col_indices().numpy(), matrix.crow_indices().numpy()),
                         shape=tuple(matrix.shape))


def silhouette_gradient(integral: np.ndarray, mask: np.ndarray, k: float,
                        min_silhouette: float = MIN_SILHOUETTE) -> np.ndarray:
    """Derivative in the line integral ``p`` of the silhouette BCE
    (:func:`sdfcar.methods.losses.silhouette_bce`, per ray, unaveraged).

    With ``s = 1 - exp(-k p)``: ``dBCE/ds = (s - m) / (s (1 - s))`` and ``ds/dp = k (1 - s)``,
    so ``dBCE/dp = k (s - m) / s``: ``k`` on background rays, ``-k (1 - s) / s`` inside the
    mask. ``s`` is floored at ``min_silhouette`` (the exact value diverges as ``p -> 0``)."""
    kp = k * np.asarray(integral, dtype=np.float64)
    s = -np.expm1(-kp)
    # s - m written as (1 - m) - exp(-k p): no cancellation where s is close to 1.
    return (k * ((1.0 - mask) - np.exp(-kp)) / np.maximum(s, min_silhouette)).astype(np.float32)


def _lsq(projected: np.ndarray, target: np.ndarray, _k: float) -> tuple[np.ndarray, float]:
    residual = projected - target
    return residual, float(np.dot(residual, residual)) / 2.0


def _bce(projected: np.ndarray, mask: np.ndarray, k: float) -> tuple[np.ndarray, float]:
    # The gradient divided by k^2 is in mm, like a least-squares residual, so SIRT's
    # scaling and step carry over: a background ray is pushed down by 1/k mm per step.
    kp = np.maximum(k * projected, 1e-6)
    misfit = float(np.sum(mask * -np.log(-np.expm1(-kp)) + (1.0 - mask) * kp))
    return silhouette_gradient(projected, mask, k) / (k * k), misfit


def fit_occupancy(systems: Sequence[sp.csr_matrix], targets: Sequence[np.ndarray],
                  iterations: int, relaxation: float = 1.5, prune_every: int = 50,
                  progress: Progress = silent, loss: str = "lsq",
                  k: float = 4.0) -> np.ndarray:
    """Occupancy in [0, 1] per column of ``systems`` that reproduces ``targets``: line
    integrals (``loss="lsq"``) or binary masks (``loss="bce"``, silhouette sharpness ``k``
    per mm).

    ``relaxation`` scales the SIRT step (1 is the safe bound, values up to about 1.5 converge
    faster here); every ``prune_every`` iterations, voxels that sit at zero with a gradient
    pushing them below zero are removed from the active set.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    misfit_of = _lsq if loss == "lsq" else _bce
    columns = systems[0].shape[1]
    targets = [np.asarray(t, dtype=np.float32) for t in targets]
    active = np.arange(columns)
    row_scale = [1.0 / np.maximum(m @ np.ones(columns, dtype=np.float32), 1e-6)
                 for m in systems]
    problem = _Scaled(systems, active, row_scale)
    previous = momentum_point = np.zeros(columns, dtype=np.float32)
    t = 1.0
    for iteration in range(iterations):
        fitted = [misfit_of(p, y, k) for p, y in
                  zip(problem.project(momentum_point), targets)]
        residuals = [residual for residual, _ in fitted]
        gradient = problem.gradient(residuals)
        current = np.clip(momentum_point - relaxation * problem.column_scale * gradient, 0, 1)
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum_point = current + ((t - 1.0) / t_next) * (current - previous)
        previous, t = current, t_next
        progress(Step(STAGE, iteration + 1, iterations, "iteration",
                      sum(misfit for _, misfit in fitted)))
        if prune_every and (iteration + 1) % prune_every == 0 and iteration + 1 < iterations:
            keep = (current > 0) | (momentum_point > 0) | (gradient < 0)
            if not keep.all():
                active = active[keep]
                problem = _Scaled(systems, active, row_scale)
                previous, momentum_point = current[keep], momentum_point[keep]
    occupancy = np.zeros(columns, dtype=np.float32)
    occupancy[active] = previous
    return occupancy


class _Scaled:
    """The active columns of every view's matrix with SIRT's row (of the whole problem) and
    column scalings."""

    def __init__(self, systems: Sequence[sp.csr_matrix], active: np.ndarray,
                 row_scale: Sequence[np.ndarray]):
        self.matrices = [system[:, active].tocsr() for system in systems]
        self.transposes = [m.T.tocsr() for m in self.matrices]
        self.row_scale = row_scale
        column_sums = sum(t @ np.ones(t.shape[1], dtype=np.float32) for t in self.transposes)
        self.column_scale = (1.0 / np.maximum(column_sums, 1e-6)).astype(np.float32)

    def project(self, x: np.ndarray) -> list[np.ndarray]:
        """``A_k x`` per view."""
        return [m @ x for m in self.matrices]

    def gradient(self, residuals: Sequence[np.ndarray]) -> np.ndarray:
        """``sum_k A_k^T R_k r_k`` (``r_k``: residuals, or loss gradients in mm)."""
        return sum(t @ (scale * r) for t, scale, r in
                   zip(self.transposes, self.row_scale, residuals))



@dataclass(frozen=True)
class VoxelSettings:
    """Settings of the voxel method (``voxel`` section)."""

    #: Iterations of the box-constrained fit.
    iterations: int = 3000
    #: Scale of the SIRT step (1 is the safe bound; up to about 1.5 converges faster).
    relaxation: float = 1.5

    POSITIVE: ClassVar[tuple[str, ...]] = ("iterations", "relaxation")


class VoxelMethod:
    """Per-voxel occupancy in [0, 1] inside the visual hull (:func:`fit_occupancy`), by least
    squares on line integrals or silhouette cross-entropy on masks."""

    name: ClassVar[str] = "voxel"
    priors: ClassVar[tuple[str, ...]] = ("none",)

    def unusable(self, problem: Problem) -> str | None:
        """Why this method cannot run on ``problem`` (it needs the visual hull), or None."""
        if problem.hull_system.systems is None:
            return "the voxel fit needs the visual hull (hull.mode auto or on, a usable hull)"
        return None

    def fit(self, problem: Problem, settings: VoxelSettings, progress: Progress,
            prior: Reconstruction | None = None) -> Reconstruction:
        """Fit the hull's voxels to both views."""
        started = time.perf_counter()
        system = problem.hull_system
        occupancy = fit_occupancy(
            [to_scipy(matrix) for matrix in system.systems],
            [values.cpu().numpy() for values in system.measured], settings.iterations,
            settings.relaxation,
            progress=progress,
            loss="bce" if problem.target == "mask" else "lsq", k=problem.silhouette.k)
        statistics: dict[str, Any] = {
            "iterations": settings.iterations, "hull_voxels": int(system.hull.sum()),
            "seconds": round(time.perf_counter() - started, 3)}
        return Reconstruction(system.on_grid(occupancy), None, statistics)
