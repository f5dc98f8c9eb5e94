"""`sdfcar phantom` and `sdfcar demo` end to end, and the console script."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from sdfcar.case import load_case
from sdfcar.cli import main
from sdfcar.geometry import REFERENCE_VIEWS
from sdfcar.images import read_volume


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


def test_demo_writes_ground_truth_and_case(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu", "--iterations", "3"]) == 0
    case = load_case(out / "case")
    assert case.geometry.views == REFERENCE_VIEWS
    assert all(image.max() > 2.0 for image in case.views)
    assert (out / "reconstruction" / "segmentation.seg.nrrd").is_file()
    run = json.loads((out / "reconstruction" / "run.json").read_text())
    assert run["iterations"] == 3 and 0.0 <= run["scores"]["dice"] <= 1.0
    printed = capsys.readouterr().out
    assert "ground truth" in printed and "cldice" in printed


def test_console_script_reports_bad_subcommand_in_one_line():
    result = subprocess.run([sys.executable, "-m", "sdfcar.cli", "phantom", "--kind", "lad",
                             "--out", "x.nii.gz"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice: 'lad'" in result.stderr and result.stderr.count("\n") == 1
