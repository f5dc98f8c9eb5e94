"""Outputs on a finer grid than the fit's: the grid, and a method's occupancy on it."""

import numpy as np
import pytest

from sdfcar.errors import InputError
from sdfcar.geometry import VolumeGrid
from sdfcar.methods.base import Reconstruction
from sdfcar.pipeline.postprocess import on_grid, output_grid

GRID = VolumeGrid((8, 10, 6), (0.8, 0.8, 0.8), (1.0, -2.0, 3.0))


def test_output_grid_refines_by_a_whole_number():
    assert output_grid(GRID, None) is GRID
    fine = output_grid(GRID, 0.4)
    assert fine.shape == (16, 20, 12) and fine.spacing_mm == (0.4, 0.4, 0.4)
    assert fine.center_mm == GRID.center_mm
    assert output_grid(GRID, 0.8 / 3).shape == (24, 30, 18)
    for bad in (0.3, 1.6, 0.0, -0.4):
        with pytest.raises(InputError, match=r"output_spacing_mm \(--output-spacing\): "
                                             "expected the grid's spacing"):
            output_grid(GRID, bad)


def test_occupancy_without_a_model_is_interpolated_and_a_model_is_evaluated():
    occupancy = np.zeros(GRID.shape, np.float32)
    occupancy[2:6, 3:7, 1:5] = 1.0
    fine_grid = output_grid(GRID, 0.4)
    fine = on_grid(Reconstruction(occupancy), GRID, fine_grid)
    assert fine.occupancy.shape == fine_grid.shape and fine.sdf is None
    # Each coarse voxel's four sub-voxels per axis sit at +-1/4 voxel: inside a block the
    # value is 1, at its faces half way, and the total is kept.
    assert np.allclose(fine.occupancy[6:10, 8:12, 4:8], 1.0)
    assert np.isclose(fine.occupancy.sum() / 8, occupancy.sum(), rtol=0.01)
    calls = []

    def model(grid):
        calls.append(grid)
        return np.ones(grid.shape, np.float32), -np.ones(grid.shape, np.float32)

    evaluated = on_grid(Reconstruction(occupancy, None, {"a": 1}, model), GRID, fine_grid)
    assert calls == [fine_grid] and evaluated.occupancy.all() and evaluated.statistics == {"a": 1}
    assert on_grid(Reconstruction(occupancy), GRID, GRID).occupancy is occupancy


def test_config_carries_the_output_spacing():
    from sdfcar.config import build_config

    assert build_config().output_spacing_mm is None
    assert build_config(overrides=["output_spacing_mm=0.4"]).output_spacing_mm == 0.4
    assert build_config(output_spacing_mm=1).output_spacing_mm == 1.0
    with pytest.raises(InputError, match="output_spacing_mm: expected a number"):
        build_config(overrides=["output_spacing_mm=fine"])
    with pytest.raises(InputError, match="output_spacing_mm: expected a positive value"):
        build_config(output_spacing_mm=-0.4)
    # The same check for every setting that is a number when given (field.lr_encoding).
    with pytest.raises(InputError, match="field.lr_encoding: expected a number"):
        build_config("field", ["field.lr_encoding=fast"])
