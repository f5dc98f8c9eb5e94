"""Differentiable cone-beam projector (pure PyTorch, CPU or CUDA).

Line integrals in millimetres are computed with Joseph's method: every ray is sampled where
it crosses the voxel planes of its dominant axis, the volume is interpolated bilinearly in
each plane, and each sample is weighted by the ray length between two planes. Planes are
batched through :func:`torch.nn.functional.grid_sample`, so the forward pass is one fused
kernel per chunk of rays, and the backward pass is its exact adjoint (the same bilinear
weights scattered back), which makes ``<A x, y> = <x, A^T y>`` hold to rounding.

Work is chunked over rays so memory stays bounded, and every call accepts an optional
subset of detector pixels (``rays``), which is the hook for fast paths that only trace the
rays that can see a vessel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import fail
from .geometry import ViewGeometry, VolumeGrid

DEFAULT_SAMPLES_PER_CHUNK = 1 << 22


@dataclass
class ViewRays:
    """Rays of one view expressed in the volume's continuous index coordinates."""

    source: torch.Tensor  # (3,) source position in index units
    directions: torch.Tensor  # (P, 3) index-space displacement per mm along each ray
    axis: torch.Tensor  # (P,) dominant index axis of each ray
    step_mm: torch.Tensor  # (P,) ray length between two planes of the dominant axis
    shape: tuple[int, int]  # detector (rows, cols)

    @classmethod
    def build(cls, view: ViewGeometry, grid: VolumeGrid, device: torch.device) -> ViewRays:
        """Trace every pixel centre of ``view`` back to its source, in ``grid`` indices."""
        to_index = np.linalg.inv(grid.index_to_lps)
        pixels = view.pixel_centers().reshape(-1, 3)
        unit = pixels - view.source
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        directions = unit @ to_index.T
        axis = np.argmax(np.abs(directions), axis=1)
        step = 1.0 / np.abs(directions[np.arange(len(axis)), axis])
        source = grid.lps_to_index(view.source)
        as_tensor = lambda a, dtype=torch.float32: torch.as_tensor(a, dtype=dtype, device=device)
        return cls(as_tensor(source), as_tensor(directions), as_tensor(axis, torch.int64),
                   as_tensor(step), view.detector_shape)

    @property
    def num_rays(self) -> int:
        """Number of detector pixels."""
        return self.shape[0] * self.shape[1]


class ConeBeamProjector:
    """Line integrals of a voxel volume along the cone-beam rays of each view.

    ``project(volume)`` returns one ``(rows, cols)`` image per view, differentiable with
    respect to ``volume`` (shape ``grid.shape``, float32, on ``device``). Values are in mm
    of traversed occupancy: a unit sphere of radius r gives 2r through its centre.
    """

    def __init__(
        self,
        views: Sequence[ViewGeometry],
        grid: VolumeGrid,
        device: str | torch.device = "cpu",
        samples_per_chunk: int = DEFAULT_SAMPLES_PER_CHUNK,
    ) -> None:
        self.views = tuple(views)
        self.grid = grid
        self.device = torch.device(device)
        self.samples_per_chunk = int(samples_per_chunk)
        self.rays = [ViewRays.build(view, grid, self.device) for view in self.views]

    # -- public API -------------------------------------------------------------------------

    def project(self, volume: torch.Tensor) -> list[torch.Tensor]:
        """Project ``volume`` into every view; one ``(rows, cols)`` tensor per view."""
        return [self.project_view(volume, index) for index in range(len(self.views))]

    def project_view(self, volume: torch.Tensor, view: int, rays: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Line integrals of one view: ``(rows, cols)``, or ``(len(rays),)`` for a subset of
        flat pixel indices ``rays``. Differentiable with respect to ``volume``."""
        self._check_volume(volume)
        values = _ProjectFunction.apply(volume, self, view, rays)
        return values.reshape(self.rays[view].shape) if rays is None else values

    def backproject_view(self, values: torch.Tensor, view: int,
                         rays: torch.Tensor | None = None) -> torch.Tensor:
        """Adjoint ``A^T y`` of :meth:`project_view`: spread ray values back into a volume."""
        values = values.to(self.device, torch.float32).reshape(-1)
        return self._adjoint(values, view, rays)

    # -- internals --------------------------------------------------------------------------

    def _check_volume(self, volume: torch.Tensor) -> None:
        if tuple(volume.shape) != self.grid.shape:
            raise ValueError(f"volume shape {tuple(volume.shape)} != grid shape {self.grid.shape}")

    def _chunks(self, view: int, rays: torch.Tensor | None):
        """Yield ``(axis, positions, ray_ids, planes_grid, step)`` per chunk of rays.

        ``positions`` index the output vector; ``planes_grid`` is the normalised
        ``grid_sample`` grid of shape ``(planes, chunk, 1, 2)``.
        """
        traced = self.rays[view]
        ids = (torch.arange(traced.num_rays, device=self.device) if rays is None
               else rays.to(self.device, torch.int64).reshape(-1))
        axes = traced.axis[ids]
        for axis in range(3):
            positions = torch.nonzero(axes == axis).reshape(-1)
            if positions.numel() == 0:
                continue
            planes = self.grid.shape[axis]
            others = [a for a in range(3) if a != axis]
            chunk = max(1, self.samples_per_chunk // planes)
            plane_index = torch.arange(planes, device=self.device, dtype=torch.float32)
            for start in range(0, positions.numel(), chunk):
                pos = positions[start:start + chunk]
                ray_ids = ids[pos]
                direction = traced.directions[ray_ids]
                t = (plane_index[:, None] - traced.source[axis]) / direction[None, :, axis]
                coords = [traced.source[a] + t * direction[None, :, a] for a in others]
                # grid_sample wants (x, y) = (last axis, first axis) normalised to [-1, 1].
                normalised = [2.0 * c / (self.grid.shape[a] - 1) - 1.0
                              for c, a in zip(coords, others)]
                planes_grid = torch.stack([normalised[1], normalised[0]], dim=-1).unsqueeze(2)
                yield axis, pos, ray_ids, planes_grid, traced.step_mm[ray_ids]

    def _forward(self, volume: torch.Tensor, view: int, rays: torch.Tensor | None
                 ) -> torch.Tensor:
        count = self.rays[view].num_rays if rays is None else rays.numel()
        out = torch.zeros(count, device=self.device, dtype=torch.float32)
        volume = volume.to(torch.float32)
        stacks = {}
        for axis, pos, _, planes_grid, step in self._chunks(view, rays):
            if axis not in stacks:
                stacks[axis] = volume.movedim(axis, 0).unsqueeze(1)
            sampled = F.grid_sample(stacks[axis], planes_grid, mode="bilinear",
                                    padding_mode="zeros", align_corners=True)
            out[pos] = sampled.sum(dim=0).reshape(-1) * step
        return out

    def _adjoint(self, values: torch.Tensor, view: int, rays: torch.Tensor | None
                 ) -> torch.Tensor:
        result = torch.zeros(self.grid.shape, device=self.device, dtype=torch.float32)
        for axis, pos, _, planes_grid, step in self._chunks(view, rays):
            stack = result.movedim(axis, 0).unsqueeze(1)
            weights = (values[pos] * step).reshape(1, 1, -1, 1)
            grad_output = weights.expand(planes_grid.shape[0], 1, -1, 1).contiguous()
            grad_stack, _ = torch.ops.aten.grid_sampler_2d_backward(
                grad_output, stack, planes_grid, 0, 0, True, [True, False]
            )
            stack += grad_stack
        return result


class _ProjectFunction(torch.autograd.Function):
    """Autograd wrapper: chunked forward, chunked exact adjoint as backward."""

    @staticmethod
    def forward(ctx, volume, projector, view, rays):  # noqa: D102
        ctx.projector, ctx.view, ctx.rays = projector, view, rays
        return projector._forward(volume.detach(), view, rays)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        grad = ctx.projector._adjoint(grad_output.reshape(-1).to(torch.float32), ctx.view,
                                      ctx.rays)
        return grad, None, None, None


def silhouette(integral: torch.Tensor, k: float = 4.0) -> torch.Tensor:
    """Soft silhouette ``1 - exp(-k * integral)`` for binary-mask targets (k in 1/mm)."""
    return 1.0 - torch.exp(-k * integral)


PROJECTOR_BACKENDS = ("auto", "torch", "tigre")


def make_projector(views: Sequence[ViewGeometry], grid: VolumeGrid,
                   device: str | torch.device = "cpu", backend: str = "auto"):
    """A projector with the :class:`ConeBeamProjector` interface.

    ``torch`` is this module's projector; ``tigre`` is the optional TIGRE (CUDA) backend;
    ``auto`` uses TIGRE on a CUDA device when ``import tigre`` works, else torch.
    """
    from .tigre_backend import TigreProjector, tigre_available

    if backend not in PROJECTOR_BACKENDS:
        raise fail("backend", f"expected one of {', '.join(PROJECTOR_BACKENDS)}, got {backend!r}")
    if backend == "tigre" and not tigre_available():
        raise fail("backend", "TIGRE was requested but `import tigre` fails (it is optional)")
    use_tigre = backend == "tigre" or (
        backend == "auto" and torch.device(device).type == "cuda" and tigre_available())
    if use_tigre:
        return TigreProjector(views, grid, device=device)
    return ConeBeamProjector(views, grid, device=device)
