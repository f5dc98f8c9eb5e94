"""From inputs and settings to the :class:`~sdfcar.methods.base.Problem` every method fits:
checked views and masks, the target mode, the silhouettes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from sdfcar.config import ReconstructionConfig
from sdfcar.errors import bad_input
from sdfcar.geometry import CaseGeometry
from sdfcar.methods.base import Problem
from sdfcar.physics.hull import threshold_silhouette

log = logging.getLogger("sdfcar")


def _shape_error(name: str, shape: tuple[int, ...], detector: tuple[int, int]) -> str:
    return (f"{name} is {'x'.join(map(str, shape))} but the geometry says "
            f"{detector[0]}x{detector[1]}")


def validate_views(views: Sequence[np.ndarray], geometry: CaseGeometry) -> list[np.ndarray]:
    """Check count, shape, finiteness and content of the views; return float32 copies."""
    if len(views) != len(geometry.views):
        raise bad_input("views", f"expected {len(geometry.views)} views, got {len(views)}")
    checked = []
    for index, (image, view) in enumerate(zip(views, geometry.views), start=1):
        image = np.asarray(image, dtype=np.float32)
        if image.shape != view.detector_shape:
            raise bad_input(f"view{index}", _shape_error("image", image.shape, view.detector_shape))
        if not np.all(np.isfinite(image)):
            raise bad_input(f"view{index}", "contains NaN or infinite values")
        if not np.any(image > 0):
            raise bad_input(f"view{index}", "is empty (no positive pixel): nothing to reconstruct")
        checked.append(image)
    return checked


def validate_masks(masks: Sequence[np.ndarray], geometry: CaseGeometry) -> list[np.ndarray]:
    """Check count, shape and content of vessel masks (nonzero = vessel); boolean copies."""
    if len(masks) != len(geometry.views):
        raise bad_input("masks", f"expected {len(geometry.views)} masks, got {len(masks)}")
    checked = []
    for index, (mask, view) in enumerate(zip(masks, geometry.views), start=1):
        mask = np.asarray(mask)
        if mask.shape != view.detector_shape:
            raise bad_input(f"mask{index}", _shape_error("mask", mask.shape, view.detector_shape))
        if not np.any(mask):
            raise bad_input(f"mask{index}", "is empty (no vessel pixel)")
        checked.append(mask.astype(bool))
    return checked


def resolve_target(target: str, images: Sequence[np.ndarray]) -> str:
    """The target mode: ``target`` itself, or for ``"auto"`` ``"mask"`` when every view
    holds only 0 and 1 and ``"integral"`` otherwise."""
    if target != "auto":
        return target
    binary = all(np.all((image == 0) | (image == 1)) for image in images)
    return "mask" if binary else "integral"


def thresholded_silhouettes(images: Sequence[np.ndarray], config: ReconstructionConfig
                            ) -> list[np.ndarray]:
    """Vessel silhouettes thresholded from line-integral views (noise-adaptive)."""
    settings = config.silhouette
    found = [threshold_silhouette(image, settings.threshold_mm, settings.noise_sigmas)
             for image in images]
    thresholds = [threshold for _, threshold in found]
    if any(t > settings.threshold_mm for t in thresholds):
        log.info("noisy views: silhouettes thresholded at %s mm after smoothing",
                 ", ".join(f"{t:.3f}" for t in thresholds))
    return [mask for mask, _ in found]


def build_problem(views: Sequence[np.ndarray], geometry: CaseGeometry,
                  masks: Sequence[np.ndarray] | None, config: ReconstructionConfig,
                  device: torch.device) -> tuple[Problem, list[np.ndarray]]:
    """The problem and the checked views (as given, for the reprojection figures)."""
    images = validate_views(views, geometry)
    given = None if masks is None else validate_masks(masks, geometry)
    target = resolve_target(config.target, images)
    silhouettes = given if given is not None else thresholded_silhouettes(images, config)
    measured = ([mask.astype(np.float32) for mask in silhouettes] if target == "mask"
                else images)
    problem = Problem(tuple(measured), geometry, target, tuple(silhouettes), given is not None,
                      config.silhouette, config.hull, device, config.seed)
    return problem, images
