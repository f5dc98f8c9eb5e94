"""`sdfcar reconstruct` on a case folder: outputs, run record, progress lines, bad input."""

import json

import numpy as np
import pytest

from sdfcar.io.case import Case, write_case
from sdfcar.apps.cli import main
from sdfcar.io.guard import MARKER
from sdfcar.io.images import read_volume
from sdfcar.progress import parse_line

from conftest import SMALL_GEOMETRY as GEOMETRY, SMALL_GRID as GRID, bad_views


def _write_case(tmp_path, views, name="case"):
    write_case(tmp_path / name, Case(GEOMETRY, tuple(views)))
    return tmp_path / name


def test_cli_reconstruct_writes_all_outputs_with_geometry(tmp_path, arc_case, capsys):
    label, views = arc_case
    case_dir = _write_case(tmp_path, views)
    out = tmp_path / "out"
    assert main(["reconstruct", str(case_dir), "--out", str(out), "--preset", "field",
                 "--iterations", "10", "--device", "cpu", "--progress", "lines", "--set", "seed=3",
                 "--set", "voxel.iterations=20"]) == 0
    progress = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("PROGRESS")]
    # The voxel fit's 20 iterations, then the field's 10, each stage counted on its own.
    steps = [parse_line(line) for line in progress]
    assert [(s.stage, s.done, s.total, s.unit) for s in steps] == (
        [("voxel fit", i, 20, "iteration") for i in range(1, 21)]
        + [("field", i, 10, "iteration") for i in range(1, 11)])
    names = {p.name for p in out.iterdir()}
    assert names == {"label.nii.gz", "sdf.nii.gz", "occupancy.nii.gz", "segmentation.seg.nrrd",
                     "mesh.vtk", "report.png", "run.json", MARKER}
    saved, grid = read_volume(out / "label.nii.gz")
    assert grid == GRID and saved.dtype == np.uint8
    run = json.loads((out / "run.json").read_text())
    field = run["statistics"]["field"]
    assert field["iterations"] == 10 and run["seed"] == 3 and run["device"] == "cpu"
    assert run["preset"] == "field" and len(field["loss_curve"]) == 10
    assert run["seconds"]["total"] >= run["seconds"]["method"] > 0
    assert len(run["reprojection"]) == 2 and run["config"]["field"]["network"]["levels"] == 8
    assert run["inputs"] == {"case_dir": str(case_dir)}
    assert run["qca"]["available"] is False and "field method" in run["qca"]["reason"]
    assert main(["evaluate", "--pred", str(out), "--gt", str(tmp_path / "gt.nii.gz")]) == 2



@pytest.mark.parametrize("kind,message", [
    ("size", "image is 90x96 but views[0].detector_shape is 96x96"),
    ("empty", "view2: is empty"),
])
def test_cli_reconstruct_rejectsbad_views(tmp_path, arc_case, capsys, kind, message):
    case_dir = tmp_path / "case"
    write_case(case_dir, Case(GEOMETRY, (arc_case[1][0], arc_case[1][1])))
    bad = bad_views(kind, arc_case[1])
    from sdfcar.io.images import write_view

    for index, image in enumerate(bad, start=1):
        write_view(case_dir / f"view{index}.nii.gz", image, (0.7, 0.7), overwrite=True)
    code = main(["reconstruct", str(case_dir), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "out").exists()


def test_cli_reconstruct_of_binary_silhouettes_defaults_to_the_field_preset(tmp_path, arc_case):
    """The default preset's tracer fits line integrals; a case of masks gets the field."""
    case_dir = _write_case(tmp_path, [(view > 0.05).astype(np.float32) for view in arc_case[1]])
    out = tmp_path / "out"
    assert main(["reconstruct", str(case_dir), "--out", str(out), "--iterations", "2",
                 "--set", "voxel.iterations=5", "--device", "cpu", "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["preset"], run["method"], run["target"]) == ("field", "field", "mask")


def test_cli_reconstruct_refuses_existing_or_unwritable_out_and_unknown_preset(
        tmp_path, arc_case, capsys):
    case_dir = _write_case(tmp_path, arc_case[1])
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("mine")
    assert main(["reconstruct", str(case_dir), "--out", str(tmp_path / "existing")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "existing" / "keep.txt").read_text() == "mine"
    assert main(["reconstruct", str(case_dir), "--out", str(tmp_path / "o"),
                 "--preset", "fastest"]) == 2
    assert "unknown preset 'fastest'" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("not a folder")
    assert main(["reconstruct", str(case_dir), "--out", str(tmp_path / "a_file" / "o")]) == 2
    assert "cannot write into" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "case folder not found" in capsys.readouterr().err
