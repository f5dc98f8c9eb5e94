"""Global refinement: every centreline point and radius of the tree fitted jointly to both
full views.

The loss, per view (pixels ``U`` near any piece; normalised by the measured silhouette's
pixel count so its scale does not jump when ``U`` is rebuilt):

* **data**: integral targets: the robust (soft-L1) misfit of the rendered line integrals,
  in noise levels; mask targets: binary cross-entropy of the rendered soft silhouette;
* **2D distance**: every centreline point projects inside the measured silhouette (the
  squared distance transform of its outside, mm at the isocenter, sampled bilinearly), a
  pull that reaches farther than a tube's own image;
* **priors**: curvature (second differences), even spacing along a vessel, smooth radii.

Adam on the points and log radii (step sizes decayed to 0 along a cosine), with the
(pixel, piece) pairs rebuilt every ``rebuild_every`` steps and early stopping once the
loss stops improving. A view with a :class:`~sdfcar.methods.tree.pose.Motion` sees
the tree through it (self-calibration): its pose is fitted with the tree, or alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from scipy import ndimage

from sdfcar.device import torch_threads
from sdfcar.geometry import ViewGeometry
from sdfcar.methods.tree.pose import Motion
from sdfcar.methods.tree.model import TreeModel
from sdfcar.physics.hull import noise_sigma
from sdfcar.physics.pieces import (Pairs, ball_intervals, piece_intervals, piece_pairs,
                                   render_union)
from sdfcar.physics.projector import soft_silhouette
from sdfcar.progress import Progress, Step

if TYPE_CHECKING:
    from sdfcar.config import CalibrationSettings

#: Floor of a view's noise level in the integral misfit (mm).
MIN_NOISE_MM = 0.05
#: Soft-L1 scale of the integral misfit, in noise levels.
ROBUST_SCALE = 3.0
#: Pixels within this of a piece's wall (mm, at the piece) are in its pairs.
PAIR_MARGIN_MM = 1.0
#: The axis of the negligible piece whose pairs a ball takes (mm).
BALL_AXIS_MM = np.array([1e-3, 0.0, 0.0])


@dataclass(frozen=True)
class RefineSettings:
    """Weights and schedule of the global refinement."""

    #: Steps on views binned ``binning`` x ``binning`` (pixel means), then at full resolution.
    coarse_iterations: int = 150
    fine_iterations: int = 40
    binning: int = 2
    rebuild_every: int = 20
    #: Adam's step sizes at the start of each stage, decayed along a cosine. Radii move 50
    #: times slower than points: the tracer's radii are good (median error 0.02 mm on lca0)
    #: and free radii grow to cover misplaced or missing vessels (lca0's 2-start tracing
    #: refined, Dice: 0.717 at 0.002, 0.713 at 0.01; from its true tree moved 1 mm with
    #: radii 15 % large: 0.917 at 0.002, 0.928 at 0.01).
    learning_rate_mm: float = 0.1
    learning_rate_log_radius: float = 0.002
    silhouette_weight: float = 1.0
    curvature_weight: float = 20.0
    spacing_weight: float = 10.0
    radius_weight: float = 2.0
    #: Stop when the loss has not improved by this fraction over ``patience`` steps.
    tolerance: float = 1e-3
    patience: int = 30
    #: torch's intra-op threads on a CPU. The steps are many small operations, and torch's
    #: OpenMP threads spin at every join: beside one other busy 2-thread process, rca0's
    #: 190 steps took 63-116 s at 2 threads and 16 s at 1; on a quiet 2-core machine 9 s at
    #: 2 and 12 s at 1 (the same tree either way; ``docs/benchmarks.md``, "Refinement under
    #: load"). A user's machine runs Slicer beside it, a batch several cases.
    threads: int = 1

    POSITIVE: ClassVar[tuple[str, ...]] = ("fine_iterations", "binning", "rebuild_every",
                                           "learning_rate_mm", "learning_rate_log_radius",
                                           "patience", "threads")


@dataclass
class ViewTarget:
    """One view as the refinement sees it: geometry, measured values, silhouette distance."""

    view: ViewGeometry
    measured: torch.Tensor  # flat (rows * cols,)
    mask: torch.Tensor  # flat bool, measured silhouette
    outside_mm: torch.Tensor  # (1, 1, rows, cols) distance to the silhouette (mm at iso)
    projection: torch.Tensor  # (3, 4)
    source: torch.Tensor  # (3,)
    noise_mm: float
    pairs: Pairs | None = field(default=None)
    ball_pairs: Pairs | None = field(default=None)
    covered: torch.Tensor | None = field(default=None)  # distinct pixels of both pair sets
    motion: Motion | None = field(default=None)  # self-calibration: the tree as this view sees it

    @classmethod
    def of(cls, view: ViewGeometry, measured: np.ndarray, silhouette: np.ndarray,
           dtype: torch.dtype, device: torch.device, binning: int = 1) -> ViewTarget:
        """The target of one measured view and its silhouette, binned ``binning`` times."""
        view, measured, silhouette = binned(view, measured, silhouette, binning)
        pixel_mm = min(view.detector_spacing_mm) * view.source_to_isocenter_mm \
            / view.source_to_detector_mm
        outside = ndimage.distance_transform_edt(~np.asarray(silhouette, bool)) * pixel_mm
        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values), dtype=dtype, device=device)

        return cls(view, tensor(measured).reshape(-1),
                   torch.as_tensor(np.asarray(silhouette, bool).reshape(-1), device=device),
                   tensor(outside)[None, None], tensor(view.projection_matrix),
                   tensor(view.source), max(noise_sigma(np.asarray(measured)), MIN_NOISE_MM))

    @property
    def pixel_count(self) -> int:
        return int(self.measured.shape[0])

    def seen(self, points: torch.Tensor) -> torch.Tensor:
        """Points ``(N, 3)`` where this view sees them (moved by its motion, if any)."""
        return points if self.motion is None else self.motion.points(points)

    def piece_parts(self, model: TreeModel) -> tuple[torch.Tensor, ...]:
        """The model's pieces as this view sees them (:meth:`TreeModel.piece_parts`)."""
        starts, ends, *rest = model.piece_parts()
        return (self.seen(starts), self.seen(ends), *rest)

    def ball_parts(self, model: TreeModel) -> tuple[torch.Tensor, ...]:
        """The model's balls as this view sees them (:meth:`TreeModel.ball_parts`)."""
        centres, radii = model.ball_parts()
        return self.seen(centres), radii

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Detector (row, col) ``(N, 2)`` of points ``(N, 3)``, differentiably."""
        homogeneous = points @ self.projection[:, :3].T + self.projection[:, 3]
        return torch.stack([homogeneous[:, 1] / homogeneous[:, 2],
                            homogeneous[:, 0] / homogeneous[:, 2]], dim=1)

    def outside_at(self, points: torch.Tensor) -> torch.Tensor:
        """Distance to the measured silhouette (mm) at the projections of ``points``."""
        rows, cols = self.view.detector_shape
        rc = self.project(self.seen(points))
        grid = torch.stack([rc[:, 1] / (cols - 1) * 2 - 1, rc[:, 0] / (rows - 1) * 2 - 1],
                           dim=1)
        sampled = torch.nn.functional.grid_sample(
            self.outside_mm, grid[None, None], mode="bilinear", padding_mode="border",
            align_corners=True)
        return sampled.reshape(-1)


def binned(view: ViewGeometry, measured: np.ndarray, silhouette: np.ndarray, factor: int
           ) -> tuple[ViewGeometry, np.ndarray, np.ndarray]:
    """A view with ``factor`` x ``factor`` pixels merged: the detector of the bins (cropped to
    a multiple of ``factor``; bin centres are the means of their pixel centres), the mean
    of the measured values and the union of the silhouette."""
    if factor == 1:
        return view, measured, silhouette
    rows, cols = (n // factor for n in view.detector_shape)
    crop = (slice(0, rows * factor), slice(0, cols * factor))
    dr, dc = view.detector_spacing_mm
    # Cropping the last rows/columns moves the detector's centre; the offset keeps the bins.
    shift = ((view.detector_shape[0] - rows * factor) * dr / 2.0,
             (view.detector_shape[1] - cols * factor) * dc / 2.0)
    coarse = dataclasses.replace(
        view, detector_shape=(rows, cols), detector_spacing_mm=(dr * factor, dc * factor),
        detector_offset_mm=(view.detector_offset_mm[0] - shift[0],
                            view.detector_offset_mm[1] - shift[1]))
    blocks = [np.asarray(a)[crop].reshape(rows, factor, cols, factor)
              for a in (measured, silhouette)]
    return coarse, blocks[0].mean(axis=(1, 3)), blocks[1].any(axis=(1, 3))


def view_targets(views: Sequence[ViewGeometry], measured: Sequence[np.ndarray],
                 silhouettes: Sequence[np.ndarray], dtype: torch.dtype,
                 device: torch.device, binning: int = 1) -> list[ViewTarget]:
    """The targets of all views, binned ``binning`` times."""
    return [ViewTarget.of(v, m, s, dtype, device, binning)
            for v, m, s in zip(views, measured, silhouettes)]


def rebuild_pairs(model: TreeModel, targets: Sequence[ViewTarget]) -> None:
    """The (pixel, piece) and (pixel, ball) pairs of every view for the model as it is now."""
    for target in targets:
        with torch.no_grad():
            starts, ends, r_start, r_end = (t.cpu().numpy() for t in target.piece_parts(model))
            centres, r_balls = (t.cpu().numpy() for t in target.ball_parts(model))
        dtype, device = target.measured.dtype, target.measured.device
        target.pairs = piece_pairs(target.view, starts, ends,
                                   np.maximum(r_start, r_end) + PAIR_MARGIN_MM, dtype, device)
        # A ball's pairs: those of a piece of negligible length at its centre.
        target.ball_pairs = piece_pairs(target.view, centres, centres + BALL_AXIS_MM,
                                        r_balls + PAIR_MARGIN_MM, dtype, device)
        target.covered = torch.unique(torch.cat([target.pairs.pixels, target.ball_pairs.pixels]))


def render(model: TreeModel, target: ViewTarget) -> torch.Tensor:
    """The model's line integrals in one view (flat), through its current pairs: the union
    of its pieces and balls (:func:`~sdfcar.physics.pieces.render_union`)."""
    return render_union([(target.pairs, piece_intervals, target.piece_parts(model)),
                         (target.ball_pairs, ball_intervals, target.ball_parts(model))],
                        target.source, target.pixel_count)


def data_loss(rendered: torch.Tensor, target: ViewTarget, mode: str, k: float
              ) -> torch.Tensor:
    """The data term of one view over the pixels of its pairs (see the module docstring)."""
    pixels = target.covered
    normaliser = max(int(target.mask.sum()), 1)
    values, measured = rendered[pixels], target.measured[pixels]
    if mode == "mask":
        probability = soft_silhouette(values, k).clamp(1e-6, 1 - 1e-6)
        loss = -(measured * torch.log(probability) + (1 - measured) * torch.log1p(-probability))
    else:
        z = (values - measured) / (target.noise_mm * ROBUST_SCALE)
        loss = 2.0 * (torch.sqrt(1.0 + z * z) - 1.0)
    return loss.sum() / normaliser


def prior_loss(model: TreeModel, settings: RefineSettings, spacing_mm: float) -> torch.Tensor:
    """Curvature, spacing and radius-smoothness priors (dimensionless)."""
    points, log_radii = model.slot_points, model.log_radii
    total = points.new_zeros(())
    triples = model.interior_slots()
    if len(triples):
        bend = points[triples[:, 0]] - 2 * points[triples[:, 1]] + points[triples[:, 2]]
        total = total + settings.curvature_weight * (bend * bend).sum(dim=1).mean() \
            / spacing_mm ** 2
    slots = model.piece_slots()
    if len(slots):
        length = torch.linalg.norm(points[slots[:, 1]] - points[slots[:, 0]], dim=1)
        total = total + settings.spacing_weight * ((length - spacing_mm) ** 2).mean() \
            / spacing_mm ** 2
        step = log_radii[slots[:, 1]] - log_radii[slots[:, 0]]
        total = total + settings.radius_weight * (step * step).mean()
    return total


@dataclass
class RefineOutcome:
    """The loss curve of a refinement and the steps it took."""

    losses: list[float]
    steps: int


def _groups(model: TreeModel, targets: Sequence[ViewTarget], settings: RefineSettings,
            fit_tree: bool, calibration: CalibrationSettings | None) -> list[dict]:
    """Adam's parameter groups: the tree (when ``fit_tree``) and the views' motions."""
    groups = [{"params": [model.points], "lr": settings.learning_rate_mm},
              {"params": [model.log_radii], "lr": settings.learning_rate_log_radius}] \
        if fit_tree else []
    for motion in (t.motion for t in targets if t.motion is not None):
        assert calibration is not None, "a view's motion is fitted with calibration settings"
        if len(motion.coordinates):
            groups.append({"params": [motion.coordinates], "lr": calibration.learning_rate})
    return groups


def refine(model: TreeModel, targets: Sequence[ViewTarget], settings: RefineSettings,
           iterations: int, mode: str, k: float, spacing_mm: float, progress: Progress,
           stage: str = "refining", fit_tree: bool = True,
           calibration: CalibrationSettings | None = None) -> RefineOutcome:
    """Fit ``model`` (in place, unless not ``fit_tree``) and the targets' motions (with
    ``calibration``'s step sizes) to ``targets``; see the module docstring."""
    model.points.requires_grad_(fit_tree)
    model.log_radii.requires_grad_(fit_tree)
    groups = _groups(model, targets, settings, fit_tree, calibration)
    if not groups:
        return RefineOutcome([], 0)
    with torch_threads(settings.threads, model.points.device):
        losses = _descend(model, targets, settings, iterations, mode, k, spacing_mm, progress,
                          stage, torch.optim.Adam(groups))
    model.points.requires_grad_(False)
    model.log_radii.requires_grad_(False)
    return RefineOutcome(losses, len(losses))


def _descend(model: TreeModel, targets: Sequence[ViewTarget], settings: RefineSettings,
             iterations: int, mode: str, k: float, spacing_mm: float, progress: Progress,
             stage: str, optimiser: torch.optim.Optimizer) -> list[float]:
    """Up to ``iterations`` steps of ``optimiser`` on the refinement's loss (stopping early
    on a plateau); the loss of each step."""
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(iterations, 1))
    losses: list[float] = []
    best, since_best = float("inf"), 0
    for step in range(iterations):
        if step % settings.rebuild_every == 0:
            rebuild_pairs(model, targets)
        optimiser.zero_grad()
        loss = prior_loss(model, settings, spacing_mm)
        for target in targets:
            loss = loss + data_loss(render(model, target), target, mode, k)
            loss = loss + settings.silhouette_weight \
                * (target.outside_at(model.slot_points) ** 2).mean()
        loss.backward()
        optimiser.step()
        schedule.step()
        for target in targets:
            if target.motion is not None:
                target.motion.clamp_()
        value = float(loss.detach())
        losses.append(value)
        progress(Step(stage, step + 1, iterations, "iteration", value))
        if value < best * (1.0 - settings.tolerance):
            best, since_best = value, 0
        else:
            since_best += 1
            if since_best >= settings.patience:
                break
    return losses
