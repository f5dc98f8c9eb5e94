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

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sdfcar.errors import bad_input
from sdfcar.geometry import ViewGeometry, VolumeGrid

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
        rows, cols = np.indices(view.detector_shape)
        directions = view.ray_directions(rows.ravel(), cols.ravel()) @ to_index.T
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

    def system_matrix(self, view: int, rays: torch.Tensor, columns: torch.Tensor
                      ) -> SparseSystemMatrix:
        """Rows of the projection matrix for the flat pixel indices ``rays``, restricted to
        voxels with ``columns >= 0`` (``columns``: int64 of ``grid.shape`` numbering the kept
        voxels). ``matrix @ volume[kept]`` equals :meth:`project_view` for any volume that is
        zero outside the kept voxels."""
        columns = columns.to(self.device).reshape(-1)
        row_parts, col_parts, value_parts = [], [], []
        strides = torch.tensor([self.grid.shape[1] * self.grid.shape[2], self.grid.shape[2], 1],
                               device=self.device)
        for axis, pos, in_plane, step in self._chunks(view, rays):
            others = [a for a in range(3) if a != axis]
            low = in_plane.floor()
            fraction = in_plane - low
            low = low.long()
            plane = torch.arange(in_plane.shape[1], device=self.device)[:, None]
            for corner_b in (0, 1):
                for corner_c in (0, 1):
                    b, c = low[0] + corner_b, low[1] + corner_c
                    weight = ((fraction[0] if corner_b else 1 - fraction[0])
                              * (fraction[1] if corner_c else 1 - fraction[1]) * step[None, :])
                    inside = ((b >= 0) & (b < self.grid.shape[others[0]]) & (c >= 0)
                              & (c < self.grid.shape[others[1]]) & (weight > 0))
                    flat = (plane * strides[axis] + b.clamp(min=0) * strides[others[0]]
                            + c.clamp(min=0) * strides[others[1]])
                    column = torch.where(inside, columns[flat.clamp(max=columns.numel() - 1)], -1)
                    keep = column >= 0
                    row_parts.append(pos.expand_as(column)[keep])
                    col_parts.append(column[keep])
                    value_parts.append(weight[keep])
        num_columns = int(columns.max().item()) + 1 if columns.numel() else 0
        indices = torch.stack([torch.cat(row_parts), torch.cat(col_parts)])
        coo = torch.sparse_coo_tensor(indices, torch.cat(value_parts), (rays.numel(), num_columns),
                                      check_invariants=False).coalesce()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return SparseSystemMatrix(coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr())

    # -- internals --------------------------------------------------------------------------

    def _check_volume(self, volume: torch.Tensor) -> None:
        if tuple(volume.shape) != self.grid.shape:
            raise ValueError(f"volume shape {tuple(volume.shape)} != grid shape {self.grid.shape}")

    def _chunks(self, view: int, rays: torch.Tensor | None):
        """Yield ``(axis, positions, in_plane, step)`` per chunk of rays with one dominant axis.

        ``positions`` index the output vector; ``in_plane`` holds the continuous indices of
        the two other axes (in increasing axis order) where each ray crosses each plane,
        shape ``(2, planes, chunk)``; ``step`` is the ray length between planes (mm).
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
                in_plane = torch.stack([traced.source[a] + t * direction[None, :, a]
                                        for a in others])
                yield axis, pos, in_plane, traced.step_mm[ray_ids]

    def _sampling_grid(self, axis: int, in_plane: torch.Tensor) -> torch.Tensor:
        """``grid_sample`` grid ``(planes, chunk, 1, 2)``: (x, y) = (last, first) other axis,
        normalised to [-1, 1] with ``align_corners=True``."""
        first, last = (self.grid.shape[a] - 1 for a in range(3) if a != axis)
        return torch.stack([2.0 * in_plane[1] / last - 1.0, 2.0 * in_plane[0] / first - 1.0],
                           dim=-1).unsqueeze(2)

    def _forward(self, volume: torch.Tensor, view: int, rays: torch.Tensor | None
                 ) -> torch.Tensor:
        count = self.rays[view].num_rays if rays is None else rays.numel()
        out = torch.zeros(count, device=self.device, dtype=torch.float32)
        volume = volume.to(torch.float32)
        stacks = {}
        for axis, pos, in_plane, step in self._chunks(view, rays):
            if axis not in stacks:
                stacks[axis] = volume.movedim(axis, 0).unsqueeze(1)
            sampled = F.grid_sample(stacks[axis], self._sampling_grid(axis, in_plane),
                                    mode="bilinear",
                                    padding_mode="zeros", align_corners=True)
            out[pos] = sampled.sum(dim=0).reshape(-1) * step
        return out

    def _adjoint(self, values: torch.Tensor, view: int, rays: torch.Tensor | None
                 ) -> torch.Tensor:
        result = torch.zeros(self.grid.shape, device=self.device, dtype=torch.float32)
        for axis, pos, in_plane, step in self._chunks(view, rays):
            planes_grid = self._sampling_grid(axis, in_plane)
            stack = result.movedim(axis, 0).unsqueeze(1)
            weights = (values[pos] * step).reshape(1, 1, -1, 1)
            grad_output = weights.expand(planes_grid.shape[0], 1, -1, 1).contiguous()
            grad_stack, _ = torch.ops.aten.grid_sampler_2d_backward(
                grad_output, stack, planes_grid, 0, 0, True, [True, False]
            )
            stack += grad_stack
        return result


@dataclass
class SparseSystemMatrix:
    """A view's projection restricted to some rays and voxels, with its transpose (CSR)."""

    matrix: torch.Tensor
    transpose: torch.Tensor

    @property
    def nnz(self) -> int:
        """Number of stored weights."""
        return int(self.matrix.values().numel())

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """Line integrals of the kept rays for per-voxel ``values``; differentiable."""
        return _SparseProjectFunction.apply(values, self)


class _SparseProjectFunction(torch.autograd.Function):
    """``A x`` with ``A^T g`` as backward, both as CSR matrix-vector products."""

    @staticmethod
    def forward(ctx, values, system):  # noqa: D102
        ctx.system = system
        return (system.matrix @ values.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        return (ctx.system.transpose @ grad_output.unsqueeze(-1)).squeeze(-1), None


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


def soft_silhouette(integral: torch.Tensor, k: float = 4.0) -> torch.Tensor:
    """Soft silhouette ``1 - exp(-k * integral)`` for binary-mask targets (k in 1/mm)."""
    return 1.0 - torch.exp(-k * integral)


PROJECTOR_BACKENDS = ("auto", "torch", "tigre")


def make_projector(views: Sequence[ViewGeometry], grid: VolumeGrid,
                   device: str | torch.device = "cpu", backend: str = "auto"):
    """A projector with the :class:`ConeBeamProjector` interface.

    ``torch`` is this module's projector; ``tigre`` is the optional TIGRE (CUDA) backend;
    ``auto`` uses TIGRE on a CUDA device when ``import tigre`` works, else torch.
    """
    from sdfcar.physics.tigre_backend import TigreProjector, tigre_available

    if backend not in PROJECTOR_BACKENDS:
        raise bad_input("backend",
                        f"expected one of {', '.join(PROJECTOR_BACKENDS)}, got {backend!r}")
    if backend == "tigre" and not tigre_available():
        raise bad_input("backend", "TIGRE was requested but `import tigre` fails (it is optional)")
    use_tigre = backend == "tigre" or (
        backend == "auto" and torch.device(device).type == "cuda" and tigre_available())
    if use_tigre:
        return TigreProjector(views, grid, device=device)
    return ConeBeamProjector(views, grid, device=device)
