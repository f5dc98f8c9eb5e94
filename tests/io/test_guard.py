"""Inputs are sacred: outputs never equal, contain or lie inside an input, and --overwrite
replaces only folders that sdfcar wrote (sdfcar.io.guard, sdfcar.io.atomic)."""

import json
import os
import subprocess
import sys

import pytest

from sdfcar.errors import InputError
from sdfcar.io.atomic import atomic_directory, atomic_file, check_target
from sdfcar.io.guard import MARKER, check_not_input, written_by_sdfcar


@pytest.fixture
def case(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "geometry.json").write_text("{}")
    (folder / "view1.nii.gz").write_bytes(b"view")
    return folder


@pytest.mark.parametrize("target, problem", [
    ("case", "is the input"),
    (".", "contains the input"),
    ("case/out", "lies inside the input"),
    ("case/../case/sub/../out", "lies inside the input"),
    ("case/view1.nii.gz", "lies inside the input"),
])
def test_outputs_overlapping_an_input_are_refused(case, monkeypatch, target, problem):
    monkeypatch.chdir(case.parent)
    for overwrite in (False, True):
        with pytest.raises(InputError, match=problem) as caught:
            check_target(target, overwrite, [case], folder=True)
        assert "\n" not in str(caught.value) and str(caught.value).startswith(target)
    assert sorted(p.name for p in case.iterdir()) == ["geometry.json", "view1.nii.gz"]


def test_a_symlink_to_an_input_is_the_input(case, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(case)
    with pytest.raises(InputError, match="is the input"):
        check_not_input(link, [case])
    with pytest.raises(InputError, match="lies inside the input"):
        check_not_input(tmp_path / "elsewhere" / ".." / "link" / "out", [case])
    file_link = tmp_path / "view.nii.gz"
    file_link.symlink_to(case / "view1.nii.gz")
    with pytest.raises(InputError, match="is the input"):
        with atomic_file(file_link, overwrite=True, inputs=[case / "view1.nii.gz"]):
            pass
    assert (case / "view1.nii.gz").read_bytes() == b"view"


def test_a_hard_link_to_an_input_file_is_the_input(case, tmp_path):
    os.link(case / "view1.nii.gz", tmp_path / "same.nii.gz")
    with pytest.raises(InputError, match="is the input"):
        check_target(tmp_path / "same.nii.gz", True, [case / "view1.nii.gz"])


def test_unrelated_and_empty_inputs_are_fine(case, tmp_path):
    assert check_target(tmp_path / "rec", False, [case, None, ""], folder=True) \
        == tmp_path / "rec"
    assert check_target(tmp_path / "casebook", False, [case]) == tmp_path / "casebook"


def test_folders_get_a_marker_and_only_marked_folders_are_replaced(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as staging:
        (staging / "a.txt").write_text("a")
    record = json.loads((out / MARKER).read_text())
    assert record["tool"] == "sdfcar" and record["version"] and record["written"]
    assert written_by_sdfcar(out)
    with atomic_directory(out, overwrite=True) as staging:
        (staging / "b.txt").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.txt"]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not written by sdfcar: refusing to replace it"):
        with atomic_directory(foreign, overwrite=True):
            pass
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(InputError, match="not written by sdfcar"):
        check_target(a_file, True, folder=True)
    with pytest.raises(InputError, match="is a folder"):
        check_target(foreign, True)
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_legacy_run_records_and_empty_folders_may_be_replaced(tmp_path):
    legacy = tmp_path / "rec"
    legacy.mkdir()
    (legacy / "run.json").write_text("{}")
    demo = tmp_path / "demo"
    (demo / "reconstruction").mkdir(parents=True)
    (demo / "reconstruction" / "run.json").write_text("{}")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert all(written_by_sdfcar(p) for p in (legacy, demo, empty))
    for folder in (legacy, demo, empty):
        assert check_target(folder, True, folder=True) == folder


def _finished_pid() -> int:
    """The process id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_staging_copies_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead, alive = _finished_pid(), os.getppid()
    stale_folder = tmp_path / f".rec.partial-{dead}-0a1b2c"
    stale_folder.mkdir()
    (stale_folder / "label.nii.gz").write_bytes(b"half")
    running = tmp_path / f".rec.partial-{alive}-0a1b2c"  # a writer still at work
    running.mkdir()
    stale_file = tmp_path / f".view1.partial-{dead}-3d4e5f.nii.gz"
    stale_file.write_bytes(b"half")
    other = tmp_path / f".record.partial-{dead}-0a1b2c"  # another target's copy
    other.mkdir()
    with atomic_directory(tmp_path / "rec") as staging:
        (staging / "a.txt").write_text("a")
    assert not stale_folder.exists() and running.is_dir() and other.is_dir()
    with atomic_file(tmp_path / "view1.nii.gz") as temporary:
        temporary.write_bytes(b"whole")
    assert not stale_file.exists() and (tmp_path / "view1.nii.gz").read_bytes() == b"whole"
