"""Grid placement: the placed grid holds a tree that lies off the isocenter, and no more."""

import numpy as np
import pytest

from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry, VolumeGrid
from sdfcar.physics.hull import threshold_silhouette
from sdfcar.physics.placement import MARGIN_MM, placed_grid
from sdfcar.synthetic.phantom import label_volume
from sdfcar.synthetic.simulate import simulate_case

#: A tree 15-35 mm off the isocenter along every axis, as a heart lies in a real run.
OFF_CENTRE = VolumeGrid((128, 128, 128), (0.8, 0.8, 0.8), (15.0, -35.0, 20.0))


@pytest.fixture(scope="module")
def offset_tree():
    tree = label_volume("lca", 0, VolumeGrid())  # drawn on the isocenter's grid: moved
    views = simulate_case(tree, OFF_CENTRE, CaseGeometry(REFERENCE_VIEWS, OFF_CENTRE)).views
    masks = [threshold_silhouette(view, 0.05, 4.0)[0] for view in views]
    return OFF_CENTRE.voxel_centers()[tree > 0], masks


def _inside(grid: VolumeGrid, points: np.ndarray, margin_mm: float) -> np.ndarray:
    index = grid.lps_to_index(points)
    room = margin_mm / np.asarray(grid.spacing_mm)
    return np.all((index >= room) & (index <= np.asarray(grid.shape) - 1 - room), axis=1)


def test_the_placed_grid_holds_the_whole_tree(offset_tree):
    points, masks = offset_tree
    assert not _inside(VolumeGrid(), points, 0.0).all()  # the default grid cuts it
    placement = placed_grid(REFERENCE_VIEWS, masks)
    assert _inside(placement.grid, points, MARGIN_MM / 2).all()
    assert placement.grid.spacing_mm == (0.8, 0.8, 0.8)
    record = placement.to_dict()
    assert "visual hull" in record["rule"] and len(record["hull_box_mm"]) == 2


def test_the_placed_grid_is_not_much_larger_than_the_tree(offset_tree):
    points, masks = offset_tree
    grid = placed_grid(REFERENCE_VIEWS, masks).grid
    extent = np.asarray(grid.shape) * np.asarray(grid.spacing_mm)
    tree_extent = np.ptp(points, axis=0)
    assert np.all(extent <= tree_extent + 2 * MARGIN_MM + 30.0), (extent, tree_extent)


def test_views_that_share_nothing_keep_the_default_grid():
    first = np.zeros(REFERENCE_VIEWS[0].detector_shape, bool)
    second = np.zeros(REFERENCE_VIEWS[1].detector_shape, bool)
    first[:20, :20] = True  # a corner of view 1 against nothing in view 2
    placement = placed_grid(REFERENCE_VIEWS, (first, second))
    assert placement.grid == VolumeGrid() and placement.hull_box_mm is None
    assert "default grid" in placement.rule
