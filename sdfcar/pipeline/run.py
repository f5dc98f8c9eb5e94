"""The reconstruction pipeline every front end runs, in two stages:
:func:`fit` (inputs -> problem -> prior method -> method) and :func:`finish` (one tree, its
signed distance, reprojections, the run record). :func:`run` does both.

Runs under PyTorch's deterministic algorithms with denormal floats flushed to zero (tiny
gradients once the field is pulled towards a prior made CPU iterations about 5x slower),
so the same input, seed and device give the same label.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from sdfcar.analysis.summary import Analysis, of_reconstruction
from sdfcar.config import ReconstructionConfig
from sdfcar.device import resolve_device
from sdfcar.errors import bad_input
from sdfcar.geometry import CaseGeometry, VolumeGrid
from sdfcar.io.limits import check_memory
from sdfcar.methods.base import Problem, Reconstruction
from sdfcar.methods.catalogue import method_named
from sdfcar.pipeline.calibration import Calibration
from sdfcar.pipeline.inputs import Inputs, from_arrays
from sdfcar.pipeline.postprocess import (on_grid, output_grid, reprojection_fit, reproject,
                                         select)
from sdfcar.pipeline.problem import build_problem
from sdfcar.pipeline.record import RunRecord
from sdfcar.progress import Progress, silent

log = logging.getLogger("sdfcar")


@dataclass
class Result:
    """What a reconstruction produces, on ``grid`` (arrays indexed ``(i, j, k)``)."""

    label: np.ndarray  # uint8 vessel label
    sdf: np.ndarray  # float32 signed distance, mm (negative inside)
    occupancy: np.ndarray  # float32 in [0, 1]
    grid: VolumeGrid
    views: list[np.ndarray]  # the views as given (checked float32 copies)
    reprojections: list[np.ndarray]  # line integrals of the label in each view
    config: ReconstructionConfig
    record: RunRecord
    inputs: Inputs
    #: QCA of the method's centrelines (None for methods without them).
    analysis: Analysis | None = None


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """PyTorch's deterministic algorithms on and denormals flushed, restored afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _fit(problem: Problem, config: ReconstructionConfig, progress: Progress
         ) -> tuple[Reconstruction, dict[str, dict], dict[str, float]]:
    """Run the prior (when the config names one and it can run) and the method."""
    method = method_named(config.method)
    reason = method.unusable(problem)
    if reason:
        raise bad_input("method", f"{config.method}: {reason}")
    statistics, seconds, prior = {}, {}, None
    if config.prior != "none":
        prior_method = method_named(config.prior)
        reason = prior_method.unusable(problem)
        if reason:
            log.warning("prior %s skipped: %s", config.prior, reason)
        else:
            started = time.perf_counter()
            prior = prior_method.fit(problem, config.settings_of(config.prior), progress)
            seconds["prior"] = round(time.perf_counter() - started, 3)
            statistics[config.prior] = prior.statistics
    started = time.perf_counter()
    reconstruction = method.fit(problem, config.settings_of(config.method), progress, prior)
    seconds["method"] = round(time.perf_counter() - started, 3)
    statistics[config.method] = reconstruction.statistics
    return reconstruction, statistics, seconds


@dataclass
class Fitted:
    """A run between its two stages: the problem and what the methods made of it."""

    inputs: Inputs
    config: ReconstructionConfig
    problem: Problem
    views: list[np.ndarray]  # the views as given (checked float32 copies)
    reconstruction: Reconstruction
    statistics: dict[str, dict]
    seconds: dict[str, float]
    started: float
    #: The run record's self-calibration section and the geometry the views were fitted in.
    calibration: dict[str, Any]
    geometry: CaseGeometry


def fit(inputs: Inputs, config: ReconstructionConfig, progress: Progress = silent) -> Fitted:
    """First stage: the problem of ``inputs`` and the methods' reconstruction of it (the
    output grid of ``config.output_spacing_mm`` is checked first)."""
    started = time.perf_counter()
    check_memory(inputs.geometry, "geometry", dense=config.dense)
    output_geometry(inputs.geometry, config.output_spacing_mm)
    device = resolve_device(config.device)
    with deterministic():
        problem, views = build_problem(inputs.views, inputs.geometry, inputs.masks, config,
                                       device)
        clock = time.perf_counter()
        calibration = Calibration.run(problem, config.calibration)
        problem = calibration.problem(problem)
        calibrating = round(time.perf_counter() - clock, 3)
        reconstruction, statistics, seconds = _fit(problem, config, progress)
    seconds = {"calibration": calibrating, **seconds}
    return Fitted(inputs, config, problem, views, reconstruction, statistics, seconds, started,
                  calibration.finish(reconstruction.geometry), calibration.geometry)


def output_geometry(geometry: CaseGeometry, spacing_mm: float | None) -> CaseGeometry:
    """``geometry`` with the grid the outputs are written on
    (:func:`~sdfcar.pipeline.postprocess.output_grid`); a finer grid's memory is checked."""
    grid = output_grid(geometry.volume, spacing_mm)
    if grid == geometry.volume:
        return geometry
    finer = replace(geometry, volume=grid)
    check_memory(finer, "output_spacing_mm", dense=True)
    return finer


def finish(fitted: Fitted, output_spacing_mm: float | None = None) -> Result:
    """Second stage, shared by every method: one tree, its signed distance, its
    reprojections and the run record, on the fit's grid or a finer one of
    ``output_spacing_mm`` (default: the config's; the method's model evaluated there when it
    has one)."""
    started = time.perf_counter()
    problem, config, seconds = fitted.problem, fitted.config, dict(fitted.seconds)
    geometry = output_geometry(fitted.geometry, output_spacing_mm or config.output_spacing_mm)
    grid = geometry.volume
    with deterministic():
        reconstruction = on_grid(fitted.reconstruction, problem.grid, grid)
        tree = select(reconstruction, grid.spacing_mm, config.connectivity)
        reprojections = reproject(tree.label, geometry, problem.device)
    fit = reprojection_fit(reprojections, fitted.views, problem.silhouettes,
                           config.silhouette.threshold_mm)
    seconds["postprocess"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    analysis, qca = of_reconstruction(config.method, fitted.reconstruction.statistics,
                                      problem.geometry.views)
    seconds["qca"] = round(time.perf_counter() - started, 3)
    seconds["reconstruct"] = round(time.perf_counter() - fitted.started, 3)
    selection = tree.selection.summary()
    record = RunRecord(
        preset=config.preset, method=config.method, prior=config.prior, seed=config.seed,
        device=str(problem.device), target=problem.target,
        silhouettes="given" if problem.silhouettes_given else "thresholded",
        config=config.to_dict(), inputs=fitted.inputs.description,
        vessel_voxels=int(tree.label.sum()), components=tree.components,
        components_before_postprocess=selection.pop("components_before_postprocess"),
        tree=selection, reprojection=fit, seconds=seconds, statistics=fitted.statistics,
        calibration=fitted.calibration,
        geometry_used={"corrected": fitted.geometry != fitted.inputs.geometry,
                       "views": [view.to_dict() for view in fitted.geometry.views]},
        output_grid=grid.to_dict() | {"filled": "fit" if grid == problem.grid else
                                      "model" if fitted.reconstruction.resample else
                                      "interpolated"}, qca=qca)
    return Result(tree.label, tree.sdf, tree.occupancy, grid, fitted.views,
                  reprojections, config, record, fitted.inputs, analysis)


def run(inputs: Inputs, config: ReconstructionConfig, progress: Progress = silent) -> Result:
    """Reconstruct ``inputs`` with ``config``: :func:`fit`, then :func:`finish`."""
    return finish(fit(inputs, config, progress))


def reconstruct(views: Sequence[np.ndarray], geometry: CaseGeometry,
                config: ReconstructionConfig, progress: Progress = silent,
                masks: Sequence[np.ndarray] | None = None) -> Result:
    """:func:`run` on views (and optional vessel masks) in memory."""
    return run(from_arrays(views, geometry, masks), config, progress)
