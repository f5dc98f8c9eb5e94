"""Voxelising tubes: thin vessels stay joined in the label."""

import numpy as np

from sdfcar.geometry import VolumeGrid
from sdfcar.geometry.tubes import (Segment, centreline_voxels, rasterize_segments,
                                   tree_occupancy)
from sdfcar.metrics import components

GRID = VolumeGrid((32, 32, 32), (0.8, 0.8, 0.8))


def line(name, start, end, radius, parent=None, count=30):
    points = np.linspace(start, end, count)
    return Segment(name, points, np.full(count, radius), parent)


def test_a_thin_branch_stays_joined_to_its_parent():
    """A 1 mm trunk and a 0.35 mm branch leaving it diagonally between voxel centres: half
    inside, the branch falls apart; with the centreline's voxels the tree is one piece."""
    trunk = line("trunk", (-10.0, 0.0, 0.0), (10.0, 0.0, 0.0), 1.0)
    branch = line("branch", (0.0, 0.0, 0.0), (0.0, 9.0, 7.0), 0.35, parent="trunk")
    half_inside = rasterize_segments([trunk, branch], GRID, 2) >= 0.5
    label = tree_occupancy([trunk, branch], GRID, 2) >= 0.5
    assert components(half_inside) > 1
    assert components(label) == 1
    assert np.all(label >= half_inside)  # only voxels are added
    on_branch = centreline_voxels([branch], GRID)
    assert on_branch.sum() >= 11 and np.all(label[on_branch])  # ~11.4 mm at 0.8 mm voxels


def test_thick_tubes_are_their_partial_volume():
    trunk = line("trunk", (-10.0, 0.3, -0.2), (10.0, 0.3, -0.2), 1.5)
    np.testing.assert_array_equal(tree_occupancy([trunk], GRID, 2) >= 0.5,
                                  rasterize_segments([trunk], GRID, 2) >= 0.5)
    outside = line("outside", (-40.0, 0.0, 0.0), (-30.0, 0.0, 0.0), 1.0)
    assert not centreline_voxels([outside], GRID).any()  # off the grid: nothing, no error
