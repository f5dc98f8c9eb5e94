"""Per-case optimisation of the implicit field from two views: ``sdfcar.pipeline.reconstruct``.

The field is evaluated at voxel centres, turned into occupancy and projected. The fast path
evaluates only the voxels of the dilated two-view visual hull and projects them with a
sparse system matrix restricted to the rays around the silhouettes; the dense path (the
reference presets, or when a hull would be unsafe) evaluates every voxel and uses the
matrix-free projector.

Silhouettes (the visual hull, the 2D-SDF term) are thresholded from the views unless
vessel masks are given (e.g. extracted from angiograms). In the ``mask`` target mode the
views are binary silhouettes: the rendered ``1 - exp(-k p)`` is fitted by binary
cross-entropy instead of the line integrals by MSE.

With ``method = "tubes"`` (the ``tubes`` preset) no field is fitted: the vessels are traced
as tubes (:mod:`sdfcar.methods.tubes.tracing`) and voxelised on the grid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from sdfcar import __version__
from sdfcar.config import ReconstructionConfig
from sdfcar.pipeline.connect import CONNECTIVITY_26, select_tree
from sdfcar.device import resolve_device
from sdfcar.errors import fail
from sdfcar.methods.field.network import ImplicitField
from sdfcar.geometry import CaseGeometry, VolumeGrid
from sdfcar.io.limits import check_memory
from sdfcar.physics.hull import dilate, silhouette, visual_hull
from sdfcar.methods.losses import (boundary_sdf2d, eikonal, projection_mse, signed_distance_2d,
                     silhouette_bce, thresholded_sdf2d)
from sdfcar.synthetic.phantom import rasterize_segments
from sdfcar.physics.projector import ConeBeamProjector, SparseSystemMatrix, make_projector
from sdfcar.methods.tubes.tracing import trace_tree
from sdfcar.methods.voxel import fit_occupancy, to_scipy

log = logging.getLogger("sdfcar")

#: Points per field evaluation chunk (bounds activation memory on the dense path).
FIELD_CHUNK = 1 << 17
#: Traced tubes are voxelised with this many sub-points per voxel edge.
TUBE_SUPERSAMPLE = 2


@dataclass
class Result:
    """What a reconstruction produces, on ``grid`` (arrays indexed ``(i, j, k)``)."""

    label: np.ndarray  # uint8 vessel label
    sdf: np.ndarray  # float32 signed distance, mm (negative inside)
    occupancy: np.ndarray  # float32 in [0, 1]
    grid: VolumeGrid
    targets: list[np.ndarray]  # the views fitted
    reprojections: list[np.ndarray]  # projections of the label into each view
    config: ReconstructionConfig
    run: dict = field(default_factory=dict)  # settings, timings, loss curve, errors


@dataclass
class _Problem:
    """What one iteration needs: points to evaluate and how to render them."""

    points: torch.Tensor  # (M, 3) LPS mm
    render: Callable[[torch.Tensor], list[torch.Tensor]]  # occupancy (M,) -> rays per view
    targets: list[torch.Tensor]  # measured values of the same rays (integrals or 0/1)
    target_sdf: list[torch.Tensor]  # 2D signed distance of the measured silhouettes there
    hull: np.ndarray | None  # boolean grid mask on the fast path
    path: str
    systems: list[SparseSystemMatrix] | None = None  # per view, fast path
    prior: torch.Tensor | None = None  # voxel occupancy of the hull points, when fitted
    target: str = "integral"  # "integral" or "mask" (see resolve_target)


def validate_views(views: Sequence[np.ndarray], geometry: CaseGeometry) -> list[np.ndarray]:
    """Check count, shape, finiteness and content of the views; return float32 copies."""
    if len(views) != len(geometry.views):
        raise fail("views", f"expected {len(geometry.views)} views, got {len(views)}")
    checked = []
    for index, (image, view) in enumerate(zip(views, geometry.views), start=1):
        image = np.asarray(image, dtype=np.float32)
        if image.shape != view.detector_shape:
            raise fail(f"view{index}", f"image is {'x'.join(map(str, image.shape))} but the "
                                       f"geometry says {view.detector_shape[0]}x"
                                       f"{view.detector_shape[1]}")
        if not np.all(np.isfinite(image)):
            raise fail(f"view{index}", "contains NaN or infinite values")
        if not np.any(image > 0):
            raise fail(f"view{index}", "is empty (no positive pixel): nothing to reconstruct")
        checked.append(image)
    return checked


def validate_masks(masks: Sequence[np.ndarray], geometry: CaseGeometry) -> list[np.ndarray]:
    """Check count, shape and content of vessel masks (nonzero = vessel); boolean copies."""
    if len(masks) != len(geometry.views):
        raise fail("masks", f"expected {len(geometry.views)} masks, got {len(masks)}")
    checked = []
    for index, (mask, view) in enumerate(zip(masks, geometry.views), start=1):
        mask = np.asarray(mask)
        if mask.shape != view.detector_shape:
            raise fail(f"mask{index}", f"mask is {'x'.join(map(str, mask.shape))} but the "
                                       f"geometry says {view.detector_shape[0]}x"
                                       f"{view.detector_shape[1]}")
        if not np.any(mask):
            raise fail(f"mask{index}", "is empty (no vessel pixel)")
        checked.append(mask.astype(bool))
    return checked


def resolve_target(target: str, images: Sequence[np.ndarray]) -> str:
    """The target mode: ``target`` itself, or for ``"auto"`` ``"mask"`` when every view
    holds only 0 and 1 and ``"integral"`` otherwise."""
    if target != "auto":
        return target
    binary = all(np.all((image == 0) | (image == 1)) for image in images)
    return "mask" if binary else "integral"


ProgressCallback = Callable[[int, int, float], None]
"""Called after every iteration with (iterations done, total iterations, loss)."""


def reconstruct(views: Sequence[np.ndarray], geometry: CaseGeometry,
                config: ReconstructionConfig, progress: bool = True,
                on_iteration: ProgressCallback | None = None,
                masks: Sequence[np.ndarray] | None = None) -> Result:
    """Optimise a field so its projections match ``views``; return label, SDF and more.

    ``masks`` (one boolean array per view, detector-shaped) are the vessel silhouettes used
    for the visual hull and the 2D-SDF term, instead of silhouettes thresholded from the
    views; in the ``mask`` target mode they are also what is fitted. ``progress`` shows
    tqdm bars; ``on_iteration`` receives (done, total, loss) after each iteration of the
    voxel prior and of the field (for GUIs and servers). Runs with
    PyTorch's deterministic algorithms (denormals flushed to zero), so the same seed on the
    same device gives the same result."""
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Denormal floats (tiny gradients once the field pulls towards the voxel prior) made CPU
    # iterations about 5x slower; flush them to zero during the run.
    torch.set_flush_denormal(True)
    try:
        return _reconstruct(views, geometry, config, progress, on_iteration, masks)
    finally:
        torch.set_flush_denormal(False)
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _reconstruct(views: Sequence[np.ndarray], geometry: CaseGeometry,
                 config: ReconstructionConfig, progress: bool,
                 on_iteration: ProgressCallback | None,
                 masks: Sequence[np.ndarray] | None) -> Result:
    started = time.perf_counter()
    check_memory(geometry, "geometry",
                 dense=config.method != "tubes" and config.fast_path == "off")
    images = validate_views(views, geometry)
    silhouettes = None if masks is None else validate_masks(masks, geometry)
    target = resolve_target(config.target, images)
    device = resolve_device(config.device)
    if config.method == "tubes":
        return _reconstruct_tubes(images, geometry, config, progress, on_iteration, target,
                                  device, started)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    grid = geometry.volume
    problem = _build_problem(images, geometry, config, device, silhouettes, target)
    prior_steps = config.prior_iterations if problem.systems is not None else 0
    total = prior_steps + config.iterations
    report = on_iteration or (lambda *_: None)
    prior_seconds = _fit_prior(problem, config, progress,
                               lambda done, _, misfit: report(done, total, misfit))
    field_model = ImplicitField(config.field, grid).to(device)
    optimiser = _optimiser(field_model, config)
    curve: list[float] = []
    fit_started = time.perf_counter()
    bar = tqdm(range(config.iterations), desc=f"sdfcar {config.preset}", disable=not progress,
               unit="it", dynamic_ncols=True)
    for iteration in bar:
        optimiser.zero_grad(set_to_none=True)
        loss, terms = _loss(field_model, problem, geometry, config)
        loss.backward()
        optimiser.step()
        curve.append(float(loss.detach()))
        bar.set_postfix(loss=f"{curve[-1]:.4g}", **{k: f"{v:.3g}" for k, v in terms.items()})
        report(prior_steps + iteration + 1, total, curve[-1])
    fit_seconds = time.perf_counter() - fit_started
    result = _finish(field_model, problem, images, geometry, config, device)
    result.run.update({
        "sdfcar_version": __version__, "torch_version": torch.__version__,
        "preset": config.preset, "config": config.to_dict(), "seed": config.seed,
        "device": str(device), "path": problem.path, "iterations": config.iterations,
        "target": target, "silhouettes": "masks" if masks is not None else "thresholded",
        "points_per_iteration": int(problem.points.shape[0]),
        "seconds_prior": round(prior_seconds, 3),
        "seconds_optimise": round(fit_seconds, 3),
        "seconds_per_iteration": round(fit_seconds / max(config.iterations, 1), 5),
        "seconds_reconstruct": round(time.perf_counter() - started, 3),
        "loss_curve": [round(v, 6) for v in curve],
    })
    return result


# ----------------------------------------------------------------------------- set-up


def _thresholded_silhouettes(images: list[np.ndarray], config: ReconstructionConfig
                             ) -> list[np.ndarray]:
    found = [silhouette(image, config.silhouette_threshold_mm, config.silhouette_noise_sigmas)
             for image in images]
    thresholds = [threshold for _, threshold in found]
    if any(t > config.silhouette_threshold_mm for t in thresholds):
        log.info("noisy views: silhouettes thresholded at %s mm after smoothing",
                 ", ".join(f"{t:.3f}" for t in thresholds))
    return [mask for mask, _ in found]


def _build_problem(images: list[np.ndarray], geometry: CaseGeometry,
                   config: ReconstructionConfig, device: torch.device,
                   silhouettes: list[np.ndarray] | None, target: str) -> _Problem:
    grid = geometry.volume
    if silhouettes is None:
        silhouettes = _thresholded_silhouettes(images, config)
    if target == "mask":
        images = [mask.astype(np.float32) for mask in silhouettes]
    target_sdf = [signed_distance_2d(mask, view.detector_spacing_mm)
                  for mask, view in zip(silhouettes, geometry.views)]
    hull = None
    if config.fast_path != "off":
        hull = visual_hull(geometry.views, grid, silhouettes, config.hull_margin_px)
        reason = _unsafe_hull_reason(hull, config)
        if reason and config.fast_path == "on":
            raise fail("fast_path", f"the visual hull is unusable: {reason}")
        if reason:
            log.warning("fast path off: %s; using the dense path", reason)
            hull = None
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)
    if hull is None:
        projector = make_projector(geometry.views, grid, device=device)
        points = as_tensor(grid.voxel_centers().reshape(-1, 3))
        return _Problem(
            points,
            lambda occ: [p.reshape(-1) for p in projector.project(occ.reshape(grid.shape))],
            [as_tensor(image.reshape(-1)) for image in images],
            [as_tensor(sdf.reshape(-1)) for sdf in target_sdf], None, "dense", target=target)
    columns = torch.full(grid.shape, -1, dtype=torch.int64)
    columns[torch.as_tensor(hull)] = torch.arange(int(hull.sum()))
    projector = ConeBeamProjector(geometry.views, grid, device=device)
    systems, targets, sdfs = [], [], []
    for index, (image, mask) in enumerate(zip(images, silhouettes)):
        rays = torch.as_tensor(np.flatnonzero(dilate(mask, config.ray_margin_px)), device=device)
        systems.append(projector.system_matrix(index, rays, columns))
        targets.append(as_tensor(image.reshape(-1))[rays])
        sdfs.append(as_tensor(target_sdf[index].reshape(-1))[rays])
    log.info("fast path: %d hull voxels (%.2f %% of the grid), rays %s", int(hull.sum()),
             100 * hull.mean(), [int(t.numel()) for t in targets])
    points = as_tensor(grid.voxel_centers()[hull])
    return _Problem(points, lambda occ: [system(occ) for system in systems], targets, sdfs,
                    hull, "fast", systems, target=target)


def _fit_prior(problem: _Problem, config: ReconstructionConfig, progress: bool,
               on_iteration: ProgressCallback) -> float:
    """Fit the voxel prior in place (fast path, ``prior_iterations`` > 0); its seconds."""
    if config.prior_iterations <= 0 or problem.systems is None:
        if config.prior_iterations > 0:
            log.warning("voxel prior skipped: it needs the fast path (hull), not the dense one")
        return 0.0
    started = time.perf_counter()
    bar = tqdm(total=config.prior_iterations, desc="voxel prior", disable=not progress,
               unit="it", dynamic_ncols=True)
    prior = fit_occupancy([to_scipy(system) for system in problem.systems],
                          [target.cpu().numpy() for target in problem.targets],
                          config.prior_iterations, config.prior_relaxation,
                          on_iteration=lambda *state: (bar.update(), on_iteration(*state)),
                          loss="bce" if problem.target == "mask" else "lsq",
                          k=config.silhouette_k)
    bar.close()
    problem.prior = torch.as_tensor(prior, dtype=torch.float32, device=problem.points.device)
    return time.perf_counter() - started


def _unsafe_hull_reason(hull: np.ndarray, config: ReconstructionConfig) -> str | None:
    if not hull.any():
        return "it is empty (the silhouettes do not intersect in the volume)"
    if hull.mean() > config.max_hull_fraction:
        return (f"it covers {100 * hull.mean():.0f} % of the grid (noisy views?), more than "
                f"max_hull_fraction={config.max_hull_fraction}")
    return None


def _optimiser(model: ImplicitField, config: ReconstructionConfig) -> torch.optim.Optimizer:
    encoding = list(model.encoding.parameters())
    head = [p for name, p in model.named_parameters() if not name.startswith("encoding.")]
    groups = [{"params": head, "lr": config.lr},
              {"params": encoding, "lr": config.lr_encoding or config.lr}]
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=config.lr, weight_decay=config.weight_decay)


# ----------------------------------------------------------------------------- iteration


def _evaluate(model: ImplicitField, points: torch.Tensor) -> torch.Tensor:
    """Raw field values; large point sets go through checkpointed chunks."""
    if points.shape[0] <= FIELD_CHUNK:
        return model(points)
    return torch.cat([checkpoint(model, chunk, use_reentrant=False)
                      for chunk in points.split(FIELD_CHUNK)])


def _loss(model: ImplicitField, problem: _Problem, geometry: CaseGeometry,
          config: ReconstructionConfig) -> tuple[torch.Tensor, dict[str, float]]:
    raw = _evaluate(model, problem.points)
    occupancy = model.occupancy(raw, config.alpha)
    predicted = problem.render(occupancy)
    weights, views = config.loss, len(predicted)
    if problem.target == "mask":
        fit = lambda p, t: silhouette_bce(p, t, config.silhouette_k)
    else:
        fit = projection_mse
    terms = {"proj": sum(fit(p, t) for p, t in zip(predicted, problem.targets)) / views}
    if weights.sdf2d > 0:
        if config.sdf2d_mode == "boundary":
            terms["sdf2d"] = sum(boundary_sdf2d(p, s) for p, s in
                                 zip(predicted, problem.target_sdf)) / views
        else:
            terms["sdf2d"] = sum(
                thresholded_sdf2d(p, s, v.detector_shape, v.detector_spacing_mm)
                for p, s, v in zip(predicted, problem.target_sdf, geometry.views)) / views
    if weights.eikonal > 0 and config.field.mode == "hybrid":
        pick = torch.randint(0, problem.points.shape[0], (config.eikonal_samples,),
                             device=problem.points.device)
        terms["eik"] = eikonal(model, problem.points[pick], config.eikonal_step_mm)
    if weights.prior > 0 and problem.prior is not None:
        terms["prior"] = torch.mean((occupancy - problem.prior) ** 2)
    scale = {"proj": weights.projection, "sdf2d": weights.sdf2d, "eik": weights.eikonal,
             "prior": weights.prior}
    total = sum(scale[name] * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}


# ----------------------------------------------------------------------------- outputs


def _finish(model: ImplicitField, problem: _Problem, images: list[np.ndarray],
            geometry: CaseGeometry, config: ReconstructionConfig, device: torch.device
            ) -> Result:
    grid = geometry.volume
    raw, occupancy = _field_on_grid(model, grid, config.alpha, device)
    if problem.hull is not None:
        occupancy = np.where(problem.hull, occupancy, 0.0)
    if problem.prior is not None:
        # The small field smooths away or breaks some thin branches that the voxel prior
        # holds (docs/reconstruction-notes.md): a voxel is vessel when either says so.
        prior = np.zeros(grid.shape, dtype=np.float32)
        prior[problem.hull] = problem.prior.cpu().numpy()
        occupancy = np.maximum(occupancy, prior)
    selection = select_tree(occupancy >= 0.5, occupancy, config.connectivity)
    label = selection.label
    sdf = _signed_distance(label, grid.spacing_mm)
    if config.field.mode == "hybrid":
        if problem.hull is not None:
            outside = ndimage.distance_transform_edt(~problem.hull, sampling=grid.spacing_mm)
            raw = np.where(problem.hull, raw, np.maximum(raw, outside))
        # The field's own distances wherever it agrees with the label (smooth surface).
        sdf = np.where((raw < 0.0) == label, raw, sdf)
    run = selection.summary()
    if problem.hull is not None:
        run["hull_voxels"] = int(problem.hull.sum())
    return _result(label, sdf, occupancy, images, geometry, config, device, run)


def _result(label: np.ndarray, sdf: np.ndarray, occupancy: np.ndarray,
            images: list[np.ndarray], geometry: CaseGeometry, config: ReconstructionConfig,
            device: torch.device, run: dict) -> Result:
    """The Result of a label: its reprojections, their errors and label statistics added."""
    reprojections = _reproject(label, geometry, device)
    errors = [{"view": index + 1,
               "rmse_mm": float(np.sqrt(np.mean((p - t) ** 2))),
               "relative_l2": float(np.linalg.norm(p - t) / np.linalg.norm(t))}
              for index, (p, t) in enumerate(zip(reprojections, images))]
    run = {**run, "components": int(ndimage.label(label, CONNECTIVITY_26)[1]),
           "vessel_voxels": int(label.sum()), "reprojection_error": errors}
    return Result(label.astype(np.uint8), sdf.astype(np.float32),
                  occupancy.astype(np.float32), geometry.volume, images, reprojections,
                  config, run)


def _reconstruct_tubes(images: list[np.ndarray], geometry: CaseGeometry,
                       config: ReconstructionConfig, progress: bool,
                       on_iteration: ProgressCallback | None, target: str,
                       device: torch.device, started: float) -> Result:
    """Trace the tree as tubes (:mod:`sdfcar.methods.tubes.tracing`) and voxelise it on the grid."""
    if target == "mask":
        raise fail("target", "the tubes method fits line integrals; for binary masks use a "
                             "field preset (e.g. --preset default)")
    traced = trace_tree(images, geometry, config.tubes, progress, on_iteration)
    if not traced.vessels:
        raise fail("views", "no vessel found: no tube fits both views (check the geometry "
                            "and that the views hold line integrals in mm)")
    grid = geometry.volume
    # Partial-volume occupancy from 2^3 sub-points per voxel: a voxel is vessel when at
    # least half of it lies inside a traced tube.
    occupancy = rasterize_segments(traced.vessels, grid, supersample=TUBE_SUPERSAMPLE)
    label = occupancy >= 0.5
    if not np.any(label):
        raise fail("views", "the traced vessels are thinner than the grid's voxels")
    run = {"vessels": len(traced.vessels), "seeds_tried": traced.seeds_tried,
           "unexplained_integral": round(traced.unexplained, 3),
           "centreline_points": int(sum(len(v.points) for v in traced.vessels))}
    result = _result(label, _signed_distance(label, grid.spacing_mm), occupancy, images,
                     geometry, config, device, run)
    result.run.update({
        "sdfcar_version": __version__, "torch_version": torch.__version__,
        "preset": config.preset, "config": config.to_dict(), "seed": config.seed,
        "device": str(device), "path": "tubes", "target": target,
        "seconds_reconstruct": round(time.perf_counter() - started, 3),
    })
    return result


def _field_on_grid(model: ImplicitField, grid: VolumeGrid, alpha: float,
                   device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The field's raw output and occupancy at every voxel centre."""
    points = torch.as_tensor(grid.voxel_centers().reshape(-1, 3), dtype=torch.float32,
                             device=device)
    with torch.no_grad():
        raw = torch.cat([model(chunk) for chunk in points.split(FIELD_CHUNK)])
        occupancy = model.occupancy(raw, alpha).reshape(grid.shape).cpu().numpy()
    return raw.reshape(grid.shape).cpu().numpy(), occupancy


def _signed_distance(label: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Signed distance (mm, negative inside) of a voxel label, its zero level set half a
    voxel outside the boundary voxel centres."""
    half = 0.5 * min(spacing)
    return np.where(label, half - ndimage.distance_transform_edt(label, sampling=spacing),
                    ndimage.distance_transform_edt(~label, sampling=spacing) - half)


def _reproject(label: np.ndarray, geometry: CaseGeometry, device: torch.device
               ) -> list[np.ndarray]:
    projector = make_projector(geometry.views, geometry.volume, device=device)
    with torch.no_grad():
        volume = torch.as_tensor(label, dtype=torch.float32, device=device)
        return [p.cpu().numpy() for p in projector.project(volume)]
