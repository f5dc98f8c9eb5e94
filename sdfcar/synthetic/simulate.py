"""Simulated angiography: project a ground-truth label volume into the views of a case."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sdfcar.io.case import Case
from sdfcar.errors import bad_input
from sdfcar.geometry import CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.physics.contrast import CONTRAST_MU_PER_MM
from sdfcar.physics.projector import make_projector

#: Default line-integral threshold (mm of lumen) for binary silhouettes.
DEFAULT_MASK_THRESHOLD_MM = 0.25


@dataclass(frozen=True)
class NoiseModel:
    """Projection noise.

    ``gaussian:S`` adds zero-mean Gaussian noise with standard deviation S times the view's
    maximum; ``poisson:I0`` draws photon counts from I0 exp(-mu L) (I0 photons per pixel,
    mu = :data:`CONTRAST_MU_PER_MM`) and converts them back to line integrals.
    """

    kind: str
    level: float

    @classmethod
    def parse(cls, text: str) -> NoiseModel:
        """Parse ``gaussian:0.05`` or ``poisson:1e5``."""
        kind, _, level = text.partition(":")
        try:
            value = float(level)
        except ValueError:
            value = math.nan
        if kind not in ("gaussian", "poisson") or not math.isfinite(value) or value <= 0:
            raise bad_input("--noise", f"expected gaussian:SIGMA or poisson:PHOTONS with a "
                                       f"positive number, got {text!r}")
        return cls(kind, value)

    def apply(self, integral: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of a line-integral image (mm)."""
        if self.kind == "gaussian":
            sigma = self.level * float(integral.max(initial=0.0))
            return (integral + rng.normal(0.0, sigma, integral.shape)).astype(np.float32)
        expected = self.level * np.exp(-CONTRAST_MU_PER_MM * integral)
        counts = np.maximum(rng.poisson(expected), 1)
        return (np.log(self.level / counts) / CONTRAST_MU_PER_MM).astype(np.float32)


def project_label(label: np.ndarray, grid: VolumeGrid, views: Sequence[ViewGeometry],
                  device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Noise-free line integrals (mm) of a label volume (nonzero = vessel) in its own grid."""
    occupancy = torch.as_tensor(np.asarray(label) > 0, dtype=torch.float32, device=device)
    projector = make_projector(views, grid, device=device)
    with torch.no_grad():
        return [p.cpu().numpy() for p in projector.project(occupancy)]


def simulate_case(label: np.ndarray, label_grid: VolumeGrid, geometry: CaseGeometry, *,
                  noise: NoiseModel | None = None, mask_threshold_mm: float | None = None,
                  seed: int = 0, device: str | torch.device = "cpu") -> Case:
    """Views of ``label`` for ``geometry``: integrals, optionally noisy, optionally binarised
    (``mask_threshold_mm``: pixels whose integral exceeds it become 1)."""
    if not np.any(label):
        raise bad_input("--label", "label volume is empty (no nonzero voxel)")
    rng = np.random.default_rng(seed)
    images = []
    for image in project_label(label, label_grid, geometry.views, device):
        if noise is not None:
            image = noise.apply(image, rng)
        if mask_threshold_mm is not None:
            image = (image > mask_threshold_mm).astype(np.float32)
        images.append(image)
    return Case(geometry, tuple(images))
