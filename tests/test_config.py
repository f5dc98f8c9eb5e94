"""Presets, typed settings sections and overrides: every key checked with a one-line error."""


import pytest

from sdfcar.config import DEFAULT_PRESET, PRESETS, build_config
from sdfcar.errors import InputError



def test_presets_load_and_every_field_can_be_overridden():
    assert set(PRESETS) == {"sdf-tree", "tubes", "field", "voxel", "neca", "sdfcar-paper"}
    assert build_config().method == "tree" and build_config().preset == DEFAULT_PRESET
    tubes = build_config("tubes", ["tubes.trees=2"])
    assert (tubes.method, tubes.tubes.trees, tubes.tubes.step_mm) == ("tubes", 2, 0.8)
    paper = build_config("sdfcar-paper").field
    assert (paper.network.levels, paper.network.hidden_layers, paper.network.hidden_width) == (
        16, 8, 256)
    assert (paper.alpha, paper.iterations, paper.optimizer, paper.lr) == (50.0, 5000, "adamw", 1e-4)
    assert (paper.loss.projection, paper.loss.sdf2d, paper.sdf2d_mode) == (0.5, 1.0, "thresholded")
    neca = build_config("neca")
    assert neca.field.network.mode == "occupancy" and neca.field.loss.sdf2d == 0
    assert neca.hull.mode == "off" and neca.prior == "none"
    field = build_config("field")
    assert (field.method, field.prior, field.voxel.iterations) == ("field", "voxel", 3000)
    custom = build_config("field", ["field.network.levels=4", "field.loss.eikonal=0.5",
                                      "hull.mode=off"], iterations=7)
    assert (custom.field.network.levels, custom.field.loss.eikonal, custom.hull.mode,
            custom.field.iterations) == (4, 0.5, "off", 7)
    assert build_config("voxel", iterations=9).voxel.iterations == 9


@pytest.mark.parametrize("overrides,message", [
    (["field.depth=3"], "field.depth: unknown setting"),
    (["field.alpha=fast"], "field.alpha: expected a number"),
    (["field.optimizer=sgd"], "field.optimizer: expected one of adam, adamw"),
    (["field.iterations=0"], "field.iterations: expected a positive value"),
    (["levels"], "--set: expected KEY=VALUE"),
    (["prior=tubes"], "prior: the field method takes a prior from one of none, voxel"),
    (["method=voxels"], "method: expected one of voxel, field, tubes"),
])
def test_bad_overrides_name_the_setting(overrides, message):
    with pytest.raises(InputError, match=message):
        build_config("field", overrides)


def test_the_former_default_preset_name_says_what_it_became():
    with pytest.raises(InputError, match="'default' is now 'sdf-tree'; the former default is "
                                         "'field'"):
        build_config("default")
