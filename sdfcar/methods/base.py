"""The one interface every reconstruction method implements.

A method is a class with a ``name``, the methods it accepts as a ``prior``, a typed settings
section (a frozen dataclass in :class:`~sdfcar.config.ReconstructionConfig`) and two calls::

    unusable(problem) -> reason or None
    fit(problem, settings, progress, prior=None) -> Reconstruction

It sees the measured views through a :class:`Problem` (the same for every method), reports
its progress as :class:`~sdfcar.progress.Step` values, and returns occupancy on the grid
(plus its own signed distance where it has one) and its statistics. Tree selection, the
label's signed distance, reprojections and the output files belong to the pipeline
(:mod:`sdfcar.pipeline`), shared by every method. A method may take another's
:class:`Reconstruction` as its ``prior`` (the preset says which; ``field``: the field
pulled towards the voxel fit). :mod:`sdfcar.methods.catalogue` lists the methods by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch

from sdfcar.geometry import CaseGeometry, VolumeGrid
from sdfcar.progress import Progress

if TYPE_CHECKING:
    from sdfcar.config import CalibrationSettings, HullSettings, SilhouetteSettings
    from sdfcar.methods.hull_system import HullSystem


@dataclass(frozen=True)
class PoseFreedom:
    """How a method may refine view 2's pose (self-calibration): along the correction
    directions the views determine, from the correction found so far, within the bounds."""

    #: Orthonormal ``(k, 6)`` directions of the six correction numbers (rotation vector in
    #: degrees, shift in mm) that the views determine.
    directions: np.ndarray
    #: The correction already in the problem's geometry (six numbers, from the given one).
    start: np.ndarray
    settings: CalibrationSettings


@dataclass(frozen=True)
class Problem:
    """What every method fits: two measured views, their geometry and their silhouettes."""

    measured: tuple[np.ndarray, ...]  # float32 (rows, cols): integrals (mm) or 0/1 masks
    geometry: CaseGeometry
    target: str  # "integral" or "mask": what ``measured`` holds
    silhouettes: tuple[np.ndarray, ...]  # boolean vessel masks per view
    silhouettes_given: bool  # masks given (e.g. extracted from angiograms), not thresholded
    silhouette: SilhouetteSettings
    hull: HullSettings
    device: torch.device
    seed: int
    #: Self-calibration is on (:mod:`sdfcar.pipeline.calibration` corrected the geometry):
    #: how a method with a model of its own may refine view 2's pose. None: as given.
    pose_freedom: PoseFreedom | None = None

    @property
    def grid(self) -> VolumeGrid:
        """The reconstruction grid."""
        return self.geometry.volume

    @cached_property
    def hull_system(self) -> HullSystem:
        """The rays and unknowns of the visual hull (or the dense grid), built once and
        shared by the methods of a run (:mod:`sdfcar.methods.hull_system`)."""
        from sdfcar.methods.hull_system import build_hull_system

        return build_hull_system(self)


@dataclass
class Reconstruction:
    """What a method returns, on the problem's grid (arrays indexed ``(i, j, k)``)."""

    occupancy: np.ndarray  # float32 in [0, 1]; a voxel is vessel at >= 0.5
    #: The method's own signed distance (mm, negative inside) where it has one; the pipeline
    #: keeps it wherever it agrees with the final label.
    sdf: np.ndarray | None = None
    #: Per-method figures for the run record (iterations, seconds, loss curve, ...).
    statistics: dict[str, Any] = field(default_factory=dict)
    #: A continuous model's occupancy and SDF on another grid (``--output-spacing``); None:
    #: the pipeline interpolates the occupancy instead.
    resample: Callable[[VolumeGrid], tuple[np.ndarray, np.ndarray | None]] | None = None
    #: The view geometry the method fitted in when it corrected the given one
    #: (self-calibration); the pipeline reprojects and records with it. None: as given.
    geometry: CaseGeometry | None = None


class Method(Protocol):
    """A reconstruction method (see the module docstring)."""

    name: ClassVar[str]
    #: Methods whose result this one accepts as its ``prior`` ("none": it takes none).
    priors: ClassVar[tuple[str, ...]]

    def unusable(self, problem: Problem) -> str | None:
        """Why the method cannot run on ``problem`` (one line), or None when it can."""
        ...

    def fit(self, problem: Problem, settings: Any, progress: Progress,
            prior: Reconstruction | None = None) -> Reconstruction:
        """Reconstruct ``problem`` with ``settings`` (this method's config section)."""
        ...
