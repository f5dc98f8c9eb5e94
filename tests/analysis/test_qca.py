"""QCA of analytic centreline trees: lengths, radii, tortuosity, angles and a stenosis."""

import math

import numpy as np
import pytest

from sdfcar.analysis.qca import reference_fit, vessel_qca
from sdfcar.analysis.summary import analyse, format_report
from sdfcar.analysis.tree import STEP_MM, CentrelineTree
from sdfcar.errors import InputError
from sdfcar.geometry import REFERENCE_VIEWS


def line(start, direction, length, step=0.1):
    direction = np.asarray(direction, float) / np.linalg.norm(direction)
    s = np.arange(0.0, length + step / 2, step)
    return np.asarray(start, float) + s[:, None] * direction, s


def record(name, parent, points, radii):
    return {"name": name, "parent": parent, "points": np.asarray(points).tolist(),
            "radii": np.broadcast_to(radii, (len(points),)).tolist()}


def analytic_tree():
    """A 60 mm root along x tapering 1.6 -> 1.2 mm, a straight 30 mm branch at 60 degrees
    from x leaving it at x = 20, and a quarter circle of radius 20 mm leaving it at x = 40."""
    trunk, s = line((-30, 0, 0), (1, 0, 0), 60)
    straight, _ = line((-10, 0, 0), (math.cos(math.pi / 3), math.sin(math.pi / 3), 0), 30)
    theta = np.linspace(0, math.pi / 2, 400)
    arc = np.stack([10 + 20 * np.sin(theta), np.zeros_like(theta),
                    20 - 20 * np.cos(theta)], axis=1)
    return [record("vessel7", None, trunk, 1.6 - 0.4 * s / 60),
            record("vessel2", "vessel7", straight, 1.0),
            record("vessel3", "vessel7", arc, 0.8)]


def test_tree_names_resampling_and_junctions():
    tree = CentrelineTree.from_record(analytic_tree())
    assert [v.name for v in tree.vessels] == ["vessel 1", "branch 1", "branch 2"]
    assert [v.source_name for v in tree.vessels] == ["vessel7", "vessel2", "vessel3"]
    assert [v.parent for v in tree.vessels] == [None, "vessel 1", "vessel 1"]
    for vessel in tree.vessels:
        steps = np.linalg.norm(np.diff(vessel.points, axis=0), axis=1)
        assert steps.max() <= STEP_MM + 1e-9 and np.ptp(steps) < 1e-3
    junctions = {j.child: j for j in tree.junctions}
    assert junctions["branch 1"].arc_mm == pytest.approx(20.0, abs=1e-6)
    assert junctions["branch 2"].arc_mm == pytest.approx(40.0, abs=1e-6)
    assert junctions["branch 2"].gap_mm == pytest.approx(0.0, abs=1e-6)
    topology = tree.topology()
    assert topology[1]["junction_mm"] == [-10.0, 0.0, 0.0]


def test_lengths_radii_tortuosity_and_angles():
    analysis = analyse(analytic_tree(), REFERENCE_VIEWS)
    rows = {row["vessel"]: row for row in analysis.rows}
    expected = {"vessel 1": 60.0, "branch 1": 30.0, "branch 2": 10 * math.pi}
    for name, length in expected.items():
        assert rows[name]["length_mm"] == pytest.approx(length, rel=0.01)
    trunk = rows["vessel 1"]
    assert trunk["radius_proximal_mm"] == pytest.approx(1.6 - 0.4 * 1 / 60, abs=0.01)
    assert trunk["radius_distal_mm"] == pytest.approx(1.2 + 0.4 * 1 / 60, abs=0.01)
    assert trunk["radius_mean_mm"] == pytest.approx(1.4, abs=0.005)
    assert trunk["radius_min_mm"] == pytest.approx(1.2, abs=0.005)
    assert trunk["tortuosity"] == pytest.approx(1.0, abs=1e-6)
    assert trunk["diameter_stenosis_pct"] == pytest.approx(0.0, abs=1.0)
    assert trunk["lesion_length_mm"] == 0.0 and trunk["lesion_start_mm"] is None
    assert rows["branch 2"]["tortuosity"] == pytest.approx(math.pi / 2 / math.sqrt(2), rel=0.01)
    angles = {b["branch"]: b for b in analysis.bifurcations}
    assert angles["branch 1"]["angle_distal_deg"] == pytest.approx(60.0, abs=0.5)
    assert angles["branch 1"]["angle_proximal_deg"] == pytest.approx(120.0, abs=0.5)
    # the quarter circle leaves tangentially and bends towards +z: its 5 mm arm's chord is
    # half of 5/20 rad off the trunk
    assert angles["branch 2"]["angle_distal_deg"] == pytest.approx(
        math.degrees(5 / 20 / 2), abs=0.5)
    assert angles["branch 1"]["angle_sibling_deg"] == {}  # 20 mm apart: two junctions


def test_branches_leaving_one_junction_get_their_angle_between_them():
    """A trifurcation: two branches leave a trunk along x 1 mm apart, at +60 and -45 degrees
    in the xy plane (105 degrees between them); a third 10 mm further on is no sibling."""
    trunk, _ = line((-30, 0, 0), (1, 0, 0), 60)
    up, _ = line((0, 0, 0), (math.cos(math.pi / 3), math.sin(math.pi / 3), 0), 20)
    down, _ = line((1, 0, 0), (1, -1, 0), 20)
    later, _ = line((11, 0, 0), (0, 0, 1), 20)
    analysis = analyse([record("trunk", None, trunk, 1.5), record("up", "trunk", up, 1.0),
                        record("down", "trunk", down, 1.0), record("later", "trunk", later, 1.0)],
                       REFERENCE_VIEWS)
    angles = {b["branch"]: b["angle_sibling_deg"] for b in analysis.bifurcations}
    assert angles["branch 1"] == {"branch 2": pytest.approx(105.0, abs=0.5)}
    assert angles["branch 2"] == {"branch 1": pytest.approx(105.0, abs=0.5)}
    assert angles["branch 3"] == {}
    section = analysis.record()["bifurcations"][0]["angle_sibling_deg"]
    assert section == {"branch 2": round(section["branch 2"], 3)}  # rounded in the record
    assert "branch 2 105 deg" in format_report(analysis)


def stenosed_profile(length=40.0, centre=20.0, plateau=6.0, shoulder=1.0):
    """A 3 mm vessel (tapering 3.2 -> 2.8 mm) whose diameter is halved over ``plateau`` mm,
    with cosine shoulders of ``shoulder`` mm each side."""
    points, s = line((5, -10, 3), (1, 2, -0.5), length)
    healthy = 3.2 - 0.4 * s / length
    distance = np.abs(s - centre) - plateau / 2  # <= 0 on the plateau
    depth = np.where(distance <= 0, 1.0,
                     np.where(distance < shoulder,
                              0.5 * (1 + np.cos(np.pi * np.clip(distance, 0, None) / shoulder)),
                              0.0))
    return points, healthy * (1 - 0.5 * depth) / 2


def test_synthetic_stenosis_is_found_measured_and_targeted():
    points, radii = stenosed_profile()
    analysis = analyse([record("v", None, points, radii)], REFERENCE_VIEWS)
    row = analysis.rows[0]
    # the MLD lies on the plateau (its distal end: the healthy vessel tapers); the lesion,
    # found where the diameter is below 70 % of the reference, is centred on it
    assert 17.0 <= row["mld_position_mm"] <= 23.0
    assert abs((row["lesion_start_mm"] + row["lesion_end_mm"]) / 2 - 20.0) <= 2.0
    assert row["diameter_stenosis_pct"] == pytest.approx(50.0, abs=10.0)
    assert row["mld_mm"] == pytest.approx(1.5, abs=0.1)
    assert row["reference_diameter_mm"] == pytest.approx(3.0, abs=0.05)
    assert row["lesion_length_mm"] == pytest.approx(6.0, abs=2.0)
    assert row["lesion_start_mm"] < 17.0 + 0.5 and row["lesion_end_mm"] > 23.0 - 0.5
    assert analysis.target.kind == "lesion" and analysis.target.vessel == "vessel 1"
    assert analysis.target.start_mm == pytest.approx(row["lesion_start_mm"] - 5.0)


def test_reference_fit_ignores_the_lesion():
    s = np.linspace(0, 40, 81)
    d = 3.2 - 0.01 * s
    d[(s > 15) & (s < 25)] *= 0.5
    intercept, slope = reference_fit(s, d)
    assert intercept == pytest.approx(3.2, abs=0.01) and slope == pytest.approx(-0.01, abs=1e-3)


def test_a_short_vessel_is_analysed_whole():
    points, _ = line((0, 0, 0), (0, 0, 1), 2.0)
    tree = CentrelineTree.from_record([record("v", None, points, 0.5)])
    row = vessel_qca(tree.vessels[0])
    assert row["length_mm"] == pytest.approx(2.0) and row["mld_mm"] == pytest.approx(1.0)


def test_bad_centrelines_name_the_field():
    with pytest.raises(InputError, match=r"^run.json: statistics.tree.centrelines"):
        CentrelineTree.from_record({"vessels": []}, "run.json: statistics.tree.centrelines")
    bad = [{"name": "v", "points": [[0, 0, 0], [1, 0, 0]], "radii": [1.0, -1.0]}]
    with pytest.raises(InputError, match=r"centrelines.vessels\[0\].radii"):
        CentrelineTree.from_record(bad)
    tree = CentrelineTree.from_record(analytic_tree())
    with pytest.raises(InputError, match="--vessel: no vessel 'LAD' \\(vessels: vessel 1"):
        tree.vessel("LAD")


def test_a_taper_into_the_tip_is_not_a_lesion():
    points, s = line((0, 0, 0), (0, 1, 0), 30)
    radii = np.where(s < 27, 1.5, 1.5 - 0.3 * (s - 27))
    row = vessel_qca(CentrelineTree.from_record([record("v", None, points, radii)]).vessels[0])
    assert row["diameter_stenosis_pct"] > 30 and row["mld_position_mm"] == pytest.approx(29.0)
    assert row["lesion_length_mm"] == 0.0 and row["severe_lesion_length_mm"] == 0.0


def test_record_is_plain_json_and_compact_keeps_the_table():
    import json

    from sdfcar.analysis.summary import compact, unavailable

    section = analyse(analytic_tree(), REFERENCE_VIEWS).record()
    assert json.loads(json.dumps(section, allow_nan=False)) == section
    assert len(section["working_views"]["foreshortening"]) == 25  # primary -60..60, 5 deg
    short = compact(section)
    assert short["vessels"] == section["vessels"] and len(short["bifurcations"]) == 2
    assert set(short["working_views"]) == {"vessel", "target", "segment_mm", "best"}
    assert compact(unavailable("voxel")) == unavailable("voxel")
