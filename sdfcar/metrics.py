"""Segmentation metrics: a predicted binary vessel volume P against ground truth L.

Masks are arrays on one grid (nonzero = vessel); distances are in millimetres, measured
between voxel centres with the grid's voxel spacing (direction cosines are orthonormal, so
they do not change distances). Volumes on different grids are first brought onto the
ground-truth grid with :func:`resample_to`.

Empty masks never raise. When both P and L are empty they agree perfectly: every overlap
score is 1 and every distance 0. When exactly one is empty, overlap scores are 0 and
distances ``inf`` (the distance to an empty set).

Centreline metrics compare length-weighted centreline samples
(:class:`sdfcar.centerlines.Centerlines`): a mask's come from its :func:`skeleton` (radius =
the Euclidean distance transform of the mask at each skeleton voxel, weight = half the
length of its edges in the skeleton's minimum spanning tree), ground truth's may instead be
given as polylines with radii (:func:`sdfcar.centerlines.load`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from sdfcar.centerlines import Centerlines
from sdfcar.errors import bad_input
from sdfcar.geometry import VolumeGrid

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
# Slack for "within d mm": an EDT distance of exactly d can come out as d + 1 ulp.
TOLERANCE_MM = 1e-6

Spacing = Sequence[float]


def _mask(volume: np.ndarray) -> np.ndarray:
    mask = np.asarray(volume).astype(bool, copy=False)
    if mask.ndim != 3:
        raise bad_input("mask", f"expected a 3-D array, got shape {mask.shape}")
    return mask


def _crop_box(pred: np.ndarray, gt: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the union of two masks of one shape (empty slices when empty)."""
    if pred.shape != gt.shape:
        raise bad_input("pred", f"shape {pred.shape} differs from the ground truth's {gt.shape}")
    union = pred | gt
    if not union.any():
        return (slice(0, 0),) * 3
    return ndimage.find_objects(union.view(np.uint8))[0]


def _crop(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union (nothing lies outside it)."""
    pred, gt = _mask(pred), _mask(gt)
    box = _crop_box(pred, gt)
    return pred[box], gt[box]


# ----------------------------------------------------------------------------- resampling


def resample_to(pred: np.ndarray, pred_grid: VolumeGrid, gt_grid: VolumeGrid) -> np.ndarray:
    """Nearest-neighbour resampling of ``pred`` (on ``pred_grid``) onto ``gt_grid``.

    Each GT voxel centre is mapped through both grids' origin, spacing and direction into
    ``pred``'s continuous index and rounded (exact halves round up); centres that fall
    outside ``pred`` get 0. Returns a boolean array of ``gt_grid.shape`` (``pred`` itself
    when the two grids coincide).
    """
    pred = _mask(pred)
    if pred.shape != tuple(pred_grid.shape):
        raise bad_input("pred", f"shape {pred.shape} does not match its grid {pred_grid.shape}")
    if pred_grid.shape == gt_grid.shape and np.allclose(
        pred_grid.affine, gt_grid.affine, rtol=0.0, atol=1e-9
    ):
        return pred
    gt_to_pred = np.linalg.inv(pred_grid.affine) @ gt_grid.affine
    axes = np.ix_(*(np.arange(n, dtype=float) for n in gt_grid.shape))
    index = [
        np.floor(sum(row[a] * axes[a] for a in range(3)) + row[3] + 0.5).astype(np.intp)
        for row in gt_to_pred[:3]
    ]
    index = np.broadcast_arrays(*index)
    inside = np.ones(gt_grid.shape, dtype=bool)
    for along, n in zip(index, pred.shape):
        inside &= (along >= 0) & (along < n)
    out = np.zeros(gt_grid.shape, dtype=bool)
    out[inside] = pred[tuple(along[inside] for along in index)]
    return out


# ----------------------------------------------------------------------------- overlap


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice ``2|P & L| / (|P| + |L|)``; 1 when both are empty."""
    pred, gt = _mask(pred), _mask(gt)
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    return float(2 * np.count_nonzero(pred & gt) / total) if total else 1.0


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union ``|P & L| / |P | L|``; 1 when both are empty."""
    pred, gt = _mask(pred), _mask(gt)
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else 1.0


def skeleton(mask: np.ndarray) -> np.ndarray:
    """3-D skeleton by Lee's thinning (``skimage.morphology.skeletonize``), same shape.

    Lee's thinning in scikit-image can delete a whole component (issue #3757: e.g. an
    axis-aligned tube of even width vanishes). A component left without skeleton voxels is
    thinned again after a 2x2x2 erosion (which makes even widths odd); if that is empty
    too, its deepest voxel (largest distance to the background) stands for it. Every
    non-empty component thus keeps a non-empty skeleton inside it.
    """
    mask = _mask(mask)
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    box = ndimage.find_objects(mask.view(np.uint8))[0]
    sub = mask[box]
    skel = skeletonize(sub)
    labels, count = ndimage.label(sub, CONNECTIVITY_26)
    parts = ndimage.find_objects(labels)
    for label in sorted(set(range(1, count + 1)) - set(np.unique(labels[skel]).tolist())):
        part = parts[label - 1]
        component = labels[part] == label
        thin = skeletonize(ndimage.binary_erosion(component, np.ones((2, 2, 2)))) & component
        if not thin.any():
            depth = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1, 1:-1]
            thin[np.unravel_index(np.argmax(depth), depth.shape)] = True
        skel[part] |= thin
    out[box] = skel
    return out


def cldice(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """Centreline Dice of Shit et al. (2021) as ``(cldice, tprec, tsens)``.

    ``Tprec = |S(P) & L| / |S(P)|``, ``Tsens = |S(L) & P| / |S(L)|`` with ``S`` the
    :func:`skeleton`, and ``clDice = 2 Tprec Tsens / (Tprec + Tsens)`` (0 when both are 0).
    ``S(X)`` is empty exactly when ``X`` is; a 0/0 ratio is 1 when P and L are both empty
    and 0 otherwise.
    """
    pred, gt = _crop(pred, gt)
    return _cldice_of(pred, gt, skeleton(pred), skeleton(gt))


def _cldice_of(pred: np.ndarray, gt: np.ndarray, skel_pred: np.ndarray, skel_gt: np.ndarray
               ) -> tuple[float, float, float]:
    """:func:`cldice` from masks and their skeletons."""
    if not pred.any() and not gt.any():
        return 1.0, 1.0, 1.0
    n_pred, n_gt = np.count_nonzero(skel_pred), np.count_nonzero(skel_gt)
    tprec = float(np.count_nonzero(skel_pred & gt) / n_pred) if n_pred else 0.0
    tsens = float(np.count_nonzero(skel_gt & pred) / n_gt) if n_gt else 0.0
    score = 2.0 * tprec * tsens / (tprec + tsens) if tprec + tsens else 0.0
    return score, tprec, tsens


# ----------------------------------------------------------------------------- distances


def _directed(source: np.ndarray, target: np.ndarray, spacing: Spacing) -> np.ndarray:
    if not target.any():
        return np.full(np.count_nonzero(source), np.inf)
    return ndimage.distance_transform_edt(~target, sampling=spacing)[source]


def nearest_distances(pred: np.ndarray, gt: np.ndarray, spacing_mm: Spacing = (1.0, 1.0, 1.0)
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(pred_to_gt, gt_to_pred)``: for every P voxel the distance (mm) to the nearest L
    voxel, and for every L voxel the distance to the nearest P voxel (0 inside the overlap;
    ``inf`` when the other mask is empty).

    Exact Euclidean distance transforms with ``sampling=spacing_mm``, run over the bounding
    box of P | L: it holds every voxel that is measured from or to, so cropping is exact.
    """
    pred, gt = _crop(pred, gt)
    return _directed(pred, gt, spacing_mm), _directed(gt, pred, spacing_mm)


def overlap_tolerance(pred_to_gt: np.ndarray, gt_to_pred: np.ndarray, d_mm: float) -> float:
    """Ot(d) = (TPM + TPR) / (TPM + TPR + FN + FP) from :func:`nearest_distances`.

    TPM / FP: predicted voxels within / beyond ``d_mm`` of L; TPR / FN: L voxels within /
    beyond ``d_mm`` of P ("within" is ``<= d``). 1 when both masks are empty.
    """
    total = pred_to_gt.size + gt_to_pred.size
    if not total:
        return 1.0
    limit = d_mm + TOLERANCE_MM
    hits = np.count_nonzero(pred_to_gt <= limit) + np.count_nonzero(gt_to_pred <= limit)
    return float(hits / total)


def chamfer(pred_to_gt: np.ndarray, gt_to_pred: np.ndarray) -> float:
    """Symmetric Chamfer L2 distance (mm) on the foreground voxel sets.

    The mean over P's voxels of the Euclidean (not squared) distance to the nearest L voxel
    and the same from L to P, averaged: ``(mean(pred_to_gt) + mean(gt_to_pred)) / 2``.
    0 when both masks are empty, ``inf`` when one is.
    """
    if not pred_to_gt.size and not gt_to_pred.size:
        return 0.0
    if not pred_to_gt.size or not gt_to_pred.size:
        return float("inf")
    return 0.5 * (float(pred_to_gt.mean()) + float(gt_to_pred.mean()))


def hd95(pred: np.ndarray, gt: np.ndarray, spacing_mm: Spacing = (1.0, 1.0, 1.0)) -> float:
    """95th-percentile Hausdorff distance (mm), MONAI's ``compute_hausdorff_distance``.

    Surfaces are the boundary voxels (foreground with a face neighbour outside). For each
    direction the 95th percentile (linear interpolation) of the distances from one surface's
    voxels to the nearest voxel of the other is taken; HD95 is the larger of the two.
    0 when both masks are empty, ``inf`` when one is.
    """
    pred, gt = _crop(pred, gt)
    if not pred.any() or not gt.any():
        return 0.0 if not pred.any() and not gt.any() else float("inf")
    with warnings.catch_warnings():  # MONAI 1.6 warns about its own deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(
            torch.from_numpy(pred[None, None]), torch.from_numpy(gt[None, None]),
            include_background=True, percentile=95, spacing=[float(s) for s in spacing_mm],
        )
    return float(value)


# ----------------------------------------------------------------------------- topology


def components(mask: np.ndarray) -> int:
    """Number of 26-connected foreground components (Betti-0)."""
    return int(ndimage.label(_mask(mask), CONNECTIVITY_26)[1])


# ----------------------------------------------------------------------------- centrelines


def _depth(mask: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Euclidean distance (mm) of every voxel to the nearest background voxel centre (the
    outside of the array counts as background)."""
    depth = np.zeros(mask.shape)
    if mask.any():
        box = ndimage.find_objects(mask.view(np.uint8))[0]
        padded = np.pad(mask[box], 1)
        depth[box] = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return depth


def _length_weights(points: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Half the length of each point's edges in the minimum spanning tree of the
    26-neighbour graph (mm); an isolated point stands for one mean voxel size."""
    weights = np.zeros(len(points))
    if len(points) > 1:
        tree = cKDTree(points)
        reach = 1.01 * float(np.linalg.norm(spacing))
        graph = tree.sparse_distance_matrix(tree, reach, output_type="coo_matrix")
        edges = minimum_spanning_tree(graph.tocsr()).tocoo()
        np.add.at(weights, edges.row, edges.data / 2)
        np.add.at(weights, edges.col, edges.data / 2)
    weights[weights == 0] = float(np.mean(spacing))
    return weights


def skeleton_centerlines(mask: np.ndarray, grid: VolumeGrid | None = None,
                         skel: np.ndarray | None = None) -> Centerlines:
    """Centreline samples of a mask: its :func:`skeleton` voxels (``skel`` when given) in
    LPS mm (voxel index in mm without a grid), the distance transform there as radius, and
    minimum-spanning-tree length weights."""
    mask = _mask(mask)
    skel = skeleton(mask) if skel is None else skel
    affine = grid.affine if grid is not None else np.eye(4)
    spacing = grid.spacing_mm if grid is not None else (1.0, 1.0, 1.0)
    index = np.argwhere(skel)
    points = index @ affine[:3, :3].T + affine[:3, 3]
    radii = _depth(mask, spacing)[skel]
    return Centerlines(points, radii, _length_weights(points, spacing))


def _nearest(source: Centerlines, target: Centerlines) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from each source sample to the nearest target sample, and its index."""
    if not len(target.points):
        return np.full(len(source.points), np.inf), np.zeros(len(source.points), int)
    distance, index = cKDTree(target.points).query(source.points)
    return np.asarray(distance, float), np.asarray(index, int)


def _weighted_fraction(weights: np.ndarray, hit: np.ndarray) -> float:
    return float(weights[hit].sum() / weights.sum())


def centerline_scores(pred: Centerlines, truth: Centerlines, tolerance_mm: float = 1.0
                      ) -> dict[str, float]:
    """Centreline metrics of predicted against true samples, keyed

    - ``cl_precision_1mm``: length fraction of the predicted centreline within
      ``tolerance_mm`` of the true one; ``cl_recall_1mm``: the same from truth to prediction;
    - ``cl_median_mm``: median of all nearest-sample distances, both directions pooled;
    - ``radius_error_mm``: median ``|r_pred - r_true|`` over predicted samples within
      ``tolerance_mm`` of the truth, against the nearest true sample (NaN when none is);
    - ``length_error_pct``: ``100 (length_pred - length_true) / length_true``.

    Both empty: perfect scores (1, 0); one empty: 0 overlap and ``inf`` distances.
    """
    if not len(pred.points) and not len(truth.points):
        return {"cl_precision_1mm": 1.0, "cl_recall_1mm": 1.0, "cl_median_mm": 0.0,
                "radius_error_mm": 0.0, "length_error_pct": 0.0}
    limit = tolerance_mm + TOLERANCE_MM
    to_truth, match = _nearest(pred, truth)
    to_pred, _ = _nearest(truth, pred)
    close = to_truth <= limit
    radius = np.abs(pred.radii[close] - truth.radii[match[close]])
    length = (100.0 * (pred.length_mm - truth.length_mm) / truth.length_mm
              if len(truth.points) else float("inf"))
    return {
        "cl_precision_1mm": _weighted_fraction(pred.weights, close) if close.size else 0.0,
        "cl_recall_1mm": _weighted_fraction(truth.weights, to_pred <= limit)
        if to_pred.size else 0.0,
        "cl_median_mm": float(np.median(np.concatenate([to_truth, to_pred]))),
        "radius_error_mm": float(np.median(radius)) if radius.size else float("nan"),
        "length_error_pct": float(length),
    }


# ----------------------------------------------------------------------------- all at once


def evaluate(pred: np.ndarray, gt: np.ndarray, pred_grid: VolumeGrid | None = None,
             gt_grid: VolumeGrid | None = None, centerlines: Centerlines | None = None
             ) -> dict[str, float]:
    """All metrics of P against L, keyed ``dice, iou, cldice, tprec, tsens, ot_1mm, ot_2mm,
    chamfer_mm, hd95_mm, components_pred, components_gt, betti0_error`` and the centreline
    keys of :func:`centerline_scores`.

    With both grids, ``pred`` is first resampled onto ``gt_grid`` (:func:`resample_to`);
    with one grid, it is the grid of both; with none, voxels are 1 mm cubes. The true
    centrelines are ``centerlines`` (LPS mm) when given, else L's skeleton. Distances may
    be ``inf`` (see the module notes on empty masks); component counts are ints and
    ``betti0_error = |components_pred - components_gt|``.
    """
    if pred_grid is not None and gt_grid is not None:
        pred = resample_to(pred, pred_grid, gt_grid)
    grid = gt_grid if gt_grid is not None else pred_grid
    if grid is not None and np.shape(gt) != tuple(grid.shape):
        raise bad_input("gt", f"shape {np.shape(gt)} does not match its grid {grid.shape}")
    pred, gt = _mask(pred), _mask(gt)
    box = _crop_box(pred, gt)  # every voxel metric below is unchanged by the crop
    skel_pred, skel_gt = skeleton(pred), skeleton(gt)
    truth = centerlines if centerlines is not None else skeleton_centerlines(gt, grid, skel_gt)
    lines = centerline_scores(skeleton_centerlines(pred, grid, skel_pred), truth)
    pred, gt, skel_pred, skel_gt = (v[box] for v in (pred, gt, skel_pred, skel_gt))
    spacing = grid.spacing_mm if grid is not None else (1.0, 1.0, 1.0)
    pred_to_gt, gt_to_pred = nearest_distances(pred, gt, spacing)
    score, tprec, tsens = _cldice_of(pred, gt, skel_pred, skel_gt)
    n_pred, n_gt = components(pred), components(gt)
    return {
        "dice": dice(pred, gt),
        "iou": iou(pred, gt),
        "cldice": score,
        "tprec": tprec,
        "tsens": tsens,
        "ot_1mm": overlap_tolerance(pred_to_gt, gt_to_pred, 1.0),
        "ot_2mm": overlap_tolerance(pred_to_gt, gt_to_pred, 2.0),
        "chamfer_mm": chamfer(pred_to_gt, gt_to_pred),
        "hd95_mm": hd95(pred, gt, spacing),
        "components_pred": n_pred,
        "components_gt": n_gt,
        "betti0_error": abs(n_pred - n_gt),
        **lines,
    }
