"""Tube tracing: analytic tube integrals, local tube fits and whole trees traced end to end."""

import numpy as np
import pytest

from sdfcar.config import build_config
from sdfcar.errors import InputError
from sdfcar.geometry import CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.metrics import dice
from sdfcar.geometry.tubes import Segment, branch_point, rasterize_segments
from sdfcar.pipeline.run import reconstruct
from sdfcar.synthetic.simulate import project_label
from sdfcar.methods.tubes.tracing import (TubeSettings, _Tracer, _ViewData, extend_tree,
                                          find_start_tubes, fit_tube, folded, trace_tree,
                                          trimmed_ends)
from sdfcar.physics.tubes import DetectorRays, cylinder_chords, render_chain

VIEWS = (ViewGeometry(29.7, 0.1, 993.0, 757.0, (160, 160), (0.6, 0.6)),
         ViewGeometry(2.0, 29.0, 1055.0, 757.0, (160, 160), (0.6, 0.6)))
GRID = VolumeGrid((64, 64, 64), (0.8, 0.8, 0.8))
GEOMETRY = CaseGeometry(VIEWS, GRID)


def _marched_chords(source, rays, inside, step=0.005, reach=1200.0):
    """Chord lengths by marching each ray in tiny steps and counting inside samples."""
    t = np.arange(600.0, reach, step)
    lengths = []
    for ray in rays:
        points = source + t[:, None] * ray
        lengths.append(np.count_nonzero(inside(points)) * step)
    return np.array(lengths)


def test_cylinder_chords_match_ray_marching():
    detector = DetectorRays(VIEWS[0])
    centre, axis, radius = np.array([3.0, -2.0, 1.0]), np.array([0.6, 0.3, -0.74]), 1.7
    axis = axis / np.linalg.norm(axis)
    window = detector.window(centre, axis, 2.0, radius + 1.0)
    pick = np.random.default_rng(0).choice(len(window.rows), 40, replace=False)
    rays = window.rays[pick]

    def inside(points):
        rel = points - centre
        return np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1) <= radius

    expected = _marched_chords(detector.source, rays, inside)
    assert np.count_nonzero(expected) > 10  # most picked rays cross the tube
    got = cylinder_chords(detector.source, rays, centre, axis, radius)
    assert np.max(np.abs(got - expected)) < 0.02
    # A batch of cylinders in one pass: row k is cylinder k alone.
    shifts = np.array([[0.0, 0.0, 0.0], [0.4, -0.3, 0.2], [-0.5, 0.1, 0.6]])
    axes = np.array([axis, [0.5, 0.5, -0.707], [0.7, 0.1, -0.7]])
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    batch = cylinder_chords(detector.source, rays, centre + shifts, axes, [1.7, 1.2, 2.0])
    assert batch.shape == (3, len(rays))
    for k, (shift, each, r) in enumerate(zip(shifts, axes, [1.7, 1.2, 2.0])):
        alone = cylinder_chords(detector.source, rays, centre + shift, each, r)
        assert np.allclose(batch[k], alone, atol=1e-12) and np.count_nonzero(alone) > 10


def _bent_vessel():
    t = np.linspace(0.0, 1.0, 80)
    points = np.stack([-16 + 32 * t, 6 * np.sin(3 * t), 4 * np.cos(2 * t) - 2], axis=1)
    return Segment("bent", points, np.linspace(1.6, 0.9, len(t)), None)


def test_rendered_chain_matches_the_projected_voxelised_vessel():
    vessel = _bent_vessel()
    fine = VolumeGrid((160, 160, 160), (0.32, 0.32, 0.32))
    occupancy = rasterize_segments([vessel], fine, supersample=2)
    projected = project_label(occupancy >= 0.5, fine, VIEWS[:1])[0]
    rendered = render_chain(DetectorRays(VIEWS[0]), vessel.points, vessel.radii)
    # Same total integral (volume seen by the view) up to the voxelised vessel's rounded
    # end caps (about 6 % of its volume; measured 4 %), and the images agree pixel by pixel
    # up to the voxelisation's staircase at the walls (measured: correlation 0.985,
    # relative L2 difference 0.17).
    assert abs(rendered.sum() - projected.sum()) < 0.06 * projected.sum()
    assert np.corrcoef(rendered.ravel(), projected.ravel())[0, 1] > 0.97
    assert np.linalg.norm(rendered - projected) < 0.25 * np.linalg.norm(projected)


def _views_of(segments, factor=2):
    """Line integrals of vessels voxelised ``factor`` times finer than GRID (no inverse
    crime: the reconstruction grid cannot represent them exactly)."""
    fine = VolumeGrid(tuple(n * factor for n in GRID.shape),
                      tuple(s / factor for s in GRID.spacing_mm))
    label = rasterize_segments(segments, fine) >= 0.5
    return project_label(label, fine, VIEWS)


def test_fit_tube_recovers_position_direction_and_radius():
    direction = np.array([0.8, 0.5, -0.33]) / np.linalg.norm([0.8, 0.5, -0.33])
    points = np.array([-2.0, 1.0, 3.0]) + np.linspace(-12, 12, 61)[:, None] * direction
    vessel = Segment("straight", points, np.full(61, 1.2), None)
    views = [_ViewData(DetectorRays(v), image) for v, image in zip(VIEWS, _views_of([vessel]))]
    true_centre = points[30]
    start_axis = direction + np.array([0.15, -0.1, 0.1])
    fit = fit_tube(views, true_centre + np.array([0.6, -0.5, 0.4]),
                   start_axis / np.linalg.norm(start_axis), 0.8)
    offset = fit.centre - true_centre
    assert np.linalg.norm(offset - (offset @ direction) * direction) < 0.2
    assert np.degrees(np.arccos(min(abs(fit.axis @ direction), 1.0))) < 3.0
    assert abs(fit.radius - 1.2) < 0.1
    assert all(0.9 < s < 1.1 for s in fit.support)
    assert fit.misfit < 0.05


def test_straightness_holds_a_fit_on_its_predicted_line():
    direction = np.array([0.8, 0.5, -0.33]) / np.linalg.norm([0.8, 0.5, -0.33])
    points = np.array([-2.0, 1.0, 3.0]) + np.linspace(-12, 12, 61)[:, None] * direction
    vessel = Segment("straight", points, np.full(61, 1.2), None)
    views = [_ViewData(DetectorRays(v), image) for v, image in zip(VIEWS, _views_of([vessel]))]
    across = np.cross(direction, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across)
    start = points[30] + 0.8 * across  # 0.8 mm beside the vessel
    free = fit_tube(views, start, direction, 1.2)
    held = fit_tube(views, start, direction, 1.2, straightness=1e3)

    def shift(fit):
        offset = fit.centre - start
        return np.linalg.norm(offset - (offset @ direction) * direction)

    assert shift(free) > 0.6  # the data pull it onto the vessel
    assert shift(held) < 0.05 and held.axis @ direction > 0.9999  # the prior keeps it


def _y_tree():
    t = np.linspace(0.0, 1.0, 70)[:, None]
    trunk = np.array([-18.0, -4.0, 10.0]) + t * np.array([16.0, 4.0, -10.0])
    fork = trunk[-1]
    left = fork + t * np.array([12.0, 9.0, -8.0]) + np.sin(np.pi * t) * np.array([0, 0, -3.0])
    right = fork + t * np.array([14.0, -10.0, 6.0])
    return [Segment("trunk", trunk, np.linspace(1.8, 1.5, 70), None),
            Segment("left", left, np.linspace(1.2, 0.8, 70), "trunk"),
            Segment("right", right, np.linspace(1.2, 0.8, 70), "trunk")]


@pytest.fixture(scope="module")
def y_case():
    tree = _y_tree()
    return rasterize_segments(tree, GRID) >= 0.5, _views_of(tree)


@pytest.mark.slow
def test_tubes_preset_traces_a_branching_tree(y_case):
    label, views = y_case
    config = build_config("tubes", ["tubes.trees=3"], device="cpu")
    result = reconstruct(views, GEOMETRY, config)
    # Measured: Dice 0.82 (radii about 5 % too large) from views that the 0.8 mm grid cannot
    # reproduce exactly; the field presets' voxel prior needs exact data for such a score.
    assert dice(result.label, label) > 0.75
    assert result.record.method == "tubes"
    assert result.record.statistics["tubes"]["vessels"] >= 2
    assert result.record.components == 1
    assert np.array_equal(result.label > 0, result.sdf < 0)
    assert all(e["relative_l2"] < 0.5 for e in result.record.reprojection)


def test_tubes_reject_masks_and_empty_views(y_case):
    _, views = y_case
    config = build_config("tubes", device="cpu")
    masks = [(v > 0.1).astype(np.float32) for v in views]
    with pytest.raises(InputError, match="method: tubes: the tubes method fits line integrals"):
        reconstruct(masks, GEOMETRY, config)
    specks = [np.zeros_like(v) for v in views]
    for speck in specks:
        speck[80, 80] = 1.5
    with pytest.raises(InputError, match="no vessel found"):
        reconstruct(specks, GEOMETRY, config)


def test_extend_tree_follows_vessels_on_beyond_both_free_ends():
    t = np.linspace(0.0, 1.0, 41)
    points = np.stack([-16 + 32 * t, 5 * np.sin(2.5 * t), 3 * np.cos(2 * t) - 1], axis=1)
    vessel = Segment("root", points, np.full(41, 1.2), None)
    fine = GRID.refined(2)
    images = project_label(rasterize_segments([vessel], fine) >= 0.5, fine, VIEWS)
    middle = Segment("root", points[12:28].copy(), vessel.radii[12:28].copy(), None)
    grown = extend_tree(images, GEOMETRY, TubeSettings(), [middle])
    assert grown[0].name == "root" and grown[0].parent is None
    assert len(grown[0].points) > 2 * len(middle.points)
    # Both ends reach the true ones (within the tracer's last step plus a radius).
    assert np.linalg.norm(grown[0].points[0] - points[0]) < 2.5
    assert np.linalg.norm(grown[0].points[-1] - points[-1]) < 2.5
    # The added points lie on the true centreline.
    distance = np.linalg.norm(grown[0].points[:, None] - points[None], axis=2).min(axis=1)
    assert np.median(distance) < 0.3


def test_trimmed_ends_drop_thinning_free_ends_and_keep_branch_points():
    line = np.stack([np.arange(10.0), np.zeros(10), np.zeros(10)], axis=1)
    # A root thinning at both ends (1.0 against 1.5), a branch from its point 1 tapering
    # 3 % a step (kept: 0.97^3 > 0.9), a root whose thin first point carries a branch.
    root = Segment("root", line, np.array([1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.3, 1.0, 0.8]),
                   None)
    taper = Segment("taper", line[1] + line[:6, [1, 0, 2]], 1.2 * 0.97 ** np.arange(6), "root")
    anchored = Segment("anchored", line + [0, 0, 9], np.array([0.7] + [1.5] * 8 + [0.7]), None)
    child = Segment("child", anchored.points[0] + line[:5, [1, 2, 0]], np.full(5, 0.6),
                    "anchored")
    trimmed = {v.name: v for v in trimmed_ends([root, taper, anchored, child])}
    np.testing.assert_array_equal(trimmed["root"].points, line[1:7])  # 1.3 < 0.9 * 1.5
    np.testing.assert_array_equal(trimmed["taper"].points, taper.points)
    np.testing.assert_array_equal(trimmed["anchored"].points, anchored.points[:-1])
    np.testing.assert_array_equal(trimmed["child"].points, child.points)


def test_a_one_point_root_is_folded_into_its_first_branch():
    """A start tube that cannot be followed either way leaves a one-point root (no
    centreline for the QCA); its first branch takes its place and the others leave it."""
    point = np.zeros((1, 3))
    line = np.stack([np.arange(1.0, 6.0), np.zeros(5), np.zeros(5)], axis=1)
    vessels = [Segment("root", point, np.ones(1), None),
               Segment("a", np.vstack([point, line]), np.ones(6), "root"),
               Segment("b", np.vstack([point, -line]), np.ones(6), "root"),
               Segment("c", line[2] + line[:, [1, 0, 2]], np.ones(5), "a"),
               Segment("other", line + 9.0, np.ones(5), None)]
    folded_tree = {v.name: v for v in folded(vessels, "root")}
    assert set(folded_tree) == {"a", "b", "c", "other"}
    assert [folded_tree[n].parent for n in "abc"] == [None, "a", "a"]
    assert folded_tree["other"].parent is None
    np.testing.assert_array_equal(folded_tree["b"].points, vessels[2].points)
    assert branch_point(folded_tree["a"], folded_tree["b"]) == 0


def _two_vessels():
    """Two separate vessels (a phantom's separate tubes, or a left and a right tree)."""
    t = np.linspace(0.0, 1.0, 50)[:, None]
    upper = np.array([-14.0, -6.0, 12.0]) + t * np.array([26.0, 6.0, -4.0])
    lower = np.array([-10.0, 8.0, -12.0]) + t * np.array([20.0, -4.0, 8.0])
    return [Segment("upper", upper, np.full(50, 1.4), None),
            Segment("lower", lower, np.full(50, 1.1), None)]


def _traced_near(vessel, traced):
    points = np.concatenate([v.points for v in traced])
    return np.median(np.linalg.norm(vessel.points[:, None] - points[None], axis=2).min(axis=1))


@pytest.mark.slow
def test_more_trees_trace_separate_vessels_and_stop_when_nothing_is_left():
    vessels = _two_vessels()
    images = _views_of(vessels)
    one = trace_tree(images, GEOMETRY, TubeSettings(trees=2, max_trees=1))
    assert one.trees_kept == 1
    assert min(_traced_near(v, one.vessels) for v in vessels) < 0.5
    assert max(_traced_near(v, one.vessels) for v in vessels) > 5.0  # the other is missed
    more = trace_tree(images, GEOMETRY, TubeSettings(trees=2, max_trees=4))
    assert more.trees_kept == 2  # a third tree would explain (almost) nothing
    assert max(_traced_near(v, more.vessels) for v in vessels) < 0.5
    assert sum(v.parent is None for v in more.vessels) == 2
    assert more.unexplained < 0.5 * one.unexplained
    forked = trace_tree(images, GEOMETRY, TubeSettings(trees=2, max_trees=4), workers=2)
    assert forked.unexplained == more.unexplained  # the same tree in two processes
    assert [v.name for v in forked.vessels] == [v.name for v in more.vessels]
    for mine, theirs in zip(forked.vessels, more.vessels):
        np.testing.assert_array_equal(mine.points, theirs.points)
        assert mine.parent == theirs.parent


def test_a_trial_tree_leaves_the_tracer_as_it_was():
    images = _views_of(_two_vessels())
    views = [_ViewData(DetectorRays(v), image) for v, image in zip(VIEWS, images)]
    tracer = _Tracer(views, GRID, TubeSettings())
    tracer.grow(find_start_tubes(views, GRID, 1)[0])
    second = find_start_tubes(views, GRID, 1)[0]  # in what the first tree leaves
    before = [view.residual.copy() for view in views], list(tracer.vessels)
    left, grown = tracer.trial(second)
    assert left < tracer.unexplained()
    assert tracer.vessels == before[1]
    assert len(grown.vessels) > len(before[1])  # the state with the trial tree, to keep
    for view, residual in zip(views, before[0]):
        np.testing.assert_array_equal(view.residual, residual)
