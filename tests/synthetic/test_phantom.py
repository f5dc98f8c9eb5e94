"""Tests of the synthetic coronary tree generator and its rasteriser (sdfcar.synthetic.phantom)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from sdfcar.errors import InputError
from sdfcar.geometry import VolumeGrid, rotation_x, rotation_z
from sdfcar.geometry.tubes import Segment
from sdfcar.synthetic.phantom import CoronaryTree, generate_tree, label_volume, rasterize

KINDS = ("lca", "rca")
SEEDS = (0, 1, 2, 3, 7)
FULL = VolumeGrid()  # 128^3 at 0.8 mm on the isocenter: the default reconstruction grid
COARSE = VolumeGrid((64, 64, 64), (1.6, 1.6, 1.6))  # same 102.4 mm field
HALF_FIELD_MM = 51.2
MARGIN_MM = 5.0
CUBE = np.ones((3, 3, 3), dtype=bool)


@pytest.fixture(scope="module", params=[(k, s) for k in KINDS for s in SEEDS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def tree(request) -> CoronaryTree:
    return generate_tree(*request.param)


def _by_name(tree: CoronaryTree) -> dict[str, Segment]:
    return {s.name: s for s in tree.segments}


def _start_index(parent: Segment, child: Segment) -> int:
    hits = np.flatnonzero(np.all(parent.points == child.points[0], axis=1))
    assert hits.size == 1, f"{child.name} does not start on {parent.name}'s centerline"
    return int(hits[0])


def _reference_inside(tree: CoronaryTree, grid: VolumeGrid) -> np.ndarray:
    """Brute force: every voxel centre from grid.voxel_centers() against every capsule."""
    centres = grid.voxel_centers().reshape(-1, 3)
    inside = np.zeros(len(centres), dtype=bool)
    for seg in tree.segments:
        a, ab = seg.points[:-1], np.diff(seg.points, axis=0)
        rel = centres[:, None, :] - a[None]
        t = np.clip(np.einsum("vcd,cd->vc", rel, ab) / np.sum(ab * ab, axis=1), 0.0, 1.0)
        dist = np.linalg.norm(rel - t[..., None] * ab, axis=-1)
        radius = seg.radii[:-1] + t * np.diff(seg.radii)
        inside |= np.any(dist <= radius, axis=1)
    return inside.reshape(grid.shape)


# ----------------------------------------------------------------------------- generator


def test_bad_kind_raises():
    with pytest.raises(InputError, match=r"^kind: expected 'lca' or 'rca', got 'x'$"):
        generate_tree("x", 0)


@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_bad_seed_raises(seed):
    with pytest.raises(InputError, match=r"^seed: "):
        generate_tree("lca", seed)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic(kind):
    first, second = generate_tree(kind, 11), generate_tree(kind, 11)
    assert [(s.name, s.parent) for s in first.segments] == \
        [(s.name, s.parent) for s in second.segments]
    for a, b in zip(first.segments, second.segments):
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.radii, b.radii)


@pytest.mark.parametrize("kind", KINDS)
def test_different_seeds_differ(kind):
    trees = [generate_tree(kind, seed) for seed in range(4)]
    roots = [t.segments[0].points for t in trees]
    for n in range(1, len(trees)):
        assert roots[n].shape != roots[0].shape or np.abs(roots[n] - roots[0]).max() > 2.0
    ends = np.array([_by_name(t)["LAD" if kind == "lca" else "PDA"].points[-1] for t in trees])
    assert np.ptp(ends, axis=0).max() > 5.0  # distal ends move by several mm
    labels = [label_volume(kind, seed, COARSE) for seed in range(2)]
    overlap = 2 * np.sum(labels[0] & labels[1]) / (labels[0].sum() + labels[1].sum())
    assert overlap < 0.5


def test_anatomy(tree):
    segments = _by_name(tree)
    names = list(segments)
    assert tree.segments[0].parent is None
    assert all(s.parent in names[: names.index(s.name)] for s in tree.segments[1:])
    if tree.kind == "lca":
        assert segments["LAD"].parent == segments["LCX"].parent == "LM"
        groups = {"D": "LAD", "OM": "LCX"}
    else:
        assert segments["PDA"].parent == segments["PL"].parent == "RCA"
        groups = {"AM": "RCA"}
    for prefix, parent in groups.items():
        branches = [s for s in tree.segments if s.name.rstrip("0123456789") == prefix]
        assert 2 <= len(branches) <= 3 and all(s.parent == parent for s in branches)
    for child in tree.segments[1:]:
        _start_index(segments[child.parent], child)


def test_samples_helper(tree):
    points, radii = tree.samples()
    total = sum(len(s.points) for s in tree.segments)
    assert points.shape == (total, 3) and radii.shape == (total,)


def test_radii_taper(tree):
    _, radii = tree.samples()
    assert radii.min() >= 0.5 and radii.max() <= 2.1
    assert tree.segments[0].radii[0] >= 1.8
    for seg in tree.segments:
        assert seg.radii[0] > seg.radii[-1]
        assert np.all(np.diff(seg.radii) <= 1e-12), seg.name


def test_murray_law(tree):
    """r_in^3 = sum of r_out^3 at every branch point (continuing parent + children)."""
    segments = _by_name(tree)
    flows: dict[tuple[str, int], float] = {}
    for child in tree.segments[1:]:
        key = (child.parent, _start_index(segments[child.parent], child))
        flows[key] = flows.get(key, 0.0) + child.radii[0] ** 3
    assert len(flows) == len(tree.segments) - 2  # one bifurcation at the root's end
    for (name, index), out in flows.items():
        parent = segments[name]
        if index + 1 < len(parent.radii):
            out += parent.radii[index + 1] ** 3
        assert out == pytest.approx(parent.radii[index] ** 3, rel=0.05), (name, index)


def test_smooth_dense_centerlines(tree):
    for seg in tree.segments:
        steps = np.diff(seg.points, axis=0)
        lengths = np.linalg.norm(steps, axis=1)
        assert lengths.max() <= 0.5 and lengths.min() > 0.2
        unit = steps / lengths[:, None]
        turn = np.degrees(np.arccos(np.clip(np.sum(unit[1:] * unit[:-1], axis=1), -1, 1)))
        assert turn.max() < 15.0, seg.name  # no kinks
    lengths = {s.name: np.linalg.norm(np.diff(s.points, axis=0), axis=1).sum()
               for s in tree.segments}
    assert lengths["LAD" if tree.kind == "lca" else "RCA"] > 60.0


def test_inside_field_margin(tree):
    points, radii = tree.samples()
    reach = np.abs(points) + radii[:, None]
    assert reach.max() <= HALF_FIELD_MM - MARGIN_MM


@pytest.mark.parametrize("kind", KINDS)
def test_fits_margin_for_many_seeds(kind):
    for seed in range(40):
        points, radii = generate_tree(kind, seed).samples()
        assert (np.abs(points) + radii[:, None]).max() <= HALF_FIELD_MM - MARGIN_MM, seed


# ----------------------------------------------------------------------------- rasteriser


def test_one_component_and_volume_fraction(tree):
    occupancy = rasterize(tree, FULL)
    assert occupancy.shape == FULL.shape and occupancy.dtype == np.float32
    _, count = ndimage.label(occupancy >= 0.5, structure=CUBE)
    assert count == 1
    # ~0.1-0.15 % for these 5-9 vessel trees (radii 2 -> 0.6 mm); see the module docstring
    assert 0.0008 < occupancy.mean() < 0.03


def test_rasterize_matches_brute_force_on_oblique_grid():
    tree = generate_tree("lca", 5)
    centre = _by_name(tree)["LAD"].points[100]
    direction = (rotation_z(30.0) @ rotation_x(-20.0)).ravel()
    grid = VolumeGrid((26, 20, 14), (0.7, 0.9, 1.1), tuple(centre), tuple(direction))
    expected = _reference_inside(tree, grid)
    assert expected.sum() > 50
    np.testing.assert_array_equal(rasterize(tree, grid) >= 0.5, expected)


def test_flipped_direction_gives_same_physical_voxels():
    tree = generate_tree("rca", 2)
    flipped = VolumeGrid(COARSE.shape, COARSE.spacing_mm, COARSE.center_mm,
                         (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    plain = rasterize(tree, COARSE, supersample=2)
    mirrored = rasterize(tree, flipped, supersample=2)[::-1, ::-1, :]
    assert plain.sum() > 100
    np.testing.assert_allclose(mirrored, plain, atol=1e-6)


def test_supersampled_capsule_volume():
    radius, length = 2.0, 30.0
    axis = np.array([2.0, -1.0, 1.5]) / np.linalg.norm([2.0, -1.0, 1.5])
    start = np.array([3.1, -2.2, 0.7]) - 0.5 * length * axis
    points = start + np.linspace(0.0, length, 61)[:, None] * axis
    tree = CoronaryTree("lca", [Segment("tube", points, np.full(61, radius), None)])
    grid = VolumeGrid((32, 32, 32), (1.6, 1.6, 1.6), (2.0, -1.0, 0.5))
    analytic = math.pi * radius**2 * length + 4.0 / 3.0 * math.pi * radius**3
    occupancy = rasterize(tree, grid, supersample=4)
    assert 0.0 <= occupancy.min() and occupancy.max() <= 1.0
    assert 0.0 < occupancy[occupancy > 0].min() < 1.0  # partial volume at the wall
    assert occupancy.sum() * 1.6**3 == pytest.approx(analytic, rel=0.05)


def test_label_volume_is_centre_inside_label():
    label = label_volume("lca", 4, COARSE)
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
    expected = rasterize(generate_tree("lca", 4), COARSE) >= 0.5
    np.testing.assert_array_equal(label.astype(bool), expected)


@pytest.mark.parametrize("supersample", [0, 2.0, True])
def test_bad_supersample_raises(supersample):
    with pytest.raises(InputError, match=r"^supersample: "):
        rasterize(generate_tree("rca", 0), COARSE, supersample=supersample)
