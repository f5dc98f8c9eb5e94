"""Projector: analytic chords, adjoint identity, gradients, ray subsets and chunking."""

import numpy as np
import pytest
import torch

from sdfcar.geometry import ViewGeometry, VolumeGrid
from sdfcar.physics.projector import ConeBeamProjector, soft_silhouette

GRID = VolumeGrid()  # 128^3 at 0.8 mm on the isocenter, as the acceptance asks
VIEWS = {
    "AP": ViewGeometry(0, 0, 1000, 750, (96, 96), (1.2, 1.2)),
    "LAO90": ViewGeometry(90, 0, 1000, 750, (96, 96), (1.2, 1.2)),
    "CRA30": ViewGeometry(0, 30, 1100, 800, (96, 96), (1.2, 1.2)),
    "seed1": ViewGeometry(29.7, 0.1, 993, 757.06, (96, 96), (1.2, 1.2)),
    "RAO40CAU25": ViewGeometry(-40, -25, 1050, 760, (96, 96), (1.2, 1.2), (4.0, -3.0)),
}


def partial_volume(signed_distance: np.ndarray, voxel: float) -> torch.Tensor:
    """Occupancy from a signed distance with a one-voxel linear ramp (partial volume)."""
    return torch.as_tensor(np.clip(0.5 - signed_distance / voxel, 0.0, 1.0), dtype=torch.float32)


def rays_through(view: ViewGeometry, pixel_rc: tuple[int, int]):
    """Source and unit direction of the ray through a pixel centre."""
    pixel = view.pixel_centers()[pixel_rc]
    direction = pixel - view.source
    return view.source, direction / np.linalg.norm(direction)


def distance_to_line(point, origin, direction):
    offset = point - origin
    return np.linalg.norm(offset - (offset @ direction) * direction)


@pytest.fixture(scope="module")
def centres():
    return GRID.voxel_centers()


@pytest.mark.parametrize("name", list(VIEWS))
@pytest.mark.parametrize("offset_fraction", [0.0, 0.6])
def test_sphere_chord_matches_analytic(name, offset_fraction, centres):
    view, radius = VIEWS[name], 15.0
    centre = np.array([6.0, -9.0, 11.0])
    volume = partial_volume(np.linalg.norm(centres - centre, axis=-1) - radius, 0.8)
    projector = ConeBeamProjector([view], GRID)
    row, col = np.round(view.project_points(centre)).astype(int)
    # Move off the centre ray along the columns until the ray is offset_fraction * r away.
    magnification = view.source_to_detector_mm / np.linalg.norm(view.source - centre)
    col += int(round(offset_fraction * radius * magnification / view.detector_spacing_mm[1]))
    pixel = row * view.detector_shape[1] + col
    value = projector.project_view(volume, 0, torch.tensor([pixel])).item()
    d = distance_to_line(centre, *rays_through(view, (row, col)))
    expected = 2.0 * np.sqrt(radius**2 - d**2)
    assert value == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("name", ["AP", "LAO90", "CRA30"])
@pytest.mark.parametrize("shift_px", [0, 3])
def test_cylinder_chord_matches_analytic(name, shift_px, centres):
    view, radius = VIEWS[name], 6.0
    axis_point, axis = np.array([2.0, 5.0, -4.0]), np.array([1.0, 1.0, 1.0]) / np.sqrt(3.0)
    offset = centres - axis_point
    radial = np.linalg.norm(offset - (offset @ axis)[..., None] * axis, axis=-1)
    volume = partial_volume(radial - radius, 0.8)
    projector = ConeBeamProjector([view], GRID)
    row, col = np.round(view.project_points(axis_point)).astype(int)
    # Off-centre rays: step along the detector row, away from the projected axis.
    col += shift_px
    origin, direction = rays_through(view, (row, col))
    # Distance between the ray and the axis, and the chord through an infinite cylinder.
    normal = np.cross(direction, axis)
    d = abs((axis_point - origin) @ normal) / np.linalg.norm(normal)
    sin_angle = np.linalg.norm(normal)
    expected = 2.0 * np.sqrt(radius**2 - d**2) / sin_angle
    value = projector.project_view(volume, 0)[row, col].item()
    assert value == pytest.approx(expected, rel=0.02)


def test_adjoint_identity():
    grid = VolumeGrid((20, 24, 28), (1.0, 0.9, 1.1), (1.0, -2.0, 0.5))
    views = [ViewGeometry(35, -20, 1000, 700, (30, 34), (0.9, 1.1), (2.0, -1.0)),
             ViewGeometry(-80, 45, 900, 650, (28, 26), (1.0, 1.0))]
    projector = ConeBeamProjector(views, grid)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(grid.shape, generator=generator)
    for index, view in enumerate(views):
        y = torch.rand(view.detector_shape, generator=generator)
        forward = (projector.project_view(x, index) * y).sum().double()
        adjoint = (x * projector.backproject_view(y, index)).sum().double()
        assert forward.item() == pytest.approx(adjoint.item(), rel=1e-4)
        assert forward.item() > 0


def test_gradient_matches_finite_differences_and_adjoint():
    grid = VolumeGrid((16, 16, 16), (1.5, 1.5, 1.5))
    views = [ViewGeometry(20, 10, 1000, 750, (24, 24), (1.5, 1.5)),
             ViewGeometry(-60, -15, 1000, 750, (24, 24), (1.5, 1.5))]
    projector = ConeBeamProjector(views, grid)
    generator = torch.Generator().manual_seed(1)
    targets = [torch.rand(v.detector_shape, generator=generator) * 5 for v in views]

    def loss(volume):
        return sum(((p - t) ** 2).mean() for p, t in zip(projector.project(volume), targets))

    x = torch.rand(grid.shape, generator=generator, requires_grad=True)
    loss(x).backward()
    direction = torch.randn(grid.shape, generator=generator)
    eps = 1e-2
    with torch.no_grad():
        numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    assert (x.grad * direction).sum().item() == pytest.approx(numeric.item(), rel=2e-3)
    # For a linear loss <A x, y> the gradient is exactly A^T y.
    x.grad = None
    (projector.project_view(x, 0) * targets[0]).sum().backward()
    torch.testing.assert_close(x.grad, projector.backproject_view(targets[0], 0))


def test_ray_subsets_and_chunking_give_the_same_values():
    grid = VolumeGrid((24, 24, 24), (1.0, 1.0, 1.0))
    # At 45 degrees the rays of one view split between two dominant axes.
    views = [ViewGeometry(45, 0, 1000, 750, (32, 32), (1.0, 1.0))]
    volume = torch.rand(grid.shape, generator=torch.Generator().manual_seed(2))
    full = ConeBeamProjector(views, grid).project_view(volume, 0).reshape(-1)
    chunked = ConeBeamProjector(views, grid, samples_per_chunk=100)
    assert len(set(chunked.rays[0].axis.tolist())) == 2
    torch.testing.assert_close(chunked.project_view(volume, 0).reshape(-1), full)
    subset = torch.tensor([5, 700, 17, 1023, 300])
    torch.testing.assert_close(chunked.project_view(volume, 0, subset), full[subset])
    torch.testing.assert_close(
        chunked.backproject_view(torch.ones(5), 0, subset),
        ConeBeamProjector(views, grid).backproject_view(
            torch.zeros(1024).index_fill_(0, subset, 1.0), 0))


def test_projection_honours_grid_direction_and_origin():
    """The same physical object on a flipped, shifted grid projects identically."""
    views = [ViewGeometry(25, 15, 1000, 750, (48, 48), (1.0, 1.0))]
    plain = VolumeGrid((32, 32, 32), (1.0, 1.0, 1.0), (4.0, -3.0, 2.0))
    flipped = VolumeGrid((32, 32, 32), (1.0, 1.0, 1.0), (4.0, -3.0, 2.0),
                         (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    centre = np.array([8.0, -6.0, 5.0])
    volume = partial_volume(np.linalg.norm(plain.voxel_centers() - centre, axis=-1) - 5, 1.0)
    image = ConeBeamProjector(views, plain).project_view(volume, 0)
    flipped_image = ConeBeamProjector(views, flipped).project_view(volume.flip(0, 1), 0)
    torch.testing.assert_close(image, flipped_image, atol=1e-4, rtol=1e-4)


def test_silhouette_is_soft_binary():
    values = soft_silhouette(torch.tensor([0.0, 0.1, 1.0, 10.0]), k=4.0)
    assert values[0] == 0.0 and values[-1] > 0.999
    assert torch.all(values[1:] > values[:-1])


def test_wrong_volume_shape_is_rejected():
    projector = ConeBeamProjector([VIEWS["AP"]], VolumeGrid((16, 16, 16)))
    with pytest.raises(ValueError, match="volume shape"):
        projector.project_view(torch.zeros(8, 8, 8), 0)


def test_backend_factory_defaults_to_torch_and_rejects_missing_tigre():
    from sdfcar.errors import InputError
    from sdfcar.physics.projector import make_projector
    from sdfcar.physics.tigre_backend import tigre_available

    grid = VolumeGrid((16, 16, 16))
    assert isinstance(make_projector([VIEWS["AP"]], grid, "cpu"), ConeBeamProjector)
    assert isinstance(make_projector([VIEWS["AP"]], grid, "cpu", "torch"), ConeBeamProjector)
    with pytest.raises(InputError, match="backend: expected one of"):
        make_projector([VIEWS["AP"]], grid, "cpu", "astra")
    if not tigre_available():
        with pytest.raises(InputError, match="TIGRE was requested"):
            make_projector([VIEWS["AP"]], grid, "cpu", "tigre")


def test_sparse_system_matrix_matches_dense_projector_on_its_support():
    grid = VolumeGrid((24, 26, 28), (1.0, 0.9, 1.1))
    views = [ViewGeometry(45, 10, 1000, 750, (32, 30), (1.0, 1.0)),
             ViewGeometry(-20, -35, 1000, 750, (32, 30), (1.0, 1.0))]
    projector = ConeBeamProjector(views, grid, samples_per_chunk=500)
    generator = torch.Generator().manual_seed(3)
    support = torch.rand(grid.shape, generator=generator) < 0.3
    columns = torch.full(grid.shape, -1, dtype=torch.long)
    columns[support] = torch.arange(int(support.sum()))
    volume = torch.rand(grid.shape, generator=generator) * support
    for view in range(2):
        rays = torch.randperm(960, generator=generator)[:400]
        system = projector.system_matrix(view, rays, columns)
        values = volume[support].clone().requires_grad_(True)
        projected = system(values)
        torch.testing.assert_close(projected, projector.project_view(volume, view, rays),
                                   atol=1e-5, rtol=1e-5)
        weights = torch.rand(400, generator=generator)
        projected.backward(weights)
        torch.testing.assert_close(values.grad,
                                   projector.backproject_view(weights, view, rays)[support],
                                   atol=1e-5, rtol=1e-5)
        assert 0 < system.nnz < 400 * 4 * 28
