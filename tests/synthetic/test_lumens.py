"""The second phantom generator: deterministic, Murray radii, thin tips, elliptical lumens,
a stenosis, one connected piece."""

import json

import numpy as np
import pytest
from scipy import ndimage

from sdfcar.centerlines import parse
from sdfcar.errors import InputError
from sdfcar.geometry import VolumeGrid
from sdfcar.synthetic.lumens import FIT_MM, generate_lumens


@pytest.fixture(scope="module")
def tree():
    return generate_lumens(0)


def cross_section(tree, vessel, index, spacing=0.04, size=121):
    """The lumen's inside on a plane through sample ``index`` spanned by its major and
    minor directions (rows: major axis, columns: minor axis)."""
    t, major = vessel.tangents[index], vessel.majors[index]
    axes = np.stack([major, np.cross(t, major), t], axis=1)
    grid = VolumeGrid((size, size, 2), (spacing, spacing, 0.01),
                      tuple(vessel.points[index] + 0.005 * t), tuple(axes.ravel()))
    return tree.occupancy(grid)[:, :, 0] > 0


def test_same_seed_same_tree_and_other_seed_another(tree):
    again = generate_lumens(0)
    assert json.dumps(tree.centerlines()) == json.dumps(again.centerlines())
    coarse = VolumeGrid((64, 64, 64), (1.6, 1.6, 1.6))
    assert np.array_equal(tree.label(coarse), again.label(coarse))
    assert json.dumps(generate_lumens(1).centerlines()) != json.dumps(tree.centerlines())
    with pytest.raises(InputError, match="seed"):
        generate_lumens(-1)


def test_radii_follow_murray_and_reach_sub_voxel_tips(tree):
    by_name = {v.name: v for v in tree.vessels}
    for parent in tree.vessels:
        children = [v for v in tree.vessels if v.parent == parent.name]
        if children:
            assert parent.radii[-1] ** 3 == pytest.approx(
                sum(c.radii[0] ** 3 for c in children), rel=1e-9)
            assert all(np.allclose(c.points[0], parent.points[-1]) for c in children)
    tips = [v.radii[-1] for v in tree.vessels if not any(c.parent == v.name
                                                          for c in tree.vessels)]
    assert 0.25 <= min(tips) and max(tips) <= 0.4
    assert 1.7 <= by_name["T"].radii[0] <= 2.0
    points = np.concatenate([v.points for v in tree.vessels])
    assert np.abs(points).max() <= FIT_MM + 1e-6
    vessels = parse(tree.centerlines())
    assert min(r.min() for _, r in vessels) < 0.4


def test_lumen_cross_section_is_an_ellipse(tree):
    root = tree.vessels[0]
    index = len(root.points) // 5  # away from the stenosis and the bifurcation
    section = cross_section(tree, root, index)
    centre = section.shape[0] // 2
    major, minor = section[:, centre].sum(), section[centre, :].sum()
    assert major / minor == pytest.approx(root.aspect, rel=0.08)
    assert major / minor > 1.25
    area = section.sum() * 0.04**2
    assert area == pytest.approx(np.pi * root.radii[index] ** 2, rel=0.05)


def test_stenosis_narrows_the_lumen_by_half_or_more(tree):
    name, index, depth = tree.stenosis
    vessel = next(v for v in tree.vessels if v.name == name)
    assert 0.5 <= depth <= 0.7
    before = index - 60  # 6 mm upstream
    assert vessel.radii[index] / vessel.radii[before] == pytest.approx(1 - depth, abs=0.03)
    narrow = cross_section(tree, vessel, index).sum()
    wide = cross_section(tree, vessel, before).sum()
    assert narrow / wide == pytest.approx((1 - depth) ** 2, rel=0.15)


def test_tree_is_one_connected_piece(tree):
    # sub-points every 0.27 mm: closer than the thinnest tip radius, so nothing can fall
    # between them
    occupancy = tree.occupancy(VolumeGrid(), supersample=3)
    assert ndimage.label(occupancy > 0, np.ones((3, 3, 3)))[1] == 1
