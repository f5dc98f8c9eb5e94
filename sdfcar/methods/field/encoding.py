"""Multi-resolution hash-grid encoding (instant-NGP) with a ``torch`` / ``tcnn`` switch.

The pure-PyTorch implementation is the reference and what CI tests: levels whose vertex
grid fits in the table are stored densely and interpolated with ``grid_sample`` (one fused
kernel per level), finer levels use a spatial hash and an explicit trilinear gather. When
``tinycudann`` imports and the input lives on a CUDA device, ``implementation="auto"``
uses tiny-cuda-nn's fused HashGrid with the same configuration.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sdfcar.optional import tcnn_available

# Large primes of the spatial hash (Teschner et al. 2003, as used by instant-NGP).
_PRIMES = (1, 2654435761, 805459861)
_CORNERS = [[(corner >> axis) & 1 for axis in range(3)] for corner in range(8)]
IMPLEMENTATIONS = ("auto", "torch", "tcnn")


def level_resolutions(levels: int, base_resolution: int, finest_resolution: int
                      ) -> tuple[float, list[int]]:
    """Per-level growth factor and grid resolutions from base to finest."""
    scale = (math.exp((math.log(finest_resolution) - math.log(base_resolution)) / (levels - 1))
             if levels > 1 else 1.0)
    return scale, [int(base_resolution * scale**level) for level in range(levels)]


class HashGridEncoding(nn.Module):
    """Features of points in ``[0, 1]^3`` from ``levels`` grids of growing resolution.

    Level ``l`` has resolution ``floor(base_resolution * scale**l)`` with ``scale`` chosen so
    the last level reaches ``finest_resolution``; it stores ``features_per_level`` values per
    vertex, densely when ``(resolution + 1)^3 <= 2**log2_hashmap_size`` and in a hashed
    table of that size otherwise, interpolated trilinearly. Output:
    ``(N, levels * features_per_level)``.
    """

    def __init__(self, levels: int = 16, features_per_level: int = 2,
                 log2_hashmap_size: int = 19, base_resolution: int = 16,
                 finest_resolution: int = 2048, implementation: str = "auto",
                 init_scale: float = 1e-4) -> None:
        super().__init__()
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation: expected one of {IMPLEMENTATIONS}, "
                             f"got {implementation!r}")
        if implementation == "tcnn" and not tcnn_available():
            raise RuntimeError("implementation='tcnn' but tinycudann is not importable")
        self.levels = levels
        self.features_per_level = features_per_level
        self.table_size = 2**log2_hashmap_size
        self.per_level_scale, self.resolutions = level_resolutions(
            levels, base_resolution, finest_resolution)
        self.dense = nn.ParameterList()
        self.hashed = nn.ParameterList()
        for resolution in self.resolutions:
            side = resolution + 1
            if side**3 <= self.table_size:
                shape = (1, features_per_level, side, side, side)
                self.dense.append(nn.Parameter(torch.empty(shape).uniform_(-init_scale, init_scale)))
            else:
                shape = (self.table_size, features_per_level)
                self.hashed.append(nn.Parameter(torch.empty(shape).uniform_(-init_scale, init_scale)))
        self._tcnn = None
        if implementation != "torch" and tcnn_available():
            self._tcnn = self._build_tcnn(base_resolution, log2_hashmap_size)

    @property
    def output_dim(self) -> int:
        """Number of features per point."""
        return self.levels * self.features_per_level

    def _build_tcnn(self, base_resolution: int, log2_hashmap_size: int) -> nn.Module:
        import tinycudann as tcnn

        return tcnn.Encoding(3, {
            "otype": "HashGrid", "n_levels": self.levels,
            "n_features_per_level": self.features_per_level,
            "log2_hashmap_size": log2_hashmap_size, "base_resolution": base_resolution,
            "per_level_scale": self.per_level_scale,
        })

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Encode ``(N, 3)`` points in ``[0, 1]^3`` (clamped)."""
        if self._tcnn is not None and points.is_cuda:
            return self._tcnn(points).to(points.dtype)
        points = points.clamp(0.0, 1.0)
        features = [self._dense_level(grid, points) for grid in self.dense]
        hashed_resolutions = self.resolutions[len(self.dense):]
        features += [self._hashed_level(table, points, resolution)
                     for table, resolution in zip(self.hashed, hashed_resolutions)]
        return torch.cat(features, dim=-1)

    @staticmethod
    def _dense_level(grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        # grid_sample's (x, y, z) index (W, H, D); vertex (c0, c1, c2) is grid[..., c2, c1, c0].
        sample_at = (2.0 * points - 1.0).reshape(1, -1, 1, 1, 3)
        sampled = F.grid_sample(grid, sample_at, mode="bilinear", align_corners=True)
        return sampled.reshape(grid.shape[1], -1).t()

    def _hashed_level(self, table: torch.Tensor, points: torch.Tensor, resolution: int
                      ) -> torch.Tensor:
        scaled = points * resolution
        base = scaled.floor().clamp(max=resolution - 1)
        fraction = scaled - base
        base = base.long()
        result = 0.0
        for corner in _CORNERS:
            vertex = base + torch.tensor(corner, device=points.device)
            index = ((vertex[:, 0] * _PRIMES[0]) ^ (vertex[:, 1] * _PRIMES[1])
                     ^ (vertex[:, 2] * _PRIMES[2])) % self.table_size
            weight = torch.ones_like(fraction[:, 0])
            for axis, bit in enumerate(corner):
                weight = weight * (fraction[:, axis] if bit else 1.0 - fraction[:, axis])
            result = result + table[index] * weight[:, None]
        return result
