"""Shared fixtures: a small simulated case (a bent 2 mm tube) that every adapter can use."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from sdfcar.config import ReconstructionConfig
from sdfcar.geometry import CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.io.case import Case, write_case
from sdfcar.io.images import write_volume
from sdfcar.pipeline.inputs import from_arrays
from sdfcar.pipeline.record import RunRecord
from sdfcar.pipeline.run import Result
from sdfcar.synthetic.simulate import project_label
from sdfcar.synthetic.xa import CineOptions, simulate_run, write_xa

SMALL_GRID = VolumeGrid((48, 48, 48), (1.0, 1.0, 1.0))
SMALL_VIEWS = (ViewGeometry(30, 0, 1000, 750, (96, 96), (0.7, 0.7)),
               ViewGeometry(0, 30, 1000, 750, (96, 96), (0.7, 0.7)))
SMALL_GEOMETRY = CaseGeometry(SMALL_VIEWS, SMALL_GRID)


def arc_label(grid: VolumeGrid) -> np.ndarray:
    """A 2 mm tube along a bent arc, voxelised on ``grid`` (uint8)."""
    t = np.linspace(0.0, np.pi, 400)
    centre = np.stack([15 * np.cos(t), 5 * np.sin(2 * t), 15 * np.sin(t) - 7], axis=-1)
    distance, _ = cKDTree(centre).query(grid.voxel_centers().reshape(-1, 3))
    return (distance.reshape(grid.shape) <= 2.0).astype(np.uint8)


@pytest.fixture(scope="session")
def arc_case() -> tuple[np.ndarray, list[np.ndarray]]:
    """The arc tube on the small grid (48^3 at 1 mm) and its two 96^2 views 41 degrees apart,
    projected from that grid (an inverse crime: for plumbing, not quality)."""
    label = arc_label(SMALL_GRID)
    return label, project_label(label, SMALL_GRID, SMALL_VIEWS)


@pytest.fixture(scope="session")
def small_case_dir(arc_case, tmp_path_factory) -> Path:
    """The arc case as a case folder (geometry.json, view1/2.nii.gz) with ``gt.nii.gz`` beside
    it in the parent folder. Treat it as read-only: it is shared by the whole session."""
    root = tmp_path_factory.mktemp("small_case")
    label, views = arc_case
    write_case(root / "case", Case(SMALL_GEOMETRY, tuple(views)))
    write_volume(root / "gt.nii.gz", label, SMALL_GRID)
    return root / "case"


def xa_pair(folder: Path, arc_case, bits: int):
    """The arc seen by two 6-frame 96^2 cine runs (ECG marks, Beer-Lambert contrast,
    anatomy, noise) written as ``folder/view1.dcm``, ``view2.dcm``, and a
    ``geometry.json`` giving the small grid: (runs, paths, geometry file)."""
    _, integrals = arc_case
    runs = [simulate_run(image, view, CineOptions(frames=6, bits=bits), seed=index)
            for index, (image, view) in enumerate(zip(integrals, SMALL_VIEWS))]
    paths = [write_xa(folder / f"view{index}.dcm", run) for index, run in enumerate(runs, 1)]
    overrides = folder / "geometry.json"
    overrides.write_text(json.dumps({"volume": SMALL_GRID.to_dict()}))
    return runs, paths, overrides


TUBE_RADIUS_MM = 3.0
TUBE_AXIS = np.array([1.0, 0.3, 0.2]) / np.linalg.norm([1.0, 0.3, 0.2])


def tube_distance(points, center):
    """Distance of LPS points to a straight tube's axis (through ``center`` along TUBE_AXIS)."""
    offset = np.asarray(points, float) - center
    return np.linalg.norm(offset - np.outer(offset @ TUBE_AXIS, TUBE_AXIS), axis=-1)


def make_result(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), empty=False):
    """A hand-made :class:`Result` (a straight tube on an oblique 40^3 grid, random views)
    and the tube's centre, for writer tests; the record holds NaN, inf and numpy values."""
    grid = VolumeGrid((40, 40, 40), (0.5, 0.5, 0.5), (4.0, -3.0, 7.0), direction)
    center = np.asarray(grid.center_mm) + [0.4, -0.3, 0.2]
    sdf = (tube_distance(grid.voxel_centers().reshape(-1, 3), center).reshape(grid.shape)
           - TUBE_RADIUS_MM).astype(np.float32)
    if empty:
        sdf = np.abs(sdf) + 1.0
    label = (sdf < 0).astype(np.uint8)
    rng = np.random.default_rng(0)
    targets = [rng.random((32, 40)).astype(np.float32) * 4 for _ in range(2)]
    reprojections = [t + rng.normal(0, 0.2, t.shape).astype(np.float32) for t in targets]
    config = ReconstructionConfig()
    record = RunRecord(
        preset="field", method="field", prior="voxel", seed=0, device="cpu",
        target="integral", silhouettes="thresholded", config=config.to_dict(), inputs={},
        vessel_voxels=np.int64(label.sum()), components=1, components_before_postprocess=1,
        tree={}, reprojection=[], seconds={"method": 1.0},
        statistics={"field": {"loss_curve": [1.0, float("nan"), 0.5], "best": float("inf"),
                              "dice": np.float32(0.5)}})
    geometry = CaseGeometry((ViewGeometry(0, 0, 1000, 750, (32, 40), (0.5, 0.5)),
                             ViewGeometry(90, 0, 1000, 750, (32, 40), (0.5, 0.5))), grid)
    return Result(label, sdf, 1.0 / (1.0 + np.exp(4.0 * sdf)), grid, targets, reprojections,
                  config, record, from_arrays(targets, geometry)), center


def bad_views(kind: str, views):
    """Copies of ``views`` broken one way: ``size`` (view 1 cropped to 90 rows), ``empty``
    (view 2 all zero) or ``nan`` (a NaN pixel in view 1)."""
    views = [v.copy() for v in views]
    if kind == "size":
        views[0] = views[0][:90]
    elif kind == "empty":
        views[1][:] = 0.0
    elif kind == "nan":
        views[0][3, 3] = np.nan
    return views
