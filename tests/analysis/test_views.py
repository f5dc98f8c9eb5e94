"""Foreshortening, overlap and the working-view search against analytic values."""

import math

import numpy as np
import pytest

from sdfcar.analysis.views import OverlapPairs, foreshortening, working_view_map
from sdfcar.geometry import REFERENCE_VIEWS, ViewGeometry

VIEW = REFERENCE_VIEWS[0]


def straight(direction, length=20.0, centre=(0.0, 0.0, 0.0), count=41):
    direction = np.asarray(direction, float) / np.linalg.norm(direction)
    s = np.linspace(-length / 2, length / 2, count)
    return np.asarray(centre, float) + s[:, None] * direction


@pytest.mark.parametrize("direction", [(1, 0, 0), (1, 1, 0), (0.3, -1, 0.2), (0, 0.2, 1),
                                       (1, 2, 3)])
@pytest.mark.parametrize("view", REFERENCE_VIEWS, ids=["view1", "view2"])
def test_foreshortening_of_a_straight_vessel_is_analytic(direction, view):
    t = np.asarray(direction, float) / np.linalg.norm(direction)
    analytic = 1.0 - math.sqrt(1.0 - float(t @ view.beam_direction) ** 2)
    computed = foreshortening(straight(t), view)
    assert computed == pytest.approx(analytic, rel=0.01, abs=1e-4)


def test_foreshortening_off_the_central_ray_stays_close():
    """20 mm off the central ray the rays are ~1.5 degrees oblique: within 1.5 points."""
    t = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
    analytic = 1.0 - math.sqrt(1.0 - float(t @ VIEW.beam_direction) ** 2)
    assert abs(foreshortening(straight(t, centre=(0, 0, 20)), VIEW) - analytic) < 0.015


def test_working_view_search_finds_a_side_on_view():
    t = np.array([1.0, 2.0, 0.5])
    target = straight(t, length=30)
    pairs = OverlapPairs.build(target, np.full(len(target), 1.0), np.zeros((0, 3)), np.zeros(0))
    view_map = working_view_map(target, pairs, VIEW)
    best = view_map.best()
    assert len(best) == 3 and best[0]["foreshortening"] < 0.02
    for pick in best:  # the map's value is the analytic one at the chosen angles
        view = ViewGeometry(pick["primary_deg"], pick["secondary_deg"], 993.0, 757.06,
                            (512, 512), (0.278, 0.278))
        analytic = 1.0 - math.sqrt(1.0 - float(t @ view.beam_direction / np.linalg.norm(t)) ** 2)
        assert pick["foreshortening"] == pytest.approx(analytic, abs=1e-3)
        assert pick["beam_lps"] == pytest.approx(view.beam_direction, abs=1e-6)
        assert pick["image_up_lps"] == pytest.approx(-view.row_direction, abs=1e-6)
    separations = [max(abs(a["primary_deg"] - b["primary_deg"]),
                       abs(a["secondary_deg"] - b["secondary_deg"]))
                   for n, a in enumerate(best) for b in best[n + 1:]]
    assert min(separations) >= 10.0
    assert view_map.foreshortening.shape == (25, 17)


def test_overlap_of_two_parallel_vessels_depends_on_the_view():
    """Two vessels along z, 10 mm apart along y: superimposed in AP (beam along y), apart
    in a lateral view; where they touch (a junction) nothing counts."""
    a, b = straight((0, 0, 1)), straight((0, 0, 1), centre=(0, 10, 0))
    radii = np.full(len(a), 1.0)
    pairs = OverlapPairs.build(a, radii, b, radii)
    ap = ViewGeometry(0.0, 0.0, 1000.0, 750.0, (512, 512), (0.3, 0.3))
    lateral = ViewGeometry(90.0, 0.0, 1000.0, 750.0, (512, 512), (0.3, 0.3))
    assert pairs.overlap(ap) == pytest.approx(1.0)
    assert pairs.overlap(lateral) == 0.0
    touching = OverlapPairs.build(a, radii, straight((0, 0, 1), centre=(0, 2, 0)), radii)
    assert touching.overlap(ap) == 0.0
