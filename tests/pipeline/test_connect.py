"""Tree selection: bridging fragments through the occupancy, keep-largest, none."""

import numpy as np
import pytest
from scipy import ndimage

from sdfcar.pipeline.connect import CONNECTIVITY_26, BridgeSettings, select_tree
from sdfcar.errors import InputError


def _components(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, CONNECTIVITY_26)[1])


@pytest.fixture
def broken_tube():
    """A straight tube along x cut by a 2-voxel gap of half-filled voxels, plus a speck."""
    occupancy = np.zeros((30, 12, 12), np.float32)
    occupancy[2:28, 5:7, 5:7] = 0.9
    occupancy[14:16, 5:7, 5:7] = 0.4  # the gap: below threshold but not empty
    occupancy[2, 1, 1] = 0.9  # a one-voxel speck far from the tube
    return occupancy


def test_bridge_joins_a_fragment_through_the_cheap_path(broken_tube):
    mask = broken_tube >= 0.5
    assert _components(mask) == 3
    selection = select_tree(mask, broken_tube, "bridge")
    assert _components(selection.label) == 1
    assert selection.components_before == 3
    assert len(selection.bridges) == 1 and selection.dropped_voxels == 1  # the speck
    added = selection.label & ~mask
    assert added.sum() == selection.bridges[0]["path_voxels"] - 2  # ends lie in the pieces
    assert np.all(broken_tube[added] == pytest.approx(0.4))  # through the gap, not around
    assert not selection.label[2, 1, 1]


def test_far_fragments_and_specks_are_dropped(broken_tube):
    broken_tube[14:16] = 0.0  # an empty 2-voxel gap costs about 2 ...
    near = select_tree(broken_tube >= 0.5, broken_tube, "bridge", BridgeSettings(max_gap=3.0))
    assert _components(near.label) == 1
    far = select_tree(broken_tube >= 0.5, broken_tube, "bridge", BridgeSettings(max_gap=1.0))
    assert far.bridges == [] and far.label.sum() == 12 * 4  # ... so only one half stays
    big_speck = select_tree(broken_tube >= 0.5, broken_tube, "bridge",
                            BridgeSettings(min_voxels=1, max_gap=10.0))
    assert big_speck.label[2, 1, 1] and len(big_speck.bridges) == 2


def test_fragments_join_through_other_fragments():
    occupancy = np.zeros((40, 8, 8), np.float32)
    for start in (2, 15, 28):  # three 10-voxel pieces, 3 empty voxels apart
        occupancy[start:start + 10, 3:5, 3:5] = 0.9
    occupancy[2:12, 3:6, 3:6] = 0.9  # the first piece is the largest
    selection = select_tree(occupancy >= 0.5, occupancy, "bridge", BridgeSettings(max_gap=3.5))
    assert _components(selection.label) == 1 and len(selection.bridges) == 2


def test_largest_and_none_modes(broken_tube):
    mask = broken_tube >= 0.5
    largest = select_tree(mask, broken_tube, "largest")
    assert _components(largest.label) == 1 and largest.label.sum() == 12 * 4
    assert largest.bridges == [] and largest.dropped_voxels == mask.sum() - 48
    untouched = select_tree(mask, broken_tube, "none")
    np.testing.assert_array_equal(untouched.label, mask)
    assert untouched.summary()["components_before_postprocess"] == 3
    assert select_tree(np.zeros((4, 4, 4)), np.zeros((4, 4, 4))).label.sum() == 0


def test_unknown_mode_is_refused(broken_tube):
    with pytest.raises(InputError, match="connectivity"):
        select_tree(broken_tube > 0.5, broken_tube, "biggest")
