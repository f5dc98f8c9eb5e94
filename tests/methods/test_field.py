"""The neural-field method's parts: 2D-SDF and eikonal losses, hash-grid encoding, field modes."""


import numpy as np
import pytest
import torch

from sdfcar.methods.field import HashGridEncoding, ImplicitField
from sdfcar.methods.field.network import NetworkSettings
from sdfcar.methods.losses import boundary_sdf2d, eikonal, signed_distance_2d, thresholded_sdf2d

from conftest import SMALL_GRID as GRID


def test_boundary_sdf2d_passes_gradient_and_thresholded_does_not():
    mask = np.zeros((20, 20), bool)
    mask[8:12, 5:15] = True
    phi = torch.as_tensor(signed_distance_2d(mask, (0.5, 0.5))).reshape(-1)
    predicted = torch.full((400,), 0.3, requires_grad=True)
    boundary_sdf2d(predicted, phi).backward()
    grad = predicted.grad.reshape(20, 20)
    # More projected vessel outside the silhouette costs, inside it pays.
    assert torch.all(grad[0:4] > 0) and torch.all(grad[9:11, 6:14] < 0)
    predicted.grad = None
    value = thresholded_sdf2d(predicted, phi, (20, 20), (0.5, 0.5), threshold=0.2)
    assert value.item() > 0 and not value.requires_grad


def test_eikonal_is_zero_for_a_true_distance_field():
    points = torch.randn(256, 3) * 5 + 20.0
    distance = lambda p: (p - torch.tensor([1.0, 2.0, 3.0])).norm(dim=-1) - 2.0
    assert eikonal(distance, points, 0.1).item() < 1e-4
    assert eikonal(lambda p: 2 * distance(p), points, 0.1).item() == pytest.approx(1.0, rel=1e-3)


def test_hash_grid_dense_and_hashed_levels_interpolate_and_train():
    encoding = HashGridEncoding(levels=4, features_per_level=2, log2_hashmap_size=12,
                                base_resolution=4, finest_resolution=32)
    assert len(encoding.dense) == 2 and len(encoding.hashed) == 2  # 5^3, 9^3 fit in 4096
    points = torch.rand(500, 3)
    features = encoding(points)
    assert features.shape == (500, 8)
    # Continuity: nearby points give nearby features.
    assert (encoding(points + 1e-4) - features).abs().max() < 1e-3
    target = torch.sin(points.sum(dim=1) * 4)
    head = torch.nn.Linear(8, 1)
    optimiser = torch.optim.Adam(list(encoding.parameters()) + list(head.parameters()), 1e-2)
    for _ in range(200):
        loss = ((head(encoding(points)).squeeze(-1) - target) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.05


def test_field_modes_give_occupancy_in_unit_interval():
    for mode in ("hybrid", "occupancy"):
        config = NetworkSettings(mode=mode, levels=4, log2_hashmap_size=12, finest_resolution=32,
                             hidden_layers=2, hidden_width=16, skip_layer=1)
        field = ImplicitField(config, GRID)
        raw = field(torch.randn(100, 3) * 10)
        occupancy = field.occupancy(raw, 4.0)
        assert occupancy.shape == (100,) and torch.all((occupancy >= 0) & (occupancy <= 1))
