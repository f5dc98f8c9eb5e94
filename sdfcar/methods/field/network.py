"""The implicit field: hash-grid features -> MLP -> signed distance (mm) or occupancy logit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from sdfcar.geometry import VolumeGrid
from sdfcar.methods.field.encoding import IMPLEMENTATIONS, hash_grid

FIELD_MODES = ("hybrid", "occupancy")
ACTIVATIONS = ("leaky_relu", "relu", "softplus")


@dataclass(frozen=True)
class NetworkSettings:
    """Architecture of the field (see the preset files for the reference values)."""

    mode: str = "hybrid"
    levels: int = 16
    features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    finest_resolution: int = 2048
    hidden_layers: int = 8
    hidden_width: int = 256
    skip_layer: int = 4
    activation: str = "leaky_relu"
    output_gain: float = 0.1
    output_bias: float = 0.0
    implementation: str = "auto"

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "mode": FIELD_MODES, "activation": ACTIVATIONS, "implementation": IMPLEMENTATIONS}
    POSITIVE: ClassVar[tuple[str, ...]] = ("levels", "hidden_width", "features_per_level",
                                           "base_resolution", "finest_resolution")


class ImplicitField(nn.Module):
    """A field over the volume's bounding box.

    ``hybrid`` mode outputs a signed distance in mm (negative inside vessels) and its
    occupancy is ``sigmoid(-alpha * sdf)``; ``occupancy`` mode (NeCA) outputs a logit and its
    occupancy is ``sigmoid(logit)``.
    """

    def __init__(self, config: NetworkSettings, grid: VolumeGrid,
                 device: torch.device = torch.device("cpu")) -> None:
        super().__init__()
        self.config = config
        self.encoding = hash_grid(
            config.levels, config.features_per_level, config.log2_hashmap_size,
            config.base_resolution, config.finest_resolution, config.implementation, device)
        corners = grid.affine @ np.array(
            [[i, j, k, 1.0] for i in (-0.5, grid.shape[0] - 0.5) for j in (-0.5, grid.shape[1] - 0.5)
             for k in (-0.5, grid.shape[2] - 0.5)]).T
        low, high = corners[:3].min(axis=1), corners[:3].max(axis=1)
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("extent", torch.tensor(high - low, dtype=torch.float32),
                             persistent=False)
        self.layers = nn.ModuleList()
        width_in = self.encoding.output_dim
        for index in range(config.hidden_layers):
            extra = self.encoding.output_dim if index == config.skip_layer and index > 0 else 0
            self.layers.append(nn.Linear(width_in + extra, config.hidden_width))
            width_in = config.hidden_width
        self.output = nn.Linear(width_in, 1)
        nn.init.xavier_uniform_(self.output.weight, gain=config.output_gain)
        nn.init.constant_(self.output.bias, config.output_bias)
        self.activation = (nn.LeakyReLU(0.01) if config.activation == "leaky_relu"
                           else nn.ReLU() if config.activation == "relu" else nn.Softplus(100))

    def normalise(self, points_mm: torch.Tensor) -> torch.Tensor:
        """LPS mm -> the encoding's unit cube."""
        return (points_mm - self.low) / self.extent

    def forward(self, points_mm: torch.Tensor) -> torch.Tensor:
        """Raw output per point: signed distance in mm (hybrid) or logit (occupancy)."""
        encoded = self.encoding(self.normalise(points_mm))
        hidden = encoded
        for index, layer in enumerate(self.layers):
            if index == self.config.skip_layer and index > 0:
                hidden = torch.cat([hidden, encoded], dim=-1)
            hidden = self.activation(layer(hidden))
        return self.output(hidden).squeeze(-1)

    def occupancy(self, raw: torch.Tensor, alpha: float) -> torch.Tensor:
        """Occupancy in [0, 1] from the raw output."""
        if self.config.mode == "hybrid":
            return torch.sigmoid(-alpha * raw)
        return torch.sigmoid(raw)
