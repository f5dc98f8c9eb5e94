"""`sdfcar phantom` and `sdfcar demo` end to end, and the console script."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from sdfcar.io.case import load_case
from sdfcar.apps.cli import main
from sdfcar.geometry import REFERENCE_VIEWS
from sdfcar.io.images import read_volume


def test_phantom_writes_a_one_piece_tree_with_its_grid(tmp_path):
    out = tmp_path / "gt.nii.gz"
    assert main(["phantom", "--kind", "rca", "--seed", "4", "--out", str(out),
                 "--center", "5", "-3", "2"]) == 0
    label, grid = read_volume(out)
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
    assert grid.shape == (128, 128, 128) and grid.spacing_mm == pytest.approx((0.8,) * 3)
    assert grid.center_mm == pytest.approx((5.0, -3.0, 2.0))
    assert ndimage.label(label, np.ones((3, 3, 3)))[1] == 1


def test_phantom_refuses_to_overwrite_and_rejects_bad_grids(tmp_path, capsys):
    out = tmp_path / "gt.nii.gz"
    assert main(["phantom", "--out", str(out)]) == 0
    assert main(["phantom", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["phantom", "--out", str(tmp_path / "b.nii.gz"), "--spacing", "0"]) == 2
    assert "--spacing[0]: expected a positive number" in capsys.readouterr().err
    assert main(["phantom", "--out", str(tmp_path / "c.nii.gz"), "--shape", "64", "64", "1"]) == 2
    assert "--shape[2]" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.nii.gz"]


@pytest.mark.slow
def test_demo_writes_ground_truth_and_case(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu", "--preset", "field",
                 "--iterations", "3"]) == 0
    case = load_case(out / "case")
    assert case.geometry.views == REFERENCE_VIEWS
    assert all(image.max() > 2.0 for image in case.views)
    assert (out / "reconstruction" / "segmentation.seg.nrrd").is_file()
    run = json.loads((out / "reconstruction" / "run.json").read_text())
    assert run["statistics"]["field"]["iterations"] == 3 and 0.0 <= run["scores"]["dice"] <= 1.0
    printed = capsys.readouterr().out
    assert "ground truth" in printed and "cldice" in printed
    assert "voxelised at 0.4 mm, 2x finer than the 0.8 mm reconstruction grid" in printed


@pytest.mark.slow
def test_console_script_reports_bad_subcommand_in_one_line():
    result = subprocess.run([sys.executable, "-m", "sdfcar.apps.cli", "phantom", "--kind", "lad",
                             "--out", "x.nii.gz"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice: 'lad'" in result.stderr and result.stderr.count("\n") == 1


def test_evaluate_agrees_with_an_independent_computation(tmp_path, capsys):
    """Dice and clDice from `sdfcar evaluate --json` against plain numpy + skimage."""
    from skimage.morphology import skeletonize

    from sdfcar.geometry import VolumeGrid
    from sdfcar.io.images import write_volume
    from sdfcar.synthetic.phantom import label_volume

    grid = VolumeGrid()
    truth = label_volume("rca", 1, grid) > 0
    # A prediction on a grid shifted by one voxel along x: the same array, moved 0.8 mm.
    moved = VolumeGrid(grid.shape, grid.spacing_mm, (0.8, 0.0, 0.0))
    write_volume(tmp_path / "gt.nii.gz", truth.astype(np.uint8), grid)
    write_volume(tmp_path / "pred.nii.gz", truth.astype(np.uint8), moved)
    assert main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"),
                 "--gt", str(tmp_path / "gt.nii.gz"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    prediction = np.zeros_like(truth)
    prediction[1:] = truth[:-1]  # voxel i of the moved grid sits at voxel i + 1 of the GT grid
    expected_dice = 2 * (prediction & truth).sum() / (prediction.sum() + truth.sum())
    tprec = (skeletonize(prediction) & truth).sum() / skeletonize(prediction).sum()
    tsens = (skeletonize(truth) & prediction).sum() / skeletonize(truth).sum()
    expected_cldice = 2 * tprec * tsens / (tprec + tsens)
    assert scores["dice"] == pytest.approx(expected_dice, abs=0.01)
    assert scores["cldice"] == pytest.approx(expected_cldice, abs=0.01)
    assert 0.3 < scores["dice"] < 0.95


def test_evaluate_scores_centerlines_from_a_file(tmp_path, capsys):
    from sdfcar.centerlines import segments_json
    from sdfcar.geometry import VolumeGrid
    from sdfcar.io.images import write_volume
    from sdfcar.synthetic.phantom import generate_tree, rasterize

    grid = VolumeGrid()
    tree = generate_tree("lca", 0)
    write_volume(tmp_path / "gt.nii.gz", (rasterize(tree, grid) >= 0.5).astype(np.uint8), grid)
    (tmp_path / "cl.json").write_text(json.dumps(segments_json(tree.segments)))
    arguments = ["evaluate", "--pred", str(tmp_path / "gt.nii.gz"), "--gt",
                 str(tmp_path / "gt.nii.gz"), "--json"]
    assert main(arguments + ["--centerlines", str(tmp_path / "cl.json")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["cl_precision_1mm"] > 0.8 and scores["cl_recall_1mm"] > 0.8
    assert main(arguments + ["--centerlines", str(tmp_path / "gt.nii.gz")]) == 2
    assert "gt.nii.gz: not a readable JSON centreline file" in capsys.readouterr().err


def test_progress_lines_are_machine_readable_and_parse_back(capsys):
    from sdfcar.progress import MachineLines, Step, parse_line

    report = MachineLines()
    for done in range(1, 251):
        report(Step("voxel fit", done, 250, "iteration", 0.5))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 100
    assert lines[-1] == "PROGRESS 250 250 iteration 0.5 voxel fit"
    assert parse_line(lines[-1]) == Step("voxel fit", 250, 250, "iteration", 0.5)
    assert parse_line("PROGRESS 3 6 tree - tracing") == Step("tracing", 3, 6, "tree", None)
    assert parse_line("PROGRESS 7 6 tree - tracing") is None and parse_line("sdfcar: x") is None


def test_a_progress_line_is_one_write_with_its_newline():
    """An interrupt between a line and its newline would glue the CLI's "interrupted" line
    onto a progress line (where a reader of the lines, or the hostile suite, misses it)."""
    import io

    from sdfcar.progress import MachineLines, Step

    class Writes(io.StringIO):
        def __init__(self):
            super().__init__()
            self.calls = []

        def write(self, text):
            self.calls.append(text)
            return super().write(text)

    stream = Writes()
    report = MachineLines(stream)
    for done in range(1, 4):
        report(Step("fit", done, 3, "iteration", None))
    assert stream.calls == [f"PROGRESS {d} 3 iteration - fit\n" for d in (1, 2, 3)]


def test_percent_lines_for_logs_instead_of_bar_redraws(caplog):
    import io
    import logging

    from sdfcar.progress import Step, reporter

    report = reporter("auto", io.StringIO())  # not a terminal: a line every 10 %
    with caplog.at_level(logging.INFO, logger="sdfcar"):
        for done in range(1, 301):
            report(Step("field", done, 300, "iteration", 1.0))
    assert [r.getMessage() for r in caplog.records][-1] == (
        "field: iteration 300/300, loss 1 (100 %)")
    assert len(caplog.records) == 10
