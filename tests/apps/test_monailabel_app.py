"""MONAI Label app: request resolution and the run (no monailabel needed), the infer task
against monailabel's own interfaces, and a real ``monailabel start_server`` answering
``POST /infer/sdfcar``.

The last two need monailabel: in the current interpreter for the task test, and in the
current interpreter or ``.venv-monailabel/`` (``make monailabel``) for the server test;
without it they are skipped with the reason.
"""

import email.parser
import email.policy
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sdfcar.io.images import read_volume
from sdfcar.apps.monailabel.infer import progress_logger, run_request
from sdfcar.apps.monailabel.studies import IMAGE_ID_KEY, RequestError, resolve_request
from sdfcar.progress import Step

from conftest import SMALL_GEOMETRY, SMALL_GRID

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "sdfcar" / "apps" / "monailabel" / "app"
MONAILABEL_VENV_PYTHON = REPO / ".venv-monailabel" / "bin" / "python"
# Few iterations (20 of the voxel prior, 3 of the field), and a field that starts inside the
# vessels so that the label is not empty.
FAST = {"preset": "field", "iterations": 3, "device": "cpu",
        "overrides": ["field.network.output_bias=-1", "voxel.iterations=20"]}
HAS_MONAILABEL = importlib.util.find_spec("monailabel") is not None


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture
def studies(small_case_dir, tmp_path) -> Path:
    """A studies folder with the small case under the naming convention (``arc_*``) and
    again as two loose images ``lao.nii.gz`` / ``cra.nii.gz`` with no geometry file."""
    folder = tmp_path / "studies"
    folder.mkdir()
    for index, loose in ((1, "lao"), (2, "cra")):
        shutil.copy(small_case_dir / f"view{index}.nii.gz", folder / f"arc_view{index}.nii.gz")
        shutil.copy(small_case_dir / f"view{index}.nii.gz", folder / f"{loose}.nii.gz")
    shutil.copy(small_case_dir / "geometry.json", folder / "arc_geometry.json")
    return folder


# ----------------------------------------------------------------------------- requests


def test_case_convention_gives_second_view_and_geometry(studies):
    job = resolve_request({"image": "arc_view1", **FAST}, studies)
    assert job.case == "arc" and job.view_ids == ("arc_view1", "arc_view2")
    assert job.geometry == SMALL_GEOMETRY and job.geometry_source == "arc_geometry.json"
    assert [v.shape for v in job.views] == [(96, 96), (96, 96)]
    assert job.config.field.iterations == 3 and job.config.field.network.output_bias == -1.0
    # Naming no preset: the command line's default for the views (sdf-tree; field for masks).
    assert resolve_request({"image": "arc_view1"}, studies).config.preset == "sdf-tree"


def test_request_params_name_second_view_and_geometry(studies):
    # A server replaces "image" by a file path; the id kept under IMAGE_ID_KEY wins.
    request = {"image": str(studies / "lao.nii.gz"), IMAGE_ID_KEY: "lao", "view2": "cra",
               "geometry": SMALL_GEOMETRY.to_dict(), "preset": "neca", "seed": 7}
    job = resolve_request(request, studies)
    assert job.view_ids == ("lao", "cra") and job.geometry_source == "request"
    assert job.geometry == SMALL_GEOMETRY
    assert (job.config.preset, job.config.seed, job.config.field.network.mode) == (
        "neca", 7, "occupancy")


def _mismatched_geometry() -> dict:
    data = SMALL_GEOMETRY.to_dict()
    data["views"][0]["detector_shape"] = [64, 64]
    return data


def _huge_geometry(kind: str) -> dict:
    data = SMALL_GEOMETRY.to_dict()
    if kind == "volume":
        data["volume"]["shape"] = [4000, 4000, 4000]
    else:
        data["views"][0]["detector_shape"] = [100000, 100000] if kind == "detector" else [-96, 96]
    return data


BAD_REQUESTS = [
    ({"image": "nope_view1"}, 404, "image: unknown image id 'nope_view1'"),
    ({"image": "lao", "view2": "nope"}, 404, "view2: unknown image id 'nope'"),
    ({}, 400, "image: missing image id"),
    ({"image": "lao"}, 400, "view2: missing second view"),
    ({"image": "lao", "view2": "lao"}, 400, "is view 1 itself"),
    ({"image": "../studies/arc_view1"}, 400, "is not an image id"),
    ({"image": "/etc/hostname"}, 400, "is not an image id"),
    ({"image": "arc_view1", "view2": "..\\arc_view2"}, 400, "view2: '..\\\\arc_view2' is not"),
    ({"image": "lao", "view2": "cra"}, 400, "geometry: none given"),
    ({"image": "arc_view1", "geometry": {"views": []}}, 400, "expected a list of 2 views"),
    ({"image": "arc_view1", "geometry": "arc_geometry.json"}, 400, "expected a geometry.json"),
    ({"image": "arc_view1", "geometry": _mismatched_geometry()}, 400,
     "view1: image is 96x96 but the geometry says 64x64"),
    ({"image": "arc_view1", "preset": "fastest"}, 400, "unknown preset 'fastest'"),
    ({"image": "arc_view1", "iterations": 0}, 400, "iterations: expected an integer from 1"),
    ({"image": "arc_view1", "overrides": "lr=1"}, 400, "overrides: expected a list"),
    ({"image": "arc_view1", "overrides": ["nope=1"]}, 400, "nope: unknown setting"),
    # hostile ids: NUL and control characters, absolute paths, wrong types
    ({"image": "arc_view1\0.png"}, 400, "is not an image id"),
    ({"image": "arc\nview1"}, 400, "is not an image id"),
    ({"image": "arc_view1", "view2": "/etc/passwd"}, 400, "view2: '/etc/passwd' is not"),
    ({"image": ["arc_view1"]}, 400, "image: expected an image id (a file name), got list"),
    ({"image": "arc_view1", "view2": 7}, 400, "view2: expected an image id"),
    # oversized, negative or mistyped parameters
    ({"image": "arc_view1", "iterations": 10**9}, 400,
     "iterations: expected an integer from 1 to 20000 in a request, got 1000000000"),
    ({"image": "arc_view1", "iterations": "300"}, 400, "iterations: expected an integer, got"),
    ({"image": "arc_view1", "iterations": 2.5}, 400, "iterations: expected an integer"),
    ({"image": "arc_view1", "iterations": True}, 400, "iterations: expected an integer"),
    ({"image": "arc_view1", "seed": -1}, 400, "seed: expected an integer from 0 to"),
    ({"image": "arc_view1", "seed": 2**70}, 400, "seed: expected an integer from 0 to"),
    ({"image": "arc_view1", "device": 3}, 400, "device: expected a name, got 3"),
    ({"image": "arc_view1", "preset": ""}, 400, "preset: expected a name"),
    ({"image": "arc_view1", "overrides": ["seed=-5"]}, 400, "seed: expected an integer"),
    ({"image": "arc_view1", "overrides": ["voxel.iterations=1000000000"]}, 400,
     "voxel.iterations: at most 20000 in a request"),
    ({"image": "arc_view1", "overrides": ["field.network.log2_hashmap_size=40"]}, 400,
     "field.network.log2_hashmap_size: at most 24 in a request, got 40"),
    ({"image": "arc_view1", "preset": "sdf-tree",
      "overrides": ["tree.refine.coarse_iterations=1000000000"]}, 400,
     "tree.refine.coarse_iterations: at most 20000 in a request"),
    ({"image": "arc_view1", "preset": "sdf-tree", "overrides": ["tree.tracing.trees=100000"]},
     400, "tree.tracing.trees: at most 64 in a request, got 100000"),
    ({"image": "arc_view1", "preset": "sdf-tree", "overrides": ["tree.supersample=50"]}, 400,
     "tree.supersample: at most 4 in a request, got 50"),
    ({"image": "arc_view1", "overrides": ["field.network.hidden_width=-4"]}, 400,
     "field.network.hidden_width: expected a positive value"),
    ({"image": "arc_view1", "overrides": ["a=1"] * 65}, 400, "overrides: at most 64 entries"),
    ({"image": "arc_view1", "geometry": _huge_geometry("volume")}, 400,
     "geometry: volume.shape [4000, 4000, 4000] needs about"),
    ({"image": "arc_view1", "geometry": _huge_geometry("detector")}, 400,
     "geometry: views[0].detector_shape [100000, 100000] needs about"),
    ({"image": "arc_view1", "geometry": _huge_geometry("negative")}, 400,
     "geometry: views[0].detector_shape[0]: expected an integer >= 1, got -96"),
]


@pytest.mark.parametrize("request_, status, message", BAD_REQUESTS)
def test_bad_requests_are_refused_before_anything_is_written(studies, tmp_path, request_,
                                                             status, message):
    out = tmp_path / "out"
    out.mkdir()
    before = _files(studies)
    with pytest.raises(RequestError) as caught:
        run_request(request_, studies, out)
    assert caught.value.status == status
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert _files(studies) == before and not any(out.iterdir())


def test_links_out_of_the_studies_folder_are_refused(studies, small_case_dir):
    (studies / "out_view1.nii.gz").symlink_to(small_case_dir / "view1.nii.gz")
    for index in (1, 2):  # links inside the studies folder are fine ...
        (studies / f"in_view{index}.nii.gz").symlink_to(studies / f"arc_view{index}.nii.gz")
    (studies / "in_geometry.json").symlink_to(small_case_dir / "geometry.json")  # ... not out
    with pytest.raises(RequestError, match="image: out_view1.nii.gz resolves outside"):
        resolve_request({"image": "out_view1"}, studies)
    with pytest.raises(RequestError, match="geometry: in_geometry.json resolves outside"):
        resolve_request({"image": "in_view1"}, studies)
    assert resolve_request({"image": "in_view1", "geometry": SMALL_GEOMETRY.to_dict()},
                           studies).view_ids == ("in_view1", "in_view2")


def test_failure_during_the_run_is_a_request_error(studies, tmp_path):
    unsafe = {"overrides": ["hull.mode=on", "hull.max_fraction=0.0001"]}
    with pytest.raises(RequestError, match="hull.mode: the visual hull is unusable") as caught:
        run_request({"image": "arc_view1", **FAST, **unsafe}, studies, tmp_path)
    assert caught.value.status == 400 and not any(tmp_path.glob("*.nii.gz"))


def test_progress_is_logged_ten_times(caplog):
    report = progress_logger("case7")
    with caplog.at_level(logging.INFO, logger="sdfcar"):
        for done in range(1, 96):
            report(Step("field", done, 95, "iteration", 0.5))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0] == "sdfcar case7: field: iteration 10/95, loss 0.5"
    assert lines[-1] == "sdfcar case7: field: iteration 95/95, loss 0.5"


def test_run_writes_the_label_and_reports_fit_timings_and_geometry(studies, tmp_path, caplog):
    before = _files(studies)
    with caplog.at_level(logging.INFO, logger="sdfcar"):
        label_path, summary = run_request({"image": "arc_view1", **FAST}, studies, tmp_path)
    label, grid = read_volume(label_path)
    assert Path(label_path).parent == tmp_path and _files(studies) == before
    assert grid.shape == SMALL_GRID.shape and np.allclose(grid.affine, SMALL_GRID.affine)
    assert set(np.unique(label)) <= {0, 1}
    assert int(label.sum()) == summary["label"]["vessel_voxels"] > 0
    assert summary["geometry"] == SMALL_GEOMETRY.to_dict()
    assert summary["views"] == {"view1": "arc_view1", "view2": "arc_view2"}
    scores = summary["scores"]
    assert [v["view"] for v in scores["views"]] == [1, 2]
    assert all(0.0 < v["silhouette_dice"] <= 1.0 and v["rmse_mm"] >= 0 for v in scores["views"])
    assert scores["mean_silhouette_dice"] == pytest.approx(
        np.mean([v["silhouette_dice"] for v in scores["views"]]))
    assert summary["seconds"]["total"] >= summary["seconds"]["reconstruct"] > 0
    assert summary["run"]["statistics"]["field"]["iterations"] == 3
    assert summary["run"]["device"] == "cpu" and summary["run"]["method"] == "field"
    assert summary["qca"]["available"] is False and "qca" not in summary["run"]
    json.dumps(summary, allow_nan=False)  # plain JSON, as the server sends it
    progress = [r.getMessage() for r in caplog.records if "iteration" in r.getMessage()]
    assert progress[-1].startswith("sdfcar arc: field: iteration 3/3, loss ")
    assert "sdfcar arc: voxel fit: iteration 20/20" in " ".join(progress)


# ----------------------------------------------------------------------------- monailabel


@pytest.mark.skipif(not HAS_MONAILABEL, reason="monailabel is not installed in this "
                    "interpreter (pip install .[monailabel], or run this file with "
                    ".venv-monailabel/bin/python -m pytest)")
def test_task_and_app_follow_monailabel_interfaces(studies, tmp_path, monkeypatch):
    from fastapi import HTTPException
    from monailabel.config import settings
    from monailabel.interfaces.app import MONAILabelApp
    from monailabel.interfaces.tasks.infer_v2 import InferTask
    from monailabel.utils.others.class_utils import get_class_of_subclass_from_file

    monkeypatch.setattr(settings, "MONAI_LABEL_SESSIONS", False)
    monkeypatch.setattr(settings, "MONAI_LABEL_DATASTORE_AUTO_RELOAD", False)
    app_dir = shutil.copytree(APP_DIR, tmp_path / "app",
                              ignore=shutil.ignore_patterns("__pycache__"))
    # The same loader `monailabel start_server` uses for main.py.
    app_class = get_class_of_subclass_from_file("main", str(app_dir / "main.py"),
                                                "MONAILabelApp")
    app = app_class(app_dir=str(app_dir), studies=str(studies), conf={})
    assert isinstance(app, MONAILabelApp)
    task = app._infers["sdfcar"]
    assert isinstance(task, InferTask) and task.is_valid()
    info = app.info()["models"]["sdfcar"]
    assert info["dimension"] == 3 and info["labels"] == {"coronary artery": 1}
    assert set(info["config"]) == {"view2", "preset", "device"}
    before = _files(studies)
    for image, status in (("nope_view1", 404), ("../studies/arc_view1", 400),
                          (str(studies / "arc_view1.nii.gz"), 400)):
        with pytest.raises(HTTPException) as caught:
            app.infer({"model": "sdfcar", "image": image, **FAST})
        assert caught.value.status_code == status
    with pytest.raises(HTTPException) as caught:
        task({"image": "arc_view1", "geometry": {"views": "x"}})
    assert caught.value.status_code == 400 and "geometry" in caught.value.detail
    assert _files(studies) == before


# ----------------------------------------------------------------------------- server


def _monailabel_python() -> str | None:
    if HAS_MONAILABEL:
        return sys.executable
    return str(MONAILABEL_VENV_PYTHON) if MONAILABEL_VENV_PYTHON.is_file() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, params: dict) -> tuple[int, str, bytes]:
    body = urllib.parse.urlencode({"params": json.dumps(params)}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=600) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()}


def _wait_until_up(url: str, server: subprocess.Popen, log: Path, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"monailabel exited with {server.returncode}:\n"
                        f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(1)
    pytest.fail(f"monailabel did not answer {url} within {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_server_answers_infer_sdfcar(studies, tmp_path):
    python = _monailabel_python()
    if python is None:
        reason = ("monailabel is not installed here: no monailabel in this interpreter and no "
                  f"{MONAILABEL_VENV_PYTHON.relative_to(REPO)} (build it with `make monailabel`)")
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    # start_server creates model/, logs/, bin/ inside the app folder: run a copy.
    app_dir = shutil.copytree(APP_DIR, tmp_path / "app",
                              ignore=shutil.ignore_patterns("__pycache__"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {**os.environ, "MONAI_LABEL_SESSION_PATH": str(tmp_path / "sessions")}
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [python, "-m", "monailabel.main", "start_server", "--app", str(app_dir),
             "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        info = _wait_until_up(f"{base}/info/", server, log, 180)
        assert "sdfcar" in info["models"]
        before = _files(studies)
        for image, status in (("nope_view1", 404), ("../studies/arc_view1", 400),
                              ("lao", 400)):
            code, _, body = _post(f"{base}/infer/sdfcar?image={urllib.parse.quote(image)}",
                                  FAST)
            assert code == status and json.loads(body)["detail"].startswith(("image", "view2"))
        code, _, body = _post(f"{base}/infer/sdfcar?image=arc_view1",
                              {**FAST, "geometry": {"views": [1, 2]}})
        assert code == 400 and "geometry: views[0]" in json.loads(body)["detail"]
        assert _files(studies) == before  # refused requests write nothing

        code, content_type, body = _post(f"{base}/infer/sdfcar?image=arc_view1", FAST)
        assert code == 200, body[:500]
        parts = _multipart(content_type, body)
        summary = json.loads(parts["params"])
        (tmp_path / "label.nii.gz").write_bytes(parts["image"])
        label, grid = read_volume(tmp_path / "label.nii.gz")
        assert grid.shape == SMALL_GRID.shape and np.allclose(grid.affine, SMALL_GRID.affine)
        assert int(label.sum()) == summary["label"]["vessel_voxels"] > 0
        assert summary["geometry"] == SMALL_GEOMETRY.to_dict()
        assert 0.0 < summary["scores"]["mean_silhouette_dice"] <= 1.0
        assert not any((studies / "labels" / "original").iterdir())  # save_label not asked
        assert "sdfcar arc: field: iteration 3/3" in log.read_text()  # progress in the log
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
