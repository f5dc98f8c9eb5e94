"""TIGRE backend: geometry conversion checked against an emulation of TIGRE's conventions.

The emulation tests run everywhere; the numerical comparison with TIGRE itself needs
``import tigre`` (a CUDA build) and is skipped otherwise.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from sdfcar.geometry import ViewGeometry, VolumeGrid
from sdfcar.physics.projector import ConeBeamProjector
from sdfcar.optional import importable
from sdfcar.physics.tigre_backend import (
    LPS_TO_TIGRE,
    TigreParams,
    TigreProjector,
    from_tigre_volume,
    tigre_available,
    tigre_geometry_for,
    tigre_source_and_pixels,
    tigre_voxel_centres,
    to_tigre_volume,
)

VIEWS = {
    "AP": ViewGeometry(0.0, 0.0, 1200.0, 800.0, (64, 48), (0.5, 0.6)),
    "LAO90": ViewGeometry(90.0, 0.0, 1200.0, 800.0, (40, 50), (0.4, 0.4)),
    "RAO30_CRA20": ViewGeometry(-30.0, 20.0, 1100.0, 750.0, (33, 45), (0.3, 0.35)),
    "seed1": ViewGeometry(29.7, 0.1, 993.0, 757.06, (512, 512), (0.278, 0.278)),
    "seed2": ViewGeometry(2.0, 29.0, 1055.0, 756.99, (512, 512), (0.278, 0.278)),
    "offset": ViewGeometry(-45.0, -25.0, 1000.0, 700.0, (30, 40), (0.5, 0.6), (3.2, -7.5)),
}
PERMUTED = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # i -> P, j -> inferior, k -> right
MIRRORED = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # improper: j runs anterior
GRIDS = {
    "identity": VolumeGrid((20, 24, 28), (0.8, 1.0, 1.2), (3.0, -5.0, 7.0)),
    "permuted": VolumeGrid((20, 24, 28), (0.8, 1.0, 1.2), (3.0, -5.0, 7.0), PERMUTED),
    "mirrored": VolumeGrid((20, 24, 28), (0.8, 1.0, 1.2), (3.0, -5.0, 7.0), MIRRORED),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_emulated_tigre_source_and_pixels_match_contract(name: str) -> None:
    view = VIEWS[name]
    source, pixels = tigre_source_and_pixels(tigre_geometry_for(view, GRIDS["identity"]))
    assert pixels.shape == view.detector_shape + (3,)
    np.testing.assert_allclose(source, view.source, rtol=0, atol=1e-6)
    np.testing.assert_allclose(pixels[::3, ::3], view.pixel_centers()[::3, ::3], rtol=0, atol=1e-6)


def test_ap_and_lao90_parameters() -> None:
    ap = tigre_geometry_for(VIEWS["AP"], GRIDS["identity"])
    np.testing.assert_allclose(ap.angles, 0.0, atol=1e-15)
    assert list(ap.nDetector) == [64, 48] and list(ap.dDetector) == [0.5, 0.6]
    lao = tigre_geometry_for(VIEWS["LAO90"], GRIDS["identity"])
    np.testing.assert_allclose(lao.angles, [-np.pi / 2, 0.0, 0.0], atol=1e-15)


def _tigre_pixel_of(params, point_lps: np.ndarray) -> np.ndarray:
    """(row, col) where the ray source -> point meets TIGRE's emulated detector plane."""
    source, pixels = tigre_source_and_pixels(params)
    origin = pixels[0, 0]
    along_u, along_v = pixels[0, 1] - origin, pixels[1, 0] - origin
    matrix = np.stack([point_lps - source, -along_u, -along_v], axis=1)
    _, col, row = np.linalg.solve(matrix, origin - source)
    return np.array([row, col])


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
@pytest.mark.parametrize("name", ["RAO30_CRA20", "seed2", "offset"])
def test_off_centre_voxel_projects_to_same_pixel(grid_name: str, name: str) -> None:
    grid, view = GRIDS[grid_name], VIEWS[name]
    params = tigre_geometry_for(view, grid)
    index = (3, 17, 22)
    volume = torch.zeros(grid.shape)
    volume[index] = 1.0
    image = to_tigre_volume(volume, params)
    assert tuple(image.shape) == tuple(int(n) for n in params.nVoxel)
    tigre_index = np.unravel_index(int(torch.argmax(image)), image.shape)
    ours = grid.origin_mm + grid.index_to_lps @ np.array(index, float)
    np.testing.assert_allclose(tigre_voxel_centres(params, tigre_index), ours, atol=1e-9)
    np.testing.assert_allclose(_tigre_pixel_of(params, ours), view.project_points(ours),
                               atol=1e-6)


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
def test_volume_mapping_round_trip(grid_name: str) -> None:
    params = tigre_geometry_for(VIEWS["AP"], GRIDS[grid_name])
    volume = torch.rand(GRIDS[grid_name].shape)
    assert torch.equal(from_tigre_volume(to_tigre_volume(volume, params), params), volume)


def test_oblique_grid_is_rejected() -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    oblique = VolumeGrid((8, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                         (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="torch backend"):
        tigre_geometry_for(VIEWS["AP"], oblique)


def test_a_self_calibrated_view_is_rejected() -> None:
    corrected = VIEWS["AP"].moved((0.0, 0.0, 1.0), (0.0, 0.0, 2.0))
    with pytest.raises(ValueError, match="torch backend"):
        tigre_geometry_for(corrected, VolumeGrid((8, 8, 8), (1.0, 1.0, 1.0)))


@pytest.mark.skipif(tigre_available(), reason="TIGRE is installed")
def test_projector_requires_tigre() -> None:
    with pytest.raises(RuntimeError, match="TIGRE is not available"):
        TigreProjector([VIEWS["AP"]], GRIDS["identity"])


def _fake_operator(geo: types.SimpleNamespace, angles: np.ndarray) -> ConeBeamProjector:
    """A torch projector placed purely by the emulated TIGRE conventions for ``geo``."""
    fields = {name: getattr(geo, name) for name in TigreParams.__dataclass_fields__
              if name not in ("angles", "volume_flip", "volume_order")}
    params = TigreParams(**fields, angles=angles[0].astype(float), volume_flip=(),
                         volume_order=(0, 1, 2))
    source, pixels = tigre_source_and_pixels(params)

    def ray_directions(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        rays = pixels[rows, cols] - source
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    view = types.SimpleNamespace(source=source, ray_directions=ray_directions,
                                 detector_shape=tuple(int(n) for n in geo.nDetector))
    centre = tigre_voxel_centres(params, (params.nVoxel - 1) / 2.0)
    direction = LPS_TO_TIGRE.T[:, [2, 1, 0]]  # image axes (z, y, x) in LPS
    grid = VolumeGrid(tuple(int(n) for n in geo.nVoxel), tuple(geo.dVoxel), tuple(centre),
                      tuple(direction.ravel()))
    return ConeBeamProjector([view], grid)


@pytest.fixture
def fake_tigre(monkeypatch: pytest.MonkeyPatch):
    """Install a stand-in ``tigre`` module (emulated conventions + torch projector)."""
    fake = types.ModuleType("tigre")
    fake.geometry = lambda mode: types.SimpleNamespace(mode=mode)
    fake.Ax = lambda img, geo, angles, kind: _fake_operator(geo, angles).project_view(
        torch.from_numpy(img), 0).numpy()[None]
    fake.Atb = lambda proj, geo, angles, kind: _fake_operator(geo, angles).backproject_view(
        torch.from_numpy(proj[0]), 0).numpy()
    monkeypatch.setitem(sys.modules, "tigre", fake)
    importable.cache_clear()
    yield
    importable.cache_clear()


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
def test_projector_plumbing_with_stand_in_tigre(fake_tigre, grid_name: str) -> None:
    grid = GRIDS[grid_name]
    views = [VIEWS["RAO30_CRA20"], VIEWS["offset"]]
    volume = torch.rand(grid.shape)
    reference = ConeBeamProjector(views, grid)
    projector = TigreProjector(views, grid)
    for got, want in zip(projector.project(volume), reference.project(volume)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    rays = torch.tensor([5, 77, 400, 401, 1000])
    torch.testing.assert_close(projector.project_view(volume, 1, rays),
                               reference.project_view(volume, 1, rays), rtol=1e-3, atol=1e-3)
    leaf = volume.clone().requires_grad_(True)
    projector.project_view(leaf, 1, rays).sum().backward()
    torch.testing.assert_close(leaf.grad, reference.backproject_view(torch.ones(5), 1, rays),
                               rtol=1e-3, atol=1e-3)


def test_tigre_matches_torch_projector() -> None:
    pytest.importorskip("tigre")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    grid = VolumeGrid((48, 40, 56), (1.0, 1.1, 0.9), (2.0, -3.0, 4.0))
    views = [ViewGeometry(29.7, 0.1, 993.0, 757.06, (96, 80), (1.2, 1.2)),
             ViewGeometry(2.0, 29.0, 1055.0, 756.99, (96, 80), (1.2, 1.2), (4.0, -3.0))]
    points = torch.as_tensor(grid.voxel_centers(), dtype=torch.float32)
    centre = torch.tensor([6.0, -5.0, 8.0])
    volume = torch.exp(-((points - centre) ** 2).sum(-1) / (2 * 6.0**2)).to(device)
    reference = ConeBeamProjector(views, grid, device)
    tigre_projector = TigreProjector(views, grid, device)
    for got, want in zip(tigre_projector.project(volume), reference.project(volume)):
        assert float((got - want).norm() / want.norm()) < 0.02

    rays = torch.arange(0, 96 * 80, 7, device=device)
    subset = tigre_projector.project_view(volume, 1, rays)
    assert torch.allclose(subset, tigre_projector.project_view(volume, 1).reshape(-1)[rays])

    leaf = volume.clone().requires_grad_(True)
    weights = reference.project_view(volume, 1)  # smooth: voxel- and ray-driven adjoints agree
    (tigre_projector.project_view(leaf, 1) * weights).sum().backward()
    matched = tigre_projector.backproject_view(weights, 1)
    assert torch.allclose(leaf.grad, matched)
    exact = reference.backproject_view(weights, 1)
    assert float((matched - exact).norm() / exact.norm()) < 0.15
