"""Tests for sdfcar.metrics: exact values on boxes and lines, grids, edge cases, MONAI."""

import json
import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice
from scipy import ndimage

from sdfcar import metrics
from sdfcar.centerlines import from_polylines, load, to_json
from sdfcar.errors import InputError
from sdfcar.geometry import VolumeGrid
from sdfcar.geometry.tubes import Segment, rasterize_segments

KEYS = {"dice", "iou", "cldice", "tprec", "tsens", "ot_1mm", "ot_2mm", "chamfer_mm",
        "hd95_mm", "components_pred", "components_gt", "betti0_error", "cl_precision_1mm",
        "cl_recall_1mm", "cl_median_mm", "radius_error_mm", "length_error_pct"}


def box_tube(shape=(40, 15, 15), width=5, offset=(0, 0), length=(5, 35)):
    """A straight tube along axis 0 with a width x width square cross-section."""
    volume = np.zeros(shape, dtype=bool)
    j, k = 5 + offset[0], 5 + offset[1]
    volume[length[0]:length[1], j:j + width, k:k + width] = True
    return volume


def blobs(seed, shape=(24, 28, 32)):
    rng = np.random.default_rng(seed)
    return ndimage.binary_dilation(rng.random(shape) > 0.996, iterations=2)


def tree(shape=(32, 36, 40)):
    """Two odd-width tubes joined at a right angle plus a separate short segment."""
    volume = np.zeros(shape, dtype=bool)
    volume[4:28, 10:13, 10:13] = True
    volume[14:17, 10:32, 10:13] = True
    volume[6:20, 25:28, 30:33] = True
    return volume


def test_identical_volumes_score_perfectly():
    volume = tree()
    result = metrics.evaluate(volume, volume, gt_grid=VolumeGrid(volume.shape, (0.8, 0.7, 1.1)))
    assert set(result) == KEYS
    for key in ("dice", "iou", "cldice", "tprec", "tsens", "ot_1mm", "ot_2mm"):
        assert result[key] == 1.0, key
    assert result["chamfer_mm"] == 0.0 and result["hd95_mm"] == 0.0
    assert result["components_pred"] == result["components_gt"] == 2
    assert result["betti0_error"] == 0


@pytest.mark.parametrize("spacing", [1.0, 0.8])
def test_shifted_tube_has_analytic_scores(spacing):
    width, length = 5, 30
    gt = box_tube(width=width)
    grid = VolumeGrid(gt.shape, (spacing,) * 3)
    one = metrics.evaluate(box_tube(width=width, offset=(1, 0)), gt, gt_grid=grid)
    assert one["dice"] == pytest.approx((width - 1) / width)
    assert one["iou"] == pytest.approx((width - 1) / (width + 1))
    # every voxel lies within one voxel of the other tube, none within half a voxel
    assert one["ot_2mm"] == 1.0
    pred_to_gt, gt_to_pred = metrics.nearest_distances(
        box_tube(width=width, offset=(1, 0)), gt, (spacing,) * 3)
    assert metrics.overlap_tolerance(pred_to_gt, gt_to_pred, spacing) == 1.0
    assert metrics.overlap_tolerance(pred_to_gt, gt_to_pred, 0.5 * spacing) == pytest.approx(
        one["dice"])
    assert one["chamfer_mm"] == pytest.approx(spacing / width)
    if spacing == 1.0:
        assert one["ot_1mm"] == 1.0

    two = metrics.evaluate(box_tube(width=width, offset=(2, 0)), gt, gt_grid=grid)
    assert np.count_nonzero(gt) == length * width**2
    assert two["dice"] == pytest.approx((width - 2) / width)
    # the slabs at 1 and 2 voxels from the other tube: mean (1 + 2) / width voxels
    assert two["chamfer_mm"] == pytest.approx(3 * spacing / width)
    within = metrics.overlap_tolerance(*metrics.nearest_distances(
        box_tube(width=width, offset=(2, 0)), gt, (spacing,) * 3), spacing)
    assert within == pytest.approx(1 - 1 / width)
    if spacing == 1.0:
        assert two["ot_1mm"] == pytest.approx(1 - 1 / width)
        assert two["ot_2mm"] == 1.0


@pytest.mark.parametrize("gap", [1, 4])
def test_parallel_lines_distance_is_their_separation(gap):
    spacing = (0.5, 0.7, 1.2)
    gt = np.zeros((20, 12, 6), dtype=bool)
    pred = gt.copy()
    gt[2:18, 3, 2] = True
    pred[2:18, 3 + gap, 2] = True
    result = metrics.evaluate(pred, gt, gt_grid=VolumeGrid(gt.shape, spacing))
    assert result["chamfer_mm"] == pytest.approx(gap * 0.7)
    assert result["hd95_mm"] == pytest.approx(gap * 0.7)
    assert result["dice"] == 0.0


def own_hd95(pred, gt, spacing):
    """HD95 written out: boundary voxels, EDT with spacing, max of directed percentiles."""
    def surface(mask):
        return mask ^ ndimage.binary_erosion(mask)
    to_gt = ndimage.distance_transform_edt(~surface(gt), sampling=spacing)[surface(pred)]
    to_pred = ndimage.distance_transform_edt(~surface(pred), sampling=spacing)[surface(gt)]
    return max(np.percentile(to_gt, 95), np.percentile(to_pred, 95))


def test_monai_hd95_honours_anisotropic_spacing():
    pred, gt = blobs(1), blobs(2)
    spacing = (0.5, 1.3, 2.0)
    value = metrics.hd95(pred, gt, spacing)
    assert value == pytest.approx(own_hd95(pred, gt, spacing), rel=1e-5)
    assert value != pytest.approx(own_hd95(pred, gt, (1.0, 1.0, 1.0)), rel=1e-3)


def test_dice_and_iou_match_monai():
    pred, gt = blobs(3), blobs(4) | blobs(3) & blobs(5)
    tensor = lambda mask: torch.from_numpy(mask[None, None].astype(np.float32))  # noqa: E731
    expected = float(compute_dice(tensor(pred), tensor(gt), include_background=True))
    assert metrics.dice(pred, gt) == pytest.approx(expected, rel=1e-6)
    d = metrics.dice(pred, gt)
    assert metrics.iou(pred, gt) == pytest.approx(d / (2 - d))


def test_broken_tube_splits_and_loses_centreline():
    gt = box_tube(width=5)
    broken = gt.copy()
    broken[18:22] = False
    thin = box_tube(width=3, offset=(1, 1))
    assert metrics.components(broken) == 2
    result = metrics.evaluate(broken, gt)
    assert result["betti0_error"] == 1
    score_broken, tprec_broken, tsens_broken = metrics.cldice(broken, gt)
    score_thin, tprec_thin, tsens_thin = metrics.cldice(thin, gt)
    assert tprec_broken == 1.0 and tsens_broken < 1.0
    assert score_thin == tprec_thin == tsens_thin == 1.0
    assert score_broken < score_thin
    # Dice ranks them the other way: the thin tube misses more voxels than the gap
    assert metrics.dice(thin, gt) < metrics.dice(broken, gt)


@pytest.mark.parametrize("width", [2, 4])
def test_even_width_tube_keeps_a_skeleton(width):
    tube = box_tube(width=width)
    skel = metrics.skeleton(tube)
    assert np.count_nonzero(skel & ~tube) == 0
    assert np.count_nonzero(skel.any(axis=(1, 2))) >= 25  # spans most of the 30 slices
    assert metrics.components(skel) == 1
    assert metrics.cldice(tube, tube) == (1.0, 1.0, 1.0)


def test_component_lost_even_after_erosion_keeps_its_deepest_voxel():
    corner = np.zeros((5, 5, 5), dtype=bool)
    corner[1, 2, 2] = corner[2, 2, 2] = corner[2, 2, 3] = True  # wiped by Lee's thinning
    skel = metrics.skeleton(corner)
    assert np.count_nonzero(skel) == 1 and np.count_nonzero(skel & corner) == 1
    assert metrics.cldice(corner, corner) == (1.0, 1.0, 1.0)


def test_finer_prediction_grid_gives_the_same_scores():
    gt, pred = tree(), np.roll(tree(), 1, axis=1)
    gt_grid = VolumeGrid.from_origin(gt.shape, (0.8, 0.9, 1.0), (-10.0, 5.0, 3.0))
    same = metrics.evaluate(pred, gt, gt_grid=gt_grid)
    fine = pred.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    fine_spacing = np.array(gt_grid.spacing_mm) / 2
    fine_grid = VolumeGrid.from_origin(fine.shape, fine_spacing,
                                       gt_grid.origin_mm - fine_spacing / 2)
    np.testing.assert_array_equal(metrics.resample_to(fine, fine_grid, gt_grid), pred)
    assert metrics.evaluate(fine, gt, fine_grid, gt_grid) == same
    assert same["dice"] < 1.0


def test_shifted_permuted_flipped_grid_gives_the_same_scores():
    gt, pred = tree(), np.roll(tree(), 2, axis=0)
    spacing = (0.8, 0.9, 1.0)
    gt_grid = VolumeGrid.from_origin(gt.shape, spacing, (-10.0, 5.0, 3.0))
    same = metrics.evaluate(pred, gt, gt_grid=gt_grid)
    # prediction axes (a, b, c) = (-k, i, j) with 3 voxels of padding on every side
    moved = np.pad(np.flip(pred.transpose(2, 0, 1), axis=0), 3)
    direction = np.array([[0, 1, 0], [0, 0, 1], [-1, 0, 0]], dtype=float)
    nk = gt.shape[2]
    origin = np.array([-10.0, 5.0, 3.0]) + np.array(
        [-3 * spacing[0], -3 * spacing[1], (nk + 2) * spacing[2]])
    pred_grid = VolumeGrid.from_origin(moved.shape, (spacing[2], spacing[0], spacing[1]),
                                       origin, direction)
    np.testing.assert_array_equal(metrics.resample_to(moved, pred_grid, gt_grid), pred)
    assert metrics.evaluate(moved, gt, pred_grid, gt_grid) == same


def test_resampling_outside_the_prediction_is_background():
    grid = VolumeGrid.from_origin((10, 10, 10), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    half = VolumeGrid.from_origin((5, 10, 10), (1.0, 1.0, 1.0), (5.0, 0.0, 0.0))
    out = metrics.resample_to(np.ones((5, 10, 10), dtype=bool), half, grid)
    assert out[5:].all() and not out[:5].any()


def test_empty_masks_give_defined_values():
    gt = tree()
    empty = np.zeros_like(gt)
    missed = metrics.evaluate(empty, gt)
    assert set(missed) == KEYS
    for key in ("dice", "iou", "cldice", "tprec", "tsens", "ot_1mm", "ot_2mm"):
        assert missed[key] == 0.0, key
    assert math.isinf(missed["chamfer_mm"]) and math.isinf(missed["hd95_mm"])
    assert missed["components_pred"] == 0 and missed["betti0_error"] == 2
    spurious = metrics.evaluate(gt, empty)
    assert spurious["dice"] == 0.0 and math.isinf(spurious["hd95_mm"])
    nothing = metrics.evaluate(empty, empty)
    assert nothing["dice"] == nothing["cldice"] == nothing["ot_1mm"] == 1.0
    assert nothing["chamfer_mm"] == nothing["hd95_mm"] == 0.0


def test_mismatched_shapes_are_rejected():
    with pytest.raises(InputError, match="shape"):
        metrics.evaluate(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(InputError, match="grid"):
        metrics.evaluate(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)),
                         gt_grid=VolumeGrid((4, 4, 5)))


# ----------------------------------------------------------------------------- centrelines

# Odd sizes: the tube axes run through voxel centres (odd widths; see metrics.skeleton)
CL_GRID = VolumeGrid((101, 77, 21), (0.5, 0.5, 0.5))


def tubes(*polylines, radius=1.0, shift=(0.0, 0.0, 0.0)):
    """Label of capsule tubes (``radius`` mm) along polylines (LPS mm) on :data:`CL_GRID`."""
    segments = [Segment(f"v{n}", np.asarray(p, float) + shift, np.full(len(p), radius), None)
                for n, p in enumerate(polylines)]
    return rasterize_segments(segments, CL_GRID) >= 0.5


def truth_of(*polylines, radius=1.0):
    return from_polylines([(np.asarray(p, float), np.full(len(p), radius)) for p in polylines])


STRAIGHT = [(-20.0, 0.0, 0.0), (20.0, 0.0, 0.0)]


def test_straight_tube_has_its_radius_and_full_recall():
    label = tubes(STRAIGHT, radius=2.0)
    scores = metrics.evaluate(label, label, gt_grid=CL_GRID,
                              centerlines=truth_of(STRAIGHT, radius=2.0))
    assert set(scores) == KEYS
    assert scores["cl_recall_1mm"] == 1.0 and scores["cl_precision_1mm"] == 1.0
    assert scores["radius_error_mm"] < 0.25  # half a voxel
    assert abs(scores["length_error_pct"]) < 5.0
    assert scores["cl_median_mm"] <= 0.1 + 1e-9  # half the 0.2 mm step of the true samples
    # from skeletons on both sides the scores are exact
    same = metrics.evaluate(label, label, gt_grid=CL_GRID)
    assert same["cl_recall_1mm"] == same["cl_precision_1mm"] == 1.0
    assert same["radius_error_mm"] == same["length_error_pct"] == same["cl_median_mm"] == 0.0


@pytest.mark.parametrize("shift, recall", [(0.5, 1.0), (2.0, 0.0)])
def test_shifted_tube_recall_at_1mm(shift, recall):
    pred = tubes(STRAIGHT, shift=(0.0, shift, 0.0))
    scores = metrics.evaluate(pred, tubes(STRAIGHT), gt_grid=CL_GRID,
                              centerlines=truth_of(STRAIGHT))
    assert scores["cl_recall_1mm"] == pytest.approx(recall)
    assert scores["cl_precision_1mm"] == pytest.approx(recall)
    assert scores["cl_median_mm"] == pytest.approx(shift, abs=0.3)
    if recall == 0.0:
        assert math.isnan(scores["radius_error_mm"])


def test_tree_missing_one_branch_has_its_length_fraction_as_recall():
    trunk = [(-20.0, 0.0, 0.0), (20.0, 0.0, 0.0)]
    first = [(-5.0, 0.0, 0.0), (-5.0, 15.0, 0.0)]
    second = [(10.0, 0.0, 0.0), (10.0, -15.0, 0.0)]
    truth = truth_of(trunk, first, second)
    assert truth.length_mm == pytest.approx(70.0)
    scores = metrics.evaluate(tubes(trunk, first), tubes(trunk, first, second),
                              gt_grid=CL_GRID, centerlines=truth)
    # the missing branch's first millimetre lies within 1 mm of the trunk
    assert scores["cl_recall_1mm"] == pytest.approx((40 + 15 + 1) / 70, abs=0.02)
    assert scores["cl_precision_1mm"] == pytest.approx(1.0, abs=0.01)
    assert scores["length_error_pct"] == pytest.approx(-15 / 70 * 100, abs=4.0)


def test_centerline_file_is_read_and_bad_files_fail(tmp_path):
    good = tmp_path / "cl.json"
    good.write_text(json.dumps(to_json([("trunk", None, np.array(STRAIGHT), [1.0, 1.0])])))
    assert load(good).length_mm == pytest.approx(40.0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"vessels": [{"points": [[0, 0, 0]], "radii": [1]}]}))
    with pytest.raises(InputError, match=r"vessels\[0\]\.points"):
        load(bad)
    bad.write_text("{")
    with pytest.raises(InputError, match="bad.json"):
        load(bad)
