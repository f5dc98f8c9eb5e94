"""View 2's pose as the tree refinement fits it (self-calibration with the tree model;
:mod:`sdfcar.pipeline.calibration` finds the start)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from sdfcar.geometry.correction import Correction, ShiftBasis

if TYPE_CHECKING:
    from sdfcar.config import CalibrationSettings


class Motion(torch.nn.Module):
    """View 2's correction as the refinement fits it: the tree seen by view 2 moves by the
    inverse of the C-arm's motion, ``x -> Q^T (x - q)``, so the rays stay fixed."""

    def __init__(self, basis: ShiftBasis, settings: CalibrationSettings,
                 dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.rotation = torch.nn.Parameter(torch.zeros(3, dtype=dtype, device=device))
        self.coordinates = torch.nn.Parameter(torch.zeros(2, dtype=dtype, device=device))
        self.register_buffer("across", torch.as_tensor(basis.across, dtype=dtype, device=device))
        self.register_buffer("along", torch.as_tensor(basis.along, dtype=dtype, device=device))
        self.register_buffer("share", torch.as_tensor(basis.share, dtype=dtype, device=device))
        self.bounds = (math.radians(settings.max_rotation_deg), settings.max_translation_mm)

    def matrix(self) -> torch.Tensor:
        """``Q``, the C-arm's rotation (Rodrigues, differentiable at zero)."""
        angle = torch.sqrt((self.rotation * self.rotation).sum() + 1e-24)
        k = self.rotation / angle
        zero = k.new_zeros(())
        cross = torch.stack([torch.stack([zero, -k[2], k[1]]), torch.stack([k[2], zero, -k[0]]),
                             torch.stack([-k[1], k[0], zero])])
        return torch.eye(3, dtype=k.dtype, device=k.device) + torch.sin(angle) * cross \
            + (1.0 - torch.cos(angle)) * (cross @ cross)

    def shift(self) -> torch.Tensor:
        """``q`` (mm)."""
        return self.coordinates @ self.across + (self.coordinates @ self.share) * self.along

    def points(self, points: torch.Tensor) -> torch.Tensor:
        """Points ``(N, 3)`` as view 2 sees them."""
        return (points - self.shift()) @ self.matrix()

    def directions(self, directions: torch.Tensor) -> torch.Tensor:
        """Directions ``(N, 3)`` as view 2 sees them."""
        return directions @ self.matrix()

    def clamp_(self) -> None:
        """Keep every component within its bound."""
        with torch.no_grad():
            self.rotation.clamp_(-self.bounds[0], self.bounds[0])
            self.coordinates.clamp_(-self.bounds[1], self.bounds[1])

    def correction(self) -> Correction:
        """The fitted correction."""
        with torch.no_grad():
            return Correction(np.degrees(self.rotation.cpu().numpy().astype(float)),
                              self.shift().cpu().numpy().astype(float))
