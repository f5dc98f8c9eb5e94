"""`sdfcar qca` and the QCA files of `sdfcar reconstruct`: table, working views, bad folders."""

import json

import numpy as np
import pytest

from sdfcar.analysis.summary import analyse
from sdfcar.apps.cli import main
from sdfcar.geometry import REFERENCE_VIEWS
from sdfcar.io.centrelines import MARKUPS_FILE, QCA_FILE, VTP_FILE, WORKING_VIEWS_FILE


def _records():
    s = np.linspace(0.0, 1.0, 81)[:, None]
    radii = np.full(81, 1.5)
    radii[36:45] = 0.7  # a 4 mm narrowing to 47 % of the diameter, 18-22 mm along
    return [{"name": "vessel0", "parent": None,
             "points": (np.array([-20.0, 0, 5]) + s * [40, 0, 0]).tolist(),
             "radii": radii.tolist()},
            {"name": "vessel1", "parent": "vessel0",
             "points": (np.array([0.0, 0, 5]) + s * [0, 15, 15]).tolist(),
             "radii": [1.0] * 81}]


@pytest.fixture
def recon_dir(tmp_path):
    """A folder with the run.json fields `sdfcar qca` reads, as the pipeline writes them."""
    folder = tmp_path / "rec"
    folder.mkdir()
    record = {"method": "tree", "statistics": {"tree": {"centrelines": _records()}},
              "qca": analyse(_records(), REFERENCE_VIEWS).record()}
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_qca_prints_the_table_and_the_lesion_working_views(recon_dir, capsys):
    assert main(["qca", str(recon_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["vessel", "parent", "length", "tort."]
    trunk = out[1].split()
    assert trunk[:2] == ["vessel", "1"] and float(trunk[3]) == pytest.approx(40.0)
    assert int(trunk[10]) == pytest.approx(53, abs=3)  # DS %
    assert float(trunk[11]) == pytest.approx(4.5, abs=0.5)  # lesion length
    assert any(line.startswith("bifurcation vessel 1 -> branch 1 at 20.0 mm: distal 90 deg")
               for line in out)
    header = out.index(next(line for line in out if line.startswith("working views")))
    assert out[header].startswith("working views for vessel 1 (lesion")
    assert len(out) == header + 4 and all(line.startswith("  primary ") for line in out[-3:])


def test_qca_searches_the_named_vessel(recon_dir, capsys):
    assert main(["qca", str(recon_dir), "--vessel", "branch 1"]) == 0
    assert "working views for branch 1 (vessel, 0.0-21.2 mm):" in capsys.readouterr().out


def _edit(change):
    """A setup that edits run.json with ``change(record)``."""
    def setup(recon_dir):
        record = json.loads((recon_dir / "run.json").read_text())
        change(record)
        (recon_dir / "run.json").write_text(json.dumps(record))
        return recon_dir
    return setup


def _replace_run(text):
    def setup(recon_dir):
        (recon_dir / "run.json").write_text(text)
        return recon_dir
    return setup


def _remove_run(recon_dir):
    (recon_dir / "run.json").unlink()
    return recon_dir


@pytest.mark.parametrize("setup,message", [
    (lambda d: d / "missing", "missing: not a reconstruction folder (not a folder)"),
    (_remove_run, "run.json: file not found"),
    (_replace_run("{oops"), "run.json: not readable JSON"),
    (_edit(lambda r: r.update(qca={"available": False,
                                   "reason": "the voxel method gives a label"})),
     "run.json: qca: not available: the voxel method gives a label"),
    (_edit(lambda r: r.pop("qca")), "run.json: qca: missing"),
    (_edit(lambda r: r["statistics"]["tree"]["centrelines"][1].update(radii=[-1.0] * 81)),
     "run.json: statistics.tree.centrelines.vessels[1].radii: expected one finite positive"),
    (_edit(lambda r: r["qca"]["views"][0].pop("source_to_detector_mm")),
     "run.json: qca.views[0].source_to_detector_mm: missing required field"),
])
def test_bad_reconstruction_folder_is_one_line_and_exit_2(recon_dir, capsys, setup, message):
    target = setup(recon_dir)
    before = {p.name: p.read_bytes() for p in recon_dir.iterdir()}
    assert main(["qca", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith("sdfcar qca: error: ") and message in captured.err
    assert {p.name: p.read_bytes() for p in recon_dir.iterdir()} == before


def test_qca_refuses_an_unknown_vessel(recon_dir, capsys):
    assert main(["qca", str(recon_dir), "--vessel", "LAD"]) == 2
    assert capsys.readouterr().err.strip() == (
        "sdfcar qca: error: --vessel: no vessel 'LAD' (vessels: vessel 1, branch 1)")


@pytest.mark.slow
def test_reconstruct_with_tubes_writes_the_qca_files(small_case_dir, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["reconstruct", str(small_case_dir), "--out", str(out), "--preset", "tubes",
                 "--set", "tubes.trees=1", "--device", "cpu", "--quiet"]) == 0
    for name in (MARKUPS_FILE, VTP_FILE, QCA_FILE, WORKING_VIEWS_FILE):
        assert (out / name).stat().st_size > 0
    run = json.loads((out / "run.json").read_text())
    qca = run["qca"]
    assert qca["available"] and qca["topology"][0]["name"] == "vessel 1"
    assert len(qca["vessels"]) == len(run["statistics"]["tubes"]["centrelines"])
    assert len(qca["working_views"]["best"]) == 3 and "qca" in run["seconds"]
    # the traced arc is about 52 mm long (a half ellipse of radius 15 mm, 5 mm out of plane)
    assert 40 < sum(v["length_mm"] for v in qca["vessels"]) < 80
    capsys.readouterr()
    assert main(["qca", str(out)]) == 0
    assert capsys.readouterr().out.startswith("  vessel  parent  length")
