"""Loss terms of the reconstruction.

* :func:`projection_mse`: predicted against measured line integrals.
* :func:`silhouette_bce`: predicted soft silhouettes ``s = 1 - exp(-k p)`` against binary
  masks (the ``mask`` target mode), binary cross-entropy in a form that stays finite.
* :func:`boundary_sdf2d`: the differentiable 2D-SDF term. The measured silhouette's signed
  distance map ``phi`` (mm on the detector, negative inside) weights the predicted soft
  silhouette ``1 - exp(-k p)``; its gradient pushes projected vessel out of the background
  (the further from the silhouette, the harder) and fills the silhouette's interior. The
  seed's term thresholds the prediction before a distance transform and so passes no
  gradient; :func:`thresholded_sdf2d` reproduces it for the ``sdfcar-paper`` preset.
* :func:`eikonal`: ``|grad sdf| = 1`` by central finite differences.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from sdfcar.physics.projector import soft_silhouette

#: Sharpness (1/mm) of the soft silhouette used by the 2D-SDF term.
SILHOUETTE_K = 4.0
#: Floor of ``k * integral`` in the silhouette BCE (keeps ``-log s`` finite on empty rays).
MIN_KP = 1e-6


def signed_distance_2d(mask: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Signed distance (mm) to a 2D mask's boundary: negative inside, positive outside."""
    mask = mask.astype(bool)
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing_mm)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing_mm)
    return (outside - inside).astype(np.float32)


def projection_mse(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of line integrals (mm^2)."""
    return torch.mean((predicted - target) ** 2)


def silhouette_bce(predicted: torch.Tensor, mask: torch.Tensor, k: float) -> torch.Tensor:
    """Mean binary cross-entropy of the soft silhouette ``s = 1 - exp(-k p)`` of line
    integrals ``p`` (mm) against a mask ``m`` in {0, 1}.

    With ``log(1 - s) = -k p`` the loss per ray is ``m * -log(1 - exp(-k p)) + (1 - m) k p``,
    evaluated with ``expm1`` and ``k p`` floored at :data:`MIN_KP` (an empty ray inside
    the mask costs ``-log(MIN_KP)`` ~ 13.8 instead of infinity). Its derivative in ``p`` is
    ``k (s - m) / s`` (see :func:`sdfcar.methods.voxel.silhouette_gradient`)."""
    kp = torch.clamp(k * predicted, min=MIN_KP)
    inside = -torch.log(-torch.expm1(-kp))
    return torch.mean(mask * inside + (1.0 - mask) * kp)


def boundary_sdf2d(predicted: torch.Tensor, target_sdf: torch.Tensor,
                   k: float = SILHOUETTE_K) -> torch.Tensor:
    """Differentiable 2D-SDF term: ``mean(soft_silhouette(p) * phi)`` (mm)."""
    return torch.mean(soft_silhouette(predicted, k) * target_sdf)


def thresholded_sdf2d(predicted: torch.Tensor, target_sdf: torch.Tensor,
                      shape: tuple[int, int], spacing_mm: tuple[float, float],
                      threshold: float = 0.5) -> torch.Tensor:
    """The seed's 2D-SDF MSE: distance transform of ``predicted > threshold`` against the
    target's. The threshold cuts the graph, so the value carries no gradient."""
    mask = (predicted.detach() > threshold).reshape(shape).cpu().numpy()
    distance = torch.as_tensor(signed_distance_2d(mask, spacing_mm), device=predicted.device)
    distance = torch.nan_to_num(distance, posinf=float(shape[0] * spacing_mm[0]))
    return torch.mean((distance.reshape(-1) - target_sdf.reshape(-1)) ** 2)


def eikonal(sdf: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
            step_mm: float) -> torch.Tensor:
    """Mean ``(|grad sdf| - 1)^2`` at ``points`` by central differences of ``step_mm``."""
    offsets = torch.eye(3, device=points.device, dtype=points.dtype) * step_mm
    shifted = torch.cat([points + offsets[axis] for axis in range(3)]
                        + [points - offsets[axis] for axis in range(3)])
    values = sdf(shifted).reshape(6, -1)
    gradient = (values[:3] - values[3:]) / (2.0 * step_mm)
    return torch.mean((gradient.norm(dim=0) - 1.0) ** 2)
