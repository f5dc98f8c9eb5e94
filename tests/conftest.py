"""Shared fixtures: a small simulated case (a bent 2 mm tube) that every adapter can use."""

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from sdfcar.io.case import Case, write_case
from sdfcar.geometry import CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.io.images import write_volume
from sdfcar.synthetic.simulate import project_label

SMALL_GRID = VolumeGrid((48, 48, 48), (1.0, 1.0, 1.0))
SMALL_VIEWS = (ViewGeometry(30, 0, 1000, 750, (96, 96), (0.7, 0.7)),
               ViewGeometry(0, 30, 1000, 750, (96, 96), (0.7, 0.7)))
SMALL_GEOMETRY = CaseGeometry(SMALL_VIEWS, SMALL_GRID)


@pytest.fixture(scope="session")
def arc_case() -> tuple[np.ndarray, list[np.ndarray]]:
    """A 2 mm tube along a bent arc, 48^3 at 1 mm, and its two 96^2 views 41 degrees apart."""
    t = np.linspace(0.0, np.pi, 400)
    centre = np.stack([15 * np.cos(t), 5 * np.sin(2 * t), 15 * np.sin(t) - 7], axis=-1)
    distance, _ = cKDTree(centre).query(SMALL_GRID.voxel_centers().reshape(-1, 3))
    label = (distance.reshape(SMALL_GRID.shape) <= 2.0).astype(np.uint8)
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
