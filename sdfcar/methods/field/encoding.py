"""Multi-resolution hash-grid encoding (instant-NGP), implementation chosen once.

:class:`HashGridEncoding` is the pure-PyTorch reference and what CI tests: levels whose
vertex grid fits in the table are stored densely and interpolated with ``grid_sample`` (one
fused kernel per level), finer levels use a spatial hash and an explicit trilinear gather.
:class:`TcnnHashGridEncoding` is tiny-cuda-nn's fused HashGrid with the same configuration.
:func:`hash_grid` picks one when the field is built: ``auto`` takes tiny-cuda-nn on a CUDA
device when ``tinycudann`` imports, PyTorch otherwise; ``tcnn`` without it is an error.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sdfcar.errors import bad_input
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
                 finest_resolution: int = 2048, init_scale: float = 1e-4) -> None:
        super().__init__()
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

    @property
    def output_dim(self) -> int:
        """Number of features per point."""
        return self.levels * self.features_per_level

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Encode ``(N, 3)`` points in ``[0, 1]^3`` (clamped)."""
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


class TcnnHashGridEncoding(nn.Module):
    """tiny-cuda-nn's fused HashGrid with :class:`HashGridEncoding`'s configuration (CUDA
    only; not exercised where tinycudann is unavailable)."""

    def __init__(self, levels: int = 16, features_per_level: int = 2,
                 log2_hashmap_size: int = 19, base_resolution: int = 16,
                 finest_resolution: int = 2048) -> None:
        super().__init__()
        import tinycudann as tcnn

        self.levels, self.features_per_level = levels, features_per_level
        scale, _ = level_resolutions(levels, base_resolution, finest_resolution)
        self.grid = tcnn.Encoding(3, {
            "otype": "HashGrid", "n_levels": levels, "n_features_per_level": features_per_level,
            "log2_hashmap_size": log2_hashmap_size, "base_resolution": base_resolution,
            "per_level_scale": scale})

    @property
    def output_dim(self) -> int:
        """Number of features per point."""
        return self.levels * self.features_per_level

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Encode ``(N, 3)`` CUDA points in ``[0, 1]^3``."""
        return self.grid(points.clamp(0.0, 1.0)).to(points.dtype)


def hash_grid(levels: int, features_per_level: int, log2_hashmap_size: int,
              base_resolution: int, finest_resolution: int, implementation: str,
              device: torch.device) -> nn.Module:
    """The encoding for ``device``: see the module docstring for how ``implementation``
    (one of :data:`IMPLEMENTATIONS`) is resolved."""
    if implementation == "tcnn" and not tcnn_available():
        raise bad_input("field.network.implementation", "tcnn needs tinycudann, which does not "
                                                        "import here (use auto or torch)")
    if implementation == "tcnn" and device.type != "cuda":
        raise bad_input("field.network.implementation", f"tcnn runs on CUDA only, not {device}")
    use_tcnn = implementation == "tcnn" or (implementation == "auto" and device.type == "cuda"
                                            and tcnn_available())
    kind = TcnnHashGridEncoding if use_tcnn else HashGridEncoding
    return kind(levels, features_per_level, log2_hashmap_size, base_resolution,
                finest_resolution)
