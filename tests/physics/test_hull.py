"""Visual hull and silhouettes: the hull holds the whole tree, with and without noise."""

import numpy as np
import pytest

from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry
from sdfcar.physics.hull import noise_sigma, threshold_silhouette, visual_hull
from sdfcar.synthetic.phantom import label_volume
from sdfcar.synthetic.simulate import NoiseModel, simulate_case

GEOMETRY = CaseGeometry(REFERENCE_VIEWS)


@pytest.fixture(scope="module")
def tree():
    return label_volume("lca", 0, GEOMETRY.volume)


def test_noise_estimate_recovers_gaussian_sigma(tree):
    clean = simulate_case(tree, GEOMETRY.volume, GEOMETRY).views[0]
    assert noise_sigma(clean) < 0.01
    noisy = simulate_case(tree, GEOMETRY.volume, GEOMETRY, noise=NoiseModel("gaussian", 0.05),
                          seed=1).views[0]
    assert noise_sigma(noisy) == pytest.approx(0.05 * clean.max(), rel=0.1)


@pytest.mark.parametrize("level", [0.0, 0.05])
def test_visual_hull_holds_every_vessel_voxel(tree, level):
    noise = NoiseModel("gaussian", level) if level else None
    views = simulate_case(tree, GEOMETRY.volume, GEOMETRY, noise=noise, seed=2).views
    masks = [threshold_silhouette(view, 0.05, 4.0)[0] for view in views]
    hull = visual_hull(REFERENCE_VIEWS, GEOMETRY.volume, masks, margin_px=2)
    assert np.all(hull[tree > 0])
    # Two views leave ghosts, but the hull stays a small part of the grid.
    assert hull.mean() < 0.06
