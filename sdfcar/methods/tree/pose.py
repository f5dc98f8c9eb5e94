"""View 2's pose as the tree refinement fits it: self-calibration with the tree model, along
the correction directions the views determine (:mod:`sdfcar.pipeline.calibration` found the
start and those directions)."""

from __future__ import annotations

import torch

from sdfcar.geometry.correction import Correction
from sdfcar.methods.base import PoseFreedom


class Motion(torch.nn.Module):
    """View 2's further correction ``x = c @ directions`` (rotation vector in degrees, shift
    in mm). The tree seen by view 2 moves by the inverse of the C-arm's motion,
    ``p -> Q^T (p - q)``, so the rays stay fixed."""

    def __init__(self, freedom: PoseFreedom, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        count = len(freedom.directions)
        self.coordinates = torch.nn.Parameter(torch.zeros(count, dtype=dtype, device=device))
        self.register_buffer("directions",
                             torch.as_tensor(freedom.directions, dtype=dtype, device=device))
        #: How far the further correction may go per component before the total reaches
        #: the bounds, each way.
        bounds = freedom.settings.bounds
        self.room = (torch.as_tensor(bounds - freedom.start, dtype=dtype, device=device),
                     torch.as_tensor(bounds + freedom.start, dtype=dtype, device=device))

    def vector(self) -> torch.Tensor:
        """The six numbers of the further correction."""
        return self.coordinates @ self.directions if len(self.coordinates) \
            else self.directions.new_zeros(6)

    def matrix(self) -> torch.Tensor:
        """``Q``, the C-arm's further rotation (Rodrigues, differentiable at zero)."""
        rotation = torch.deg2rad(self.vector()[:3])
        angle = torch.sqrt((rotation * rotation).sum() + 1e-24)
        k = rotation / angle
        zero = k.new_zeros(())
        cross = torch.stack([torch.stack([zero, -k[2], k[1]]), torch.stack([k[2], zero, -k[0]]),
                             torch.stack([-k[1], k[0], zero])])
        return torch.eye(3, dtype=k.dtype, device=k.device) + torch.sin(angle) * cross \
            + (1.0 - torch.cos(angle)) * (cross @ cross)

    def points(self, points: torch.Tensor) -> torch.Tensor:
        """Points ``(N, 3)`` as view 2 sees them."""
        return (points - self.vector()[3:]) @ self.matrix()

    def clamp_(self) -> None:
        """Shrink the further correction until the total is within its bounds."""
        with torch.no_grad():
            x = self.vector()
            over = torch.maximum(x / self.room[0], -x / self.room[1]).max()
            if over > 1.0:
                self.coordinates.div_(over)

    def correction(self) -> Correction:
        """The further correction fitted."""
        with torch.no_grad():
            return Correction.of_vector(self.vector().cpu().numpy().astype(float))
