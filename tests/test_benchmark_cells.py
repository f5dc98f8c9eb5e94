"""The realistic benchmark suites' cells: names, selection, presets, resumption, geometry."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import harness  # noqa: E402
import realistic  # noqa: E402
import run as runner  # noqa: E402
from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry  # noqa: E402


def test_realistic_suite_covers_kinds_conditions_and_every_preset(monkeypatch):
    monkeypatch.setattr("sdfcar.config.PRESETS", ("field", "tubes", "sdf-tree"))
    cells = realistic.realistic_cells(iterations={"tubes": 7})
    names = [cell.name for cell in cells]
    assert len(names) == len(set(names))
    cases = {cell.case for cell in cells}
    assert {f"lca{s}" for s in range(4)} | {f"rca{s}" for s in range(4)} | {"lumens0"} == cases
    assert {cell.preset for cell in cells} == {"field", "tubes", "sdf-tree", "ceiling"}
    assert sum(cell.preset == "ceiling" for cell in cells) == len(cases)
    assert all(cell.phantom_supersample == 2 for cell in cells)
    assert "realistic_rca3_tubes_poisson1700_fine2_it7" in names
    assert "realistic_lumens0_sdf-tree_xa_fine2" in names
    assert "realistic_lca0_field_noise0.05_fine2" in names
    reduced = next(cell for cell in cells if cell.iterations == 7)
    assert "extrapolated" in reduced.note


def test_matrix_names_each_error_and_selection_keeps_the_ceiling(tmp_path):
    cells = realistic.matrix_cells(["voxel"])
    names = {cell.name for cell in cells}
    for tag in ("sep20", "rot0.5", "rotsec3", "iso5", "resp2", "noise0.1"):
        assert f"robustness-matrix_lca0_voxel_{tag}_fine2" in names
    assert "robustness-matrix_lca0_voxel_fine2" in names
    everything = runner.suite_cells(["realistic", "robustness-matrix"], ["voxel"], {})
    chosen = harness.select_cells(everything, ["tubes"], ["rca1"])
    assert [cell.name for cell in chosen] == ["realistic_rca1_ceiling_fine2"]
    (tmp_path / f"{everything[0].name}.json").write_text("{}")
    todo = harness.pending(everything, tmp_path, limit=2)
    assert [cell.name for cell in todo] == [c.name for c in everything[1:3]]
    spec = json.dumps(dataclasses.asdict(cells[5]))
    assert harness.cell_from_spec(spec) == cells[5]


def test_iterations_option_is_checked():
    assert runner._iterations("neca=100") == ("neca", 100)
    with pytest.raises(Exception, match="PRESET=N"):
        runner._iterations("neca=0")


def test_errors_go_to_the_fit_geometry_only():
    geometry = CaseGeometry(REFERENCE_VIEWS)
    cell = harness.Cell("robustness-matrix", "lca", 0, "voxel", rotation_error_deg=2.0,
                        rotation_secondary_error_deg=1.0, isocenter_error_mm=3.0)
    fit = realistic.fit_geometry(cell, geometry)
    assert fit.views[0] == geometry.views[0] and geometry.views == REFERENCE_VIEWS
    second = fit.views[1]
    assert second.primary_angle_deg == pytest.approx(REFERENCE_VIEWS[1].primary_angle_deg + 2)
    assert second.secondary_angle_deg == pytest.approx(
        REFERENCE_VIEWS[1].secondary_angle_deg + 1)
    magnification = second.source_to_detector_mm / second.source_to_isocenter_mm
    assert second.detector_offset_mm[1] == pytest.approx(3.0 * magnification)


def test_ceiling_label_thresholds_the_block_average():
    fine = np.zeros((4, 4, 4), dtype=bool)
    fine[:2, :2, :2] = True  # a full block
    fine[2:, 2:, 2:][0] = True  # half a block
    fine[0, 2, 2] = True  # one eighth
    ceiling = realistic.ceiling_label(fine)
    assert ceiling[0, 0, 0] and ceiling[1, 1, 1] and not ceiling[0, 1, 1]


def _fake_record(cell, dice):
    scores = {"dice": dice, "cldice": dice, "ot_1mm": dice, "cl_precision_1mm": dice,
              "cl_recall_1mm": dice, "cl_median_mm": 1 - dice, "radius_error_mm": 0.1,
              "length_error_pct": -5.0}
    return {"cell": dataclasses.asdict(cell), "name": cell.name, "scores": scores,
            "scores_fine": scores, "seconds_total": 1.0, "peak_rss_mb": 10.0,
            "under_load": cell.seed == 1}


def test_report_tables_and_curves_from_records(tmp_path):
    import report_realistic

    records = [_fake_record(cell, 0.5 + 0.01 * n)
               for n, cell in enumerate(realistic.realistic_cells(["tubes"])[:20])]
    matrix = [_fake_record(cell, 0.8 - 0.01 * n)
              for n, cell in enumerate(realistic.matrix_cells(["tubes", "voxel"]))]
    gpu = [dict(_fake_record(realistic.realistic_cells(["sdf-tree"])[9], 0.7),
                name="realistic_lca0_sdf-tree_fine2", machine="NVIDIA H200", commit="abc1234",
                seconds_reconstruct=52.3, stage_seconds={"tracing": 40.1, "refining": 11.0})]
    lines = report_realistic.section(records + matrix, tmp_path, gpu)
    text = "\n".join(lines)
    assert "| ceiling | - | LCA | 4 |" in text and "| tubes | noise-free | RCA | 4 |" in text
    assert "### GPU column" in text and "| sdf-tree | noise-free | LCA | 1 |" in text
    assert "| realistic_lca0_sdf-tree_fine2 | NVIDIA H200 | abc1234 | 11.0 | 40.1 | 52.3 |" in text
    assert "| tubes | noise-free | lumens (2nd generator) | 1 |" in text
    assert "isocenter error, view 2 (mm) = 5 |" in text
    assert (tmp_path / "figures" / "robustness_matrix.png").stat().st_size > 1000
    tree = dict(_fake_record(realistic.realistic_cells(["sdf-tree"])[9], 0.7),
                scores_centrelines={"length_error_pct": -4.0, "radius_error_mm": 0.05,
                                    "cl_recall_1mm": 0.9, "cl_precision_1mm": 0.8,
                                    "cl_median_mm": 0.3})
    table = "\n".join(report_realistic.centreline_table(records + [tree]))
    assert table.count("\n") == 2  # header, rule, the one cell with model centrelines
    assert "| sdf-tree | noise-free | LCA | 1 | 0.700 (0.700) | undefined | -4.000 (-4.000) | " \
        "0.050 (0.050) |" in table


def test_trace_diagnosis_tells_a_ghost_pairing_from_a_vessel_point():
    """A point on the view-1 ray through vessel A's point a, placed where view 2 sees vessel
    B's point b, is ghost-paired (separation |a - b|); a point on A is paired with itself;
    a point far from both is not paired."""
    import trace_diagnosis
    from sdfcar.centerlines import from_polylines

    geometry = CaseGeometry(REFERENCE_VIEWS)
    first, second = geometry.views
    a = np.array([5.0, -3.0, 2.0])
    ghost = first.source + 0.95 * (a - first.source)  # projects onto a in view 1
    b = second.source + 1.05 * (ghost - second.source)  # ... and onto b in view 2
    line = np.linspace(-10.0, 10.0, 201)[:, None] * np.array([0.0, 0.0, 1.0])
    truth = from_polylines([(a + line, np.ones(201)), (b + line, np.ones(201))])
    case = trace_diagnosis.Case(geometry, None, truth, None, None)
    points = np.array([ghost, a, [60.0, 60.0, 60.0]])
    paired, separation = trace_diagnosis.pairing(points, case)
    assert paired.tolist() == [True, True, False]
    assert np.linalg.norm(ghost - a) > 3 and separation[0] == pytest.approx(
        np.linalg.norm(a - b), abs=0.2)
    assert separation[1] == pytest.approx(0.0, abs=0.2)


def test_epipolar_share_is_one_along_the_epipolar_axis_and_zero_along_a_ray():
    import trace_diagnosis
    from sdfcar.geometry.tubes import Segment

    geometry = CaseGeometry(REFERENCE_VIEWS)
    first, second = geometry.views
    axis = np.cross(-first.source, -second.source)
    axis /= np.linalg.norm(axis)
    ray = -first.source / np.linalg.norm(first.source)
    steps = np.linspace(-0.5, 0.5, 11)[:, None]
    vessels = [Segment("along e", steps * axis, np.ones(11), None),
               Segment("along view 1's ray", steps * ray, np.ones(11), None)]
    case = trace_diagnosis.Case(geometry, None, None, None, None)
    share = trace_diagnosis.epipolar_share(vessels, case)
    np.testing.assert_allclose(share[:11], 1.0, atol=1e-3)
    np.testing.assert_allclose(share[11:], 0.0, atol=1e-3)


def test_a_page_with_marked_blocks_keeps_its_prose():
    from report import fill_blocks
    from report_realistic import marked

    page = "\n".join(["# Benchmarks", "Prose written by hand.",
                      *marked("realistic-headline", ["| old | table |"]), "More prose.",
                      *marked("unknown", ["| kept |"]), ""])
    filled = fill_blocks(page, {"realistic-headline": ["| new | table |", "| row |"]})
    assert filled == "\n".join(["# Benchmarks", "Prose written by hand.",
                                *marked("realistic-headline", ["| new | table |", "| row |"]),
                                "More prose.", *marked("unknown", ["| kept |"]), ""])
    assert fill_blocks(filled, {"realistic-headline": ["| new | table |", "| row |"]}) == filled
