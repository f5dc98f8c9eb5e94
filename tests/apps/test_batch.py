"""`sdfcar batch` on a local Ray instance: failure isolation, kill (after a case, and while a
case is being written) and resume, retries of crashed workers, and manifest validation."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # every test here starts or uses a Ray instance

from sdfcar.apps.batch import (BatchCase, is_transient, ray_session,  # noqa: E402
                               read_manifest, read_outcomes)
from sdfcar.apps.batch.runner import _schedule  # noqa: E402
from sdfcar.apps.cli import main  # noqa: E402
from sdfcar.config import ConfigRequest  # noqa: E402
from sdfcar.errors import InputError  # noqa: E402
from sdfcar.io.guard import MARKER  # noqa: E402

OUTPUT_FILES = {"label.nii.gz", "sdf.nii.gz", "occupancy.nii.gz", "segmentation.seg.nrrd",
                "mesh.vtk", "report.png", "run.json", MARKER}
FAST = ["--preset", "field", "--iterations", "3", "--set", "voxel.iterations=20", "--device",
        "cpu", "--progress", "none"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for the whole file, started the way `sdfcar batch`
    starts its own; every batch below runs in it."""
    with ray_session(num_cpus=2):
        yield ray.get_runtime_context().gcs_address


def copy_cases(small_case_dir, root, count):
    """``count`` copies of the small case under ``root``; returns their folders."""
    folders = [root / f"input{index}" for index in range(count)]
    for folder in folders:
        shutil.copytree(small_case_dir, folder)
    return folders


def write_manifest(path, rows, header="case,case_dir,gt"):
    path.write_text("\n".join([header, *(",".join(map(str, row)) for row in rows)]) + "\n")
    return path


def case_folders(out):
    return sorted(p.name for p in out.iterdir() if p.is_dir())


def kill_batch_when(command, condition, seconds, what, poll_s=0.05):
    """Start ``command`` in its own process group and SIGKILL the group once
    ``condition()`` holds (failing when the batch exits or ``seconds`` pass first)."""
    batch = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + seconds
    while not condition():
        assert batch.poll() is None, batch.stderr.read().decode()
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(poll_s)
    os.killpg(batch.pid, signal.SIGKILL)
    batch.wait()
    batch.stderr.close()


def test_a_broken_case_fails_alone_and_the_others_finish(local_ray, small_case_dir, tmp_path,
                                                         capsys):
    folders = copy_cases(small_case_dir, tmp_path, 4)
    (folders[2] / "view1.nii.gz").write_bytes(b"not an image")
    gt = small_case_dir.parent / "gt.nii.gz"
    manifest = write_manifest(tmp_path / "cases.csv",
                              [(f"p{i}", folder.name, gt) for i, folder in enumerate(folders)])
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), *FAST]) == 1  # a case failed

    records = read_outcomes(out / "batch.jsonl")
    assert sorted(records) == ["p0", "p1", "p2", "p3"]
    broken = records.pop("p2")
    assert broken["status"] == "failed" and broken["attempts"] == 1  # bad input: no retry
    assert "view1.nii.gz: corrupt or truncated gzip data" in broken["error"]
    for name, record in records.items():
        assert record["status"] == "ok" and record["attempts"] == 1 and record["error"] is None
        assert record["device"] == "cpu" and record["seconds"] > 0
        assert 0.0 <= record["metrics"]["dice"] <= 1.0
        assert set(os.listdir(out / name)) == OUTPUT_FILES
        run = json.loads((out / name / "run.json").read_text())
        assert run["statistics"]["field"]["iterations"] == 3  # options reach every case
        assert run["metrics"] == record["metrics"]
        assert run["batch"]["case_dir"] == str(folders[int(name[1])])
    assert case_folders(out) == ["p0", "p1", "p3"]  # nothing for the broken case
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    table = capsys.readouterr().out
    assert "4 case(s)" in table and "3 ok, 1 failed" in table
    assert "| dice |" in table and "| p2 | 1 |" in table

    # --overwrite starts a new log; a case that fails now loses its earlier folder.
    (folders[0] / "geometry.json").write_text("{")
    manifest = write_manifest(tmp_path / "again.csv", [("p0", folders[0].name, gt)])
    assert main(["batch", str(manifest), "--out", str(out), "--overwrite", *FAST]) == 1
    lines = (out / "batch.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["status"] == "failed"
    assert case_folders(out) == ["p1", "p3"]


def test_a_killed_batch_resumes_without_redoing_finished_cases(local_ray, small_case_dir,
                                                               tmp_path, capsys):
    folders = copy_cases(small_case_dir, tmp_path, 4)
    manifest = write_manifest(tmp_path / "cases.csv", [(f"c{i}", folder, "")
                                                       for i, folder in enumerate(folders)])
    out = tmp_path / "out"
    log_path = out / "batch.jsonl"
    command = [sys.executable, "-m", "sdfcar.apps.cli", "batch", str(manifest), "--out", str(out),
               "--address", local_ray, *FAST]
    kill_batch_when(command, lambda: log_path.exists() and log_path.read_text().count("\n"),
                    180, "no case finished")

    before = read_outcomes(log_path)
    assert 1 <= len(before) < 4
    assert all(set(os.listdir(out / name)) == OUTPUT_FILES for name in case_folders(out)
               if name[0] != ".")  # a case folder is complete or absent, even when killed
    stamps = {name: os.stat(out / name / "run.json").st_mtime_ns for name in before}

    assert main(["batch", str(manifest), "--out", str(out), *FAST]) == 2
    assert "already holds batch results" in capsys.readouterr().err
    assert main(["batch", str(manifest), "--out", str(out), "--resume", *FAST]) == 0
    assert f"4 ok, 0 failed, {len(before)} already done" in capsys.readouterr().out

    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert sorted(r["case"] for r in lines) == [f"c{i}" for i in range(4)]  # none redone
    assert all(r["status"] == "ok" for r in lines)
    assert {name: os.stat(out / name / "run.json").st_mtime_ns for name in before} == stamps
    assert case_folders(out) == [f"c{i}" for i in range(4)]
    assert all(set(os.listdir(out / f"c{i}")) == OUTPUT_FILES for i in range(4))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


def _cpus_back(seconds: float) -> None:
    """Wait until every CPU of the Ray instance is free again (the tasks of a killed driver
    are killed by Ray, and hold their CPU until then)."""
    deadline = time.monotonic() + seconds
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, "the killed batch's task did not end"
        time.sleep(0.1)


def test_a_batch_killed_while_writing_a_case_leaves_nothing_taken_for_done(
        local_ray, small_case_dir, tmp_path, capsys):
    folders = copy_cases(small_case_dir, tmp_path, 2)
    manifest = write_manifest(tmp_path / "cases.csv", [(f"c{i}", folder, "")
                                                       for i, folder in enumerate(folders)])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sdfcar", "batch", str(manifest), "--out", str(out),
               "--address", local_ray, "--preset", "voxel", "--iterations", "20",
               "--device", "cpu", "--progress", "none"]
    # SIGKILL once the first case's output is being staged: mid-case, mid-write.
    kill_batch_when(command, lambda: out.is_dir() and any(
        ".c0.partial-" in p.name for p in out.iterdir()), 120, "the first case was not written",
        poll_s=0.005)
    _cpus_back(60)

    before = read_outcomes(out / "batch.jsonl")
    assert "c0" not in before  # killed before its record: not done, whatever is on disk
    assert all(set(os.listdir(out / name)) == OUTPUT_FILES for name in case_folders(out)
               if name[0] != ".")  # a case folder is complete or absent
    assert main(["batch", str(manifest), "--out", str(out), "--resume", "--preset", "voxel",
                 "--iterations", "20", "--device", "cpu", "--progress", "none"]) == 0
    done = f", {len(before)} already done" if before else ""  # c1 ran beside c0
    assert f"2 ok, 0 failed{done};" in capsys.readouterr().out
    assert {r["case"]: r["status"] for r in read_outcomes(out / "batch.jsonl").values()} == {
        "c0": "ok", "c1": "ok"}
    assert case_folders(out) == ["c0", "c1"]
    assert all(set(os.listdir(out / f"c{i}")) == OUTPUT_FILES for i in range(2))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # staging removed


def test_a_crashed_worker_is_retried_then_recorded(local_ray, tmp_path):
    def flaky(entry, config, out_root, threads):
        marker = out_root / f"{entry.name}.crashed"
        if entry.name == "always" or not marker.exists():
            marker.touch()
            os._exit(1)  # the worker process dies, as in a segfault or an OOM kill
        return {"case": entry.name, "status": "ok", "seconds": 0.0}

    task = ray.remote(flaky).options(num_cpus=1, max_retries=0)
    cases = [BatchCase("once", tmp_path), BatchCase("always", tmp_path)]
    records = {r["case"]: r for r in _schedule(cases, task, ConfigRequest(), tmp_path, 1,
                                               retries=1, progress=False)}
    assert records["once"]["status"] == "ok" and records["once"]["attempts"] == 2
    assert records["always"]["status"] == "failed" and records["always"]["attempts"] == 2
    assert records["always"]["error"].startswith("WorkerCrashedError")


def test_transient_failures_are_told_from_the_others():
    import torch
    from ray import exceptions as errors

    assert is_transient(errors.WorkerCrashedError())
    assert is_transient(errors.OutOfMemoryError("node memory above threshold"))
    assert is_transient(errors.NodeDiedError("node lost"))
    assert is_transient(errors.RayTaskError("f", "", torch.OutOfMemoryError("CUDA OOM")))
    assert not is_transient(errors.RayTaskError("f", "", ValueError("a bug")))
    assert not is_transient(InputError("view1: empty"))


@pytest.fixture()
def inputs(small_case_dir, tmp_path):
    """A case folder, a ground truth and two view files under ``tmp_path``."""
    shutil.copytree(small_case_dir, tmp_path / "case")
    shutil.copy(small_case_dir.parent / "gt.nii.gz", tmp_path / "gt.nii.gz")
    for name in ("a.dcm", "b.dcm"):
        (tmp_path / name).write_bytes(b"DICM")
    return tmp_path


@pytest.mark.parametrize("text, message", [
    ("name,case_dir\np1,case\n", "unknown column 'name'"),
    ("case,gt\np1,gt.nii.gz\n", "missing column 'case_dir' (or the pair 'view1', 'view2')"),
    ("case,case_dir\np1,case\nP1,case\n", "line 3, case: 'P1' repeats the name of line 2"),
    ("case,case_dir\n../evil,case\n", "line 2, case: '../evil' is not a valid case name"),
    ("case,case_dir\na/b,case\n", "line 2, case: 'a/b' is not a valid case name"),
    ("case,case_dir\nbatch.jsonl,case\n", "is not a valid case name"),
    ("case,case_dir\np1,nowhere\n", "line 2, case_dir: "),
    ("case,case_dir,gt\np1,case,nogt.nii.gz\n", "line 2, gt: "),
    ("case,view1,view2\np1,a.dcm,\n", "line 2, view2: missing"),
    ("case,view1,view2\np1,a.dcm,missing.dcm\n", "line 2, view2: "),
    ("case,case_dir,view1,view2\np1,case,a.dcm,b.dcm\n", "either case_dir or view1/view2"),
    ("case,case_dir\n", "no cases"),
    ("case,case_dir\np1,case,extra\n", "line 2: more values than columns"),
])
def test_bad_manifests_exit_2_with_one_line(inputs, capsys, text, message):
    manifest = inputs / "cases.csv"
    manifest.write_text(text)
    assert main(["batch", str(manifest), "--out", str(inputs / "out"), *FAST]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"sdfcar batch: error: {manifest}") and error.count("\n") == 1
    assert message in error
    assert not (inputs / "out").exists()


def test_bad_json_manifests_and_options_exit_2(inputs, capsys):
    manifest = inputs / "cases.json"
    for text, message in [('{"case": "p1"}', "expected a list of objects"),
                          ('[{"case": "p1", "case_dir": 3}]', "item 1, case_dir: expected text"),
                          ('[{"case": "p1", "case_dir": "case"}', "not valid JSON")]:
        manifest.write_text(text)
        assert main(["batch", str(manifest), "--out", str(inputs / "out"), *FAST]) == 2
        assert message in capsys.readouterr().err
    manifest.write_text('[{"case": "p1", "case_dir": "case"}]')
    for option, message in [(["--gpus-per-case", "1.5"], "above 1 it must be a whole number"),
                            (["--cpus-per-case", "0"], "--cpus-per-case: expected a positive"),
                            (["--device", "cuda"], "--gpus-per-case: --device cuda needs"),
                            (["--set", "field.alpha=x"], "field.alpha: expected a number")]:
        assert main(["batch", str(manifest), "--out", str(inputs / "out"), *FAST, *option]) == 2
        assert message in capsys.readouterr().err
    assert not (inputs / "out").exists()


def test_manifest_rows_resolve_against_the_manifest_folder(inputs, tmp_path, monkeypatch):
    csv_cases = read_manifest(write_manifest(
        inputs / "cases.csv", [("p1", "case", "gt.nii.gz")]))
    (inputs / "cases.json").write_text(
        json.dumps([{"case": "p1", "case_dir": "case", "gt": "gt.nii.gz"}]))
    assert read_manifest(inputs / "cases.json") == csv_cases
    assert csv_cases == [BatchCase("p1", inputs / "case", None, inputs / "gt.nii.gz")]
    monkeypatch.chdir(inputs)
    assert read_manifest([{"case": "p1", "case_dir": "case", "gt": "gt.nii.gz"}]) == csv_cases

    pairs = read_manifest(write_manifest(inputs / "pairs.csv", [("x1", "a.dcm", "b.dcm", "")],
                                         header="case,view1,view2,gt"))
    assert pairs == [BatchCase("x1", None, (inputs / "a.dcm", inputs / "b.dcm"))]
    assert pairs[0].source() == {"view1": str(inputs / "a.dcm"), "view2": str(inputs / "b.dcm")}
