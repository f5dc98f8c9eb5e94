"""Hostile inputs for the ``sdfcar`` command line and the MONAI Label request handler, as
data: each case builds its inputs in a fresh folder, runs ``python -m sdfcar ...`` (or a
request through ``tests/hostile_request.py``) and is judged on its exit code, a single line
on stderr without a traceback, and inputs that are byte-identical afterwards.

Shared by ``tests/test_hostile_inputs.py`` and ``benchmarks/hostile_inputs.py`` (which
writes ``docs/reliability.md``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk

from sdfcar.geometry import CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.io.case import Case, write_case
from sdfcar.io.images import write_volume
from sdfcar.synthetic.simulate import project_label
from sdfcar.synthetic.xa import CineOptions, save_dataset, simulate_run, write_xa

REPOSITORY = Path(__file__).resolve().parents[1]
#: What runs a case's arguments: the command line, or one MONAI Label request.
PROGRAMS = {"sdfcar": ("-m", "sdfcar"),
            "request": (str(REPOSITORY / "tests" / "hostile_request.py"),)}
REAL_XA = REPOSITORY.parent / "shared" / "real-xa"
GRID = VolumeGrid((32, 32, 32), (1.5, 1.5, 1.5))
VIEWS = (ViewGeometry(30, 0, 1000, 750, (64, 64), (1.0, 1.0)),
         ViewGeometry(0, 30, 1000, 750, (64, 64), (1.0, 1.0)))
#: The field preset with few iterations (the default, sdf-tree, has no --iterations).
FAST = ["--preset", "field", "--iterations", "2", "--set", "voxel.iterations=2", "--device",
        "cpu", "--progress", "none"]
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
TIMEOUT_S = 240
#: Seconds from a batch's first line (Ray's start) to its signal: a case is then running.
BATCH_DELAY_S = 10.0


# ----------------------------------------------------------------------------- materials


def make_materials(root: Path) -> Path:
    """A small case folder, its label and geometry, and a synthetic XA run in ``root``."""
    t = np.linspace(0.0, np.pi, 200)
    centre = np.stack([12 * np.cos(t), 4 * np.sin(2 * t), 12 * np.sin(t) - 5], axis=-1)
    points = GRID.voxel_centers().reshape(-1, 3)
    distance = np.min(np.linalg.norm(points[:, None] - centre[None, ::4], axis=-1), axis=1)
    label = (distance.reshape(GRID.shape) <= 2.5).astype(np.uint8)
    geometry = CaseGeometry(VIEWS, GRID)
    views = project_label(label, GRID, VIEWS)
    write_case(root / "case", Case(geometry, tuple(views)))
    write_volume(root / "gt.nii.gz", label, GRID)
    (root / "geometry.json").write_text(geometry.to_json())
    run = simulate_run(views[0].astype(np.float64), VIEWS[0], CineOptions(frames=2), seed=0)
    write_xa(root / "xa.dcm", run)
    return root


def _copy(materials: Path, work: Path, name: str) -> Path:
    source = materials / name
    target = work / name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


# ----------------------------------------------------------------------------- the cases


Setup = Callable[[Path, Path], tuple[list[str], list[Path]]]
"""(materials, work folder) -> (arguments after ``sdfcar``, input paths to checksum)."""


@dataclass(frozen=True)
class HostileCase:
    """One hostile input: its group, name, set-up and expected exit code."""

    group: str
    name: str
    setup: Setup
    code: int = EXIT_BAD_INPUT
    interrupt: Interrupt | None = None  # a signal sent once the run has started
    needs: Path | None = None  # a folder that must exist (else the case is skipped)
    program: str = "sdfcar"  # a key of PROGRAMS
    expect: str = ""  # text the error line must contain (e.g. a request's status and field)

    @property
    def lines(self) -> int:
        """Lines expected on stderr (progress and log lines aside): one error line, or
        none from a run that succeeds."""
        return 0 if self.code == 0 else 1


@dataclass(frozen=True)
class Interrupt:
    """A signal sent to a run once it has started (its first log or progress line, then
    ``delay_s``), the output that must not exist afterwards, and the command run next in
    the same folder (a user's rerun, whose exit code is then the case's)."""

    signal: int
    output: str  # relative to the work folder
    delay_s: float = 0.0
    rerun: Callable[[Path], list[str]] | None = None  # work folder -> arguments


def _reconstruct(case: Path, work: Path, *extra: str) -> list[str]:
    return ["reconstruct", str(case), "--out", str(work / "rec"), *FAST, *extra]


def geometry_case(edit: Callable[[dict], object]) -> Setup:
    """Reconstruct the case with its geometry.json edited by ``edit`` (a dict -> JSON text
    or object)."""
    def setup(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
        case = _copy(materials, work, "case")
        data = json.loads((case / "geometry.json").read_text())
        edited = edit(data)
        edited = data if edited is None else edited
        text = edited if isinstance(edited, str) else json.dumps(edited)
        (case / "geometry.json").write_text(text)
        return _reconstruct(case, work), [case]
    return setup


def _set(path: str, value: object) -> Callable[[dict], None]:
    """An edit that sets (or with ``...`` deletes) a dotted key, list indices as numbers."""
    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        key = int(last) if last.isdigit() else last
        if value is ...:
            del node[key]
        else:
            node[key] = value
    return edit


def view_case(write: Callable[[Path, Path], None], name: str = "view1.nii.gz") -> Setup:
    """Reconstruct the case with ``view1.nii.gz`` replaced by ``write(case, path)``."""
    def setup(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
        case = _copy(materials, work, "case")
        (case / "view1.nii.gz").unlink()
        write(case, case / name)
        return _reconstruct(case, work), [case]
    return setup


def _image(array: np.ndarray, is_vector: bool = False) -> Callable[[Path, Path], None]:
    return lambda case, path: sitk.WriteImage(sitk.GetImageFromArray(array, isVector=is_vector),
                                              str(path))


def _view2_with(value: float) -> Callable[[Path, Path], None]:
    """The case's view 2 with one pixel set to ``value``, as MetaImage (SimpleITK's NIfTI
    writer turns NaN into 0)."""
    def write(case: Path, path: Path) -> None:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "view2.nii.gz")))
        array[10, 10] = value
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return write


def _cut(fraction: float, source: str = "case/view2.nii.gz") -> Callable[[Path, Path], None]:
    """Write the first ``fraction`` of the case's own ``view2.nii.gz`` (a sound view)."""
    def write(case: Path, path: Path) -> None:
        data = (case.parent / source).read_bytes()
        path.write_bytes(data[:int(len(data) * fraction)])
    return write


def _raw_nifti_cut(case: Path, path: Path) -> None:
    raw = gzip.decompress((case / "view2.nii.gz").read_bytes())
    path.write_bytes(raw[:len(raw) - 4000])


def _damaged_crc(case: Path, path: Path) -> None:
    data = bytearray((case / "view2.nii.gz").read_bytes())
    data[-6] ^= 0xFF
    path.write_bytes(bytes(data))


def simulate_case_with(edit_geometry: Callable[[dict], None] | None = None,
                       label: Callable[[Path, Path], None] | None = None) -> Setup:
    """``sdfcar simulate`` with an edited geometry file or a replaced label."""
    def setup(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
        geometry = _copy(materials, work, "geometry.json")
        gt = _copy(materials, work, "gt.nii.gz")
        if edit_geometry is not None:
            data = json.loads(geometry.read_text())
            edit_geometry(data)
            geometry.write_text(json.dumps(data))
        if label is not None:
            label(materials, gt)
        return (["simulate", "--label", str(gt), "--geometry", str(geometry), "--out",
                 str(work / "sim"), "--device", "cpu"], [geometry, gt])
    return setup


def dicom_case(edit: Callable[[pydicom.Dataset], None] | None = None,
               cut: float | None = None, command: str = "reconstruct",
               source: Path | None = None) -> Setup:
    """An XA file (the synthetic run, or ``source``) edited, cut short, or as it is, given
    to ``reconstruct --view1 X --view2 GOOD`` or to ``extract-vessels X``."""
    def setup(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
        good = _copy(materials, work, "xa.dcm")
        bad = work / "bad.dcm"
        origin = source or good
        if edit is not None:
            dataset = pydicom.dcmread(origin)
            edit(dataset)
            save_dataset(dataset, bad)
        else:
            data = origin.read_bytes()
            bad.write_bytes(data[:int(len(data) * cut)] if cut is not None else data)
        if command == "extract-vessels":
            return ["extract-vessels", str(bad), "--out", str(work / "ext")], [good, bad]
        return (["reconstruct", "--view1", str(bad), "--view2", str(good), "--out",
                 str(work / "rec"), "--device", "cpu", "--progress", "none"], [good, bad])
    return setup


def _dicom(name: str, setup: Setup, **options: Any) -> HostileCase:
    """A DICOM case: its error line must name the bad file."""
    return HostileCase("dicom", name, setup, expect="bad.dcm", **options)


def _delete(*keywords: str) -> Callable[[pydicom.Dataset], None]:
    def edit(dataset: pydicom.Dataset) -> None:
        for keyword in keywords:
            delattr(dataset, keyword)
    return edit


def _as_ct(dataset: pydicom.Dataset) -> None:
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    dataset.Modality = "CT"


def _as_rgb(dataset: pydicom.Dataset) -> None:
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 3, "RGB"
    dataset.PlanarConfiguration = 0
    dataset.PixelData = bytes(dataset.PixelData) * 3


def output_case(out: Callable[[Path, Path], Path], command: str = "reconstruct",
                overwrite: bool = True) -> Setup:
    """A command whose output path ``out(work, case)`` overlaps an input or a foreign
    folder; the whole work folder counts as input (nothing in it may change)."""
    def setup(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
        case = _copy(materials, work, "case")
        gt = _copy(materials, work, "gt.nii.gz")
        geometry = _copy(materials, work, "geometry.json")
        target = out(work, case)
        flag = ["--overwrite"] if overwrite else []
        arguments = {
            "reconstruct": ["reconstruct", str(case), "--out", str(target), *FAST],
            "simulate": ["simulate", "--label", str(gt), "--geometry", str(geometry),
                         "--out", str(target), "--device", "cpu"],
            "phantom": ["phantom", "--out", str(target), "--shape", "32", "32", "32"],
            "extract-vessels": ["extract-vessels", str(case / "view1.nii.gz"), "--out",
                                str(target)],
            "demo": ["demo", "--out", str(target), *FAST[:6], "--device", "cpu"],
        }[command]
        return [*arguments, *flag], [work]
    return setup


def _foreign(work: Path, case: Path) -> Path:
    folder = work / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("my own notes")
    return folder


def _symlink_to_case(work: Path, case: Path) -> Path:
    (work / "link").symlink_to(case)
    return work / "link"


def _under_a_file(work: Path, case: Path) -> Path:
    return case / "geometry.json" / "rec"


def _read_only(work: Path, case: Path) -> Path:
    """A folder on a read-only file system (permissions do not stop root)."""
    return Path("/proc/sdfcar-hostile/rec")


def manifest_case(rows: list[dict[str, str]] | str, suffix: str = ".csv",
                  out: str = "out") -> Setup:
    """``sdfcar batch`` on a manifest (rows with ``CASE`` standing for the case folder, or
    the manifest's text as it is) into ``work/out`` (or ``out``, relative to work)."""
    def setup(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
        case = _copy(materials, work, "case")
        manifest = work / f"manifest{suffix}"
        if isinstance(rows, str):
            manifest.write_text(rows)
        elif suffix == ".json":
            manifest.write_text(json.dumps([{k: v.replace("CASE", str(case))
                                             for k, v in row.items()} for row in rows]))
        else:
            keys = list(dict.fromkeys(k for row in rows for k in row))
            lines = [",".join(keys)] + [",".join(row.get(k, "").replace("CASE", str(case))
                                                 for k in keys) for row in rows]
            manifest.write_text("\n".join(lines) + "\n")
        return (["batch", str(manifest), "--out", str(work / out), "--num-cpus", "1",
                 "--progress", "none", *FAST[:6], "--overwrite"], [case, manifest])
    return setup


def option_case(*extra: str) -> Setup:
    """``reconstruct`` of the sound case with bad options."""
    def setup(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
        case = _copy(materials, work, "case")
        return ["reconstruct", str(case), "--out", str(work / "rec"), *extra], [case]
    return setup


def long_reconstruction(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
    """A reconstruction that runs for hours, reporting progress."""
    case = _copy(materials, work, "case")
    return (["reconstruct", str(case), "--out", str(work / "rec"), *FAST[:2],
             "--iterations", "100000", "--set", "voxel.iterations=2", "--device", "cpu",
             "--progress", "lines"], [case])


def long_batch(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
    """A batch of two cases that runs for hours."""
    case = _copy(materials, work, "case")
    manifest = work / "manifest.csv"
    manifest.write_text(f"case,case_dir\na,{case}\nb,{case}\n")
    return (["batch", str(manifest), "--out", str(work / "out"), "--num-cpus", "1",
             "--progress", "none", *FAST[:2], "--iterations", "100000", "--set",
             "voxel.iterations=2"],
            [case, manifest])


def reconstruction_rerun(work: Path) -> list[str]:
    """The short reconstruction of the case into the killed run's ``rec``."""
    return _reconstruct(work / "case", work)


def batch_resumed(work: Path) -> list[str]:
    """The killed batch resumed, short."""
    return ["batch", str(work / "manifest.csv"), "--out", str(work / "out"), "--num-cpus",
            "1", "--progress", "none", *FAST[:6], "--resume"]


def request_case(request: dict, link: bool = False) -> Setup:
    """One MONAI Label request (``image`` etc.) against a studies folder holding the case as
    ``case_view1``, ``case_view2`` and ``case_geometry.json`` (and with ``link``, a
    ``link_view1`` pointing outside it); the whole work folder counts as input."""
    def setup(materials: Path, work: Path) -> tuple[list[str], list[Path]]:
        case = _copy(materials, work, "case")
        studies = work / "studies"
        studies.mkdir()
        for name in ("view1.nii.gz", "view2.nii.gz", "geometry.json"):
            shutil.copy2(case / name, studies / f"case_{name}")
        if link:
            (studies / "link_view1.nii.gz").symlink_to(case / "view1.nii.gz")
            (studies / "link_view2.nii.gz").symlink_to(studies / "case_view2.nii.gz")
        (work / "out").mkdir()
        return ([str(studies), json.dumps({"device": "cpu", **request}), str(work / "out")],
                [work])
    return setup


def _huge_request_geometry(field: str, value: list[int]) -> dict:
    data = CaseGeometry(VIEWS, GRID).to_dict()
    if field == "volume":
        data["volume"]["shape"] = value
    else:
        data["views"][0]["detector_shape"] = value
    return data


_VIEW = "views.0"
CASES: tuple[HostileCase, ...] = (
    # geometry.json
    HostileCase("geometry", "no views key", geometry_case(_set("views", ...))),
    HostileCase("geometry", "views not a list", geometry_case(_set("views", "two"))),
    HostileCase("geometry", "one view", geometry_case(lambda d: {**d, "views": d["views"][:1]})),
    HostileCase("geometry", "three views", geometry_case(
        lambda d: d["views"].append(d["views"][0]))),
    HostileCase("geometry", "missing primary angle",
                geometry_case(_set(f"{_VIEW}.primary_angle_deg", ...))),
    HostileCase("geometry", "unknown view key", geometry_case(_set(f"{_VIEW}.angle", 3))),
    HostileCase("geometry", "unknown top-level key", geometry_case(_set("extra", 1))),
    HostileCase("geometry", "SID is text",
                geometry_case(_set(f"{_VIEW}.source_to_detector_mm", "far"))),
    HostileCase("geometry", "SOD is NaN", geometry_case(
        lambda d: json.dumps(d).replace('"source_to_isocenter_mm": 750.0',
                                        '"source_to_isocenter_mm": NaN', 1))),
    HostileCase("geometry", "SOD >= SID",
                geometry_case(_set(f"{_VIEW}.source_to_isocenter_mm", 1200))),
    HostileCase("geometry", "negative pixel spacing",
                geometry_case(_set(f"{_VIEW}.detector_spacing_mm", [-1, 1]))),
    HostileCase("geometry", "zero detector rows",
                geometry_case(_set(f"{_VIEW}.detector_shape", [0, 64]))),
    HostileCase("geometry", "fractional detector shape",
                geometry_case(_set(f"{_VIEW}.detector_shape", [64.5, 64]))),
    HostileCase("geometry", "huge volume shape",
                geometry_case(_set("volume.shape", [4000, 4000, 4000]))),
    HostileCase("geometry", "zero voxel spacing",
                geometry_case(_set("volume.spacing_mm", [0, 1.5, 1.5]))),
    HostileCase("geometry", "infinite angle", geometry_case(
        lambda d: json.dumps(d).replace('"primary_angle_deg": 30.0',
                                        '"primary_angle_deg": Infinity', 1))),
    HostileCase("geometry", "not JSON", geometry_case(lambda d: "{views: [")),
    HostileCase("geometry", "empty file", geometry_case(lambda d: "")),
    HostileCase("geometry", "a list at the top", geometry_case(lambda d: [d])),
    HostileCase("geometry", "huge detectors (simulate)", simulate_case_with(
        _set(f"{_VIEW}.detector_shape", [100000, 100000]))),
    HostileCase("geometry", "huge volume for a huge label header (simulate)",
                simulate_case_with(label=lambda m, path: path.write_bytes(
                    gzip.compress(_huge_nifti_header())))),
    # views
    HostileCase("views", "view1 missing", view_case(lambda case, path: None)),
    HostileCase("views", "wrong size", view_case(_image(np.ones((60, 64), np.float32)))),
    HostileCase("views", "a NaN pixel", view_case(_view2_with(np.nan), "view1.mha")),
    HostileCase("views", "an infinite pixel", view_case(_view2_with(-np.inf), "view1.mha")),
    HostileCase("views", "RGB PNG", view_case(_image(np.zeros((64, 64, 3), np.uint8), True),
                                              "view1.png")),
    HostileCase("views", "truncated gzip (60 %)", view_case(_cut(0.6))),
    HostileCase("views", "damaged gzip CRC", view_case(_damaged_crc)),
    HostileCase("views", "truncated uncompressed NIfTI", view_case(_raw_nifti_cut,
                                                                   "view1.nii")),
    HostileCase("views", "empty file", view_case(lambda case, path: path.write_bytes(b""))),
    HostileCase("views", "text named .nii.gz", view_case(
        lambda case, path: path.write_text("not an image"))),
    HostileCase("views", "3D view", view_case(_image(np.ones((3, 64, 64), np.float32)))),
    HostileCase("views", "all zeros", view_case(_image(np.zeros((64, 64), np.float32)))),
    HostileCase("views", "two files for view 1", view_case(
        lambda case, path: (shutil.copy(case / "view2.nii.gz", path),
                            _image(np.ones((64, 64), np.uint8))(case, case / "view1.png")))),
    HostileCase("views", "label missing (simulate)", simulate_case_with(
        label=lambda m, path: path.unlink())),
    HostileCase("views", "label truncated (simulate)", simulate_case_with(
        label=lambda m, path: path.write_bytes(path.read_bytes()[:200]))),
    HostileCase("views", "label is 2D (simulate)", simulate_case_with(
        label=lambda m, path: sitk.WriteImage(sitk.GetImageFromArray(
            np.ones((32, 32), np.uint8)), str(path)))),
    HostileCase("views", "label is empty (simulate)", simulate_case_with(
        label=lambda m, path: sitk.WriteImage(sitk.GetImageFromArray(
            np.zeros((32, 32, 32), np.uint8)), str(path)))),
    # DICOM
    _dicom("CT, not XA", dicom_case(_as_ct)),
    _dicom("no SID tag", dicom_case(_delete("DistanceSourceToDetector"))),
    _dicom("no angles", dicom_case(_delete("PositionerPrimaryAngle"))),
    _dicom("no pixel spacing", dicom_case(_delete("ImagerPixelSpacing"))),
    _dicom("RGB", dicom_case(_as_rgb)),
    _dicom("no pixel data", dicom_case(_delete("PixelData"))),
    _dicom("truncated pixel data", dicom_case(cut=0.9)),
    _dicom("truncated header", dicom_case(cut=0.05)),
    _dicom("truncated (extract-vessels)", dicom_case(
        cut=0.9, command="extract-vessels")),
    _dicom("text named .dcm", dicom_case(cut=0.0)),
    _dicom("JPEG Lossless truncated (real XA)",
                dicom_case(cut=0.6, source=REAL_XA / "IM6.dcm"), needs=REAL_XA),
    _dicom("JPEG Lossless without any pixel spacing tag (real XA IM1, "
                "FieldOfViewDimensions removed)",
                dicom_case(_delete("FieldOfViewDimensions"), source=REAL_XA / "IM1.dcm",
                           command="extract-vessels"),
                needs=REAL_XA),
    # outputs
    HostileCase("outputs", "out = case", output_case(lambda w, c: c, overwrite=False)),
    HostileCase("outputs", "out = case, --overwrite", output_case(lambda w, c: c)),
    HostileCase("outputs", "out = parent of the case, --overwrite",
                output_case(lambda w, c: w)),
    HostileCase("outputs", "out inside the case", output_case(lambda w, c: c / "rec")),
    HostileCase("outputs", "out = a view file, --overwrite",
                output_case(lambda w, c: c / "view1.nii.gz")),
    HostileCase("outputs", "symlinked out pointing at the case, --overwrite",
                output_case(_symlink_to_case)),
    HostileCase("outputs", "foreign folder, --overwrite", output_case(_foreign)),
    HostileCase("outputs", "foreign folder, no --overwrite",
                output_case(_foreign, overwrite=False)),
    HostileCase("outputs", "out under a file", output_case(_under_a_file)),
    HostileCase("outputs", "read-only folder", output_case(_read_only)),
    HostileCase("outputs", "simulate: out = label file, --overwrite",
                output_case(lambda w, c: w / "gt.nii.gz", "simulate")),
    HostileCase("outputs", "simulate: out = folder of the label, --overwrite",
                output_case(lambda w, c: w, "simulate")),
    HostileCase("outputs", "simulate: foreign folder, --overwrite",
                output_case(_foreign, "simulate")),
    HostileCase("outputs", "phantom: out is a folder, --overwrite",
                output_case(lambda w, c: c, "phantom")),
    HostileCase("outputs", "extract-vessels: out = the image's folder, --overwrite",
                output_case(lambda w, c: c, "extract-vessels")),
    HostileCase("outputs", "demo: foreign folder, --overwrite",
                output_case(_foreign, "demo")),
    # batch manifests
    HostileCase("batch", "path traversal in a case name",
                manifest_case([{"case": "../evil", "case_dir": "CASE"}])),
    HostileCase("batch", "absolute case name",
                manifest_case([{"case": "/tmp/evil", "case_dir": "CASE"}])),
    HostileCase("batch", "duplicate case names", manifest_case(
        [{"case": "a", "case_dir": "CASE"}, {"case": "a", "case_dir": "CASE"}])),
    HostileCase("batch", "no case_dir or views column", manifest_case([{"case": "a"}])),
    HostileCase("batch", "case named like the log",
                manifest_case([{"case": "batch.jsonl", "case_dir": "CASE"}])),
    HostileCase("batch", "unknown column",
                manifest_case([{"case": "a", "case_dir": "CASE", "colour": "red"}])),
    HostileCase("batch", "empty manifest", manifest_case("")),
    HostileCase("batch", "broken JSON manifest", manifest_case("[{", ".json")),
    HostileCase("batch", "manifest missing", lambda m, w: (
        ["batch", str(w / "none.csv"), "--out", str(w / "out")], [w])),
    HostileCase("batch", "out = the case folder's parent, case named like the folder",
                manifest_case([{"case": "case", "case_dir": "CASE"}], out=".")),
    HostileCase("batch", "out inside the case folder",
                manifest_case([{"case": "a", "case_dir": "CASE"}], out="case/out")),
    # MONAI Label requests
    *(HostileCase("monailabel", name, request_case(request, link=name.startswith("link")),
                  program="request", expect=expect) for name, request, expect in (
        ("path traversal in the image id", {"image": "../case/view1"}, "400: image: "),
        ("absolute image id", {"image": "/etc/passwd"}, "400: image: "),
        ("NUL in the image id", {"image": "case_view1\0.png"}, "400: image: "),
        ("path traversal in view2", {"image": "case_view1", "view2": "../../case/view2"},
         "400: view2: "),
        ("link_view1: a link out of the studies folder", {"image": "link_view1"},
         "400: image: link_view1.nii.gz resolves outside"),
        ("iterations 10^9", {"image": "case_view1", "iterations": 10**9}, "400: iterations: "),
        ("negative seed", {"image": "case_view1", "seed": -1}, "400: seed: "),
        ("device of the wrong type", {"image": "case_view1", "device": ["cpu"]},
         "400: device: "),
        ("10^9 iterations in overrides",
         {"image": "case_view1", "overrides": ["voxel.iterations=1000000000"]},
         "400: voxel.iterations: "),
        ("hash table of 2^40 entries",
         {"image": "case_view1", "overrides": ["field.network.log2_hashmap_size=40"]},
         "400: field.network.log2_hashmap_size: "),
        ("huge volume in the request's geometry",
         {"image": "case_view1", "geometry": _huge_request_geometry("volume", [4000] * 3)},
         "400: geometry: volume.shape"),
        ("negative detector size in the request's geometry",
         {"image": "case_view1", "geometry": _huge_request_geometry("view", [-64, 64])},
         "400: geometry: views[0].detector_shape[0]: "),
    )),
    # options
    HostileCase("options", "negative iterations", option_case("--iterations", "-1")),
    HostileCase("options", "unknown preset", option_case("--preset", "nope")),
    HostileCase("options", "unknown --set key", option_case("--set", "field.nope=1")),
    HostileCase("options", "seed is text", option_case("--seed", "one")),
    HostileCase("options", "no case folder", lambda m, w: (
        ["reconstruct", "--out", str(w / "rec")], [w])),
    HostileCase("options", "case folder missing", lambda m, w: (
        ["reconstruct", str(w / "nothing"), "--out", str(w / "rec")], [w])),
    # interrupts
    HostileCase("interrupts", "SIGINT during reconstruct", long_reconstruction,
                EXIT_INTERRUPTED, Interrupt(signal.SIGINT, "rec")),
    HostileCase("interrupts", "SIGKILL during reconstruct, then a rerun into the same --out",
                long_reconstruction, 0,
                Interrupt(signal.SIGKILL, "rec", rerun=reconstruction_rerun)),
    HostileCase("interrupts", "SIGINT during batch", long_batch, EXIT_INTERRUPTED,
                Interrupt(signal.SIGINT, "out/a", delay_s=BATCH_DELAY_S)),
    HostileCase("interrupts", "SIGKILL during batch, then batch --resume", long_batch, 0,
                Interrupt(signal.SIGKILL, "out/a", delay_s=BATCH_DELAY_S, rerun=batch_resumed)),
)


def _huge_nifti_header() -> bytes:
    """A NIfTI-1 header claiming 4000^3 uint8 voxels, with no voxel data."""
    header = bytearray(352)
    header[0:4] = np.int32(348).tobytes()
    header[40:56] = np.array([3, 4000, 4000, 4000, 1, 1, 1, 1], np.int16).tobytes()
    header[70:74] = np.array([2, 8], np.int16).tobytes()  # uint8, 8 bits
    header[76:108] = np.array([1, 1, 1, 1, 1, 1, 1, 1], np.float32).tobytes()
    header[108:112] = np.float32(352).tobytes()
    header[344:348] = b"n+1\0"
    return bytes(header)


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Outcome:
    """What a case did: exit code, stderr lines (progress left out), whether every
    input file is byte-identical, and what was left beside the output."""

    code: int
    stderr: tuple[str, ...]
    inputs_unchanged: bool
    leftovers: tuple[str, ...]
    #: For an interrupted case: the signalled run's exit code, and whether its output
    #: existed afterwards.
    interrupted: tuple[int, bool] | None = None

    @property
    def first_line(self) -> str:
        return self.stderr[0] if self.stderr else ""


def shown_command(case: HostileCase, arguments: list[str], work: Path) -> str:
    """The case's command line as a user would type it (and the rerun after a signal)."""
    program = "sdfcar" if case.program == "sdfcar" else "python tests/hostile_request.py"
    shown = " ".join([program, *arguments])
    if case.interrupt is not None:
        shown += f" ({signal.Signals(case.interrupt.signal).name})"
        if case.interrupt.rerun is not None:
            shown += " then " + " ".join([program, *case.interrupt.rerun(work)])
    return shown


def checksums(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file under ``paths`` (symbolic links are not followed)."""
    sums = {}
    for path in paths:
        files = [path] if not path.is_dir() or path.is_symlink() else sorted(path.rglob("*"))
        for file in files:
            if file.is_file() and not file.is_symlink():
                sums[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
            elif file.is_symlink():
                sums[str(file)] = f"-> {os.readlink(file)}"
    return sums


def environment() -> dict[str, str]:
    """The environment of the runs: this repository first on the path, no colours."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), env.get("PYTHONPATH", "")])
    return env


def run_case(case: HostileCase, materials: Path, work: Path) -> tuple[list[str], Outcome]:
    """Set the case up in ``work`` and run it; returns its arguments and outcome."""
    work.mkdir(parents=True, exist_ok=True)
    arguments, inputs = case.setup(materials, work)
    before = checksums(inputs)
    command = [sys.executable, *PROGRAMS[case.program], *arguments]
    interrupted = None
    if case.interrupt is None:
        code, stderr = _run(command, work)
    else:
        code, stderr = _interrupt(command, work, case.interrupt)
        interrupted = (code, (work / case.interrupt.output).exists())
        if case.interrupt.rerun is not None:
            rerun = [sys.executable, *PROGRAMS[case.program], *case.interrupt.rerun(work)]
            code, stderr = _run(rerun, work)
    # Progress lines, and the log lines of a run that got as far as iterating, are not
    # errors.
    lines = tuple(line for line in stderr.splitlines() if line.strip() and not (
        _chatter(line) if case.interrupt else line.startswith("PROGRESS ")))
    leftovers = tuple(sorted(p.name for p in work.rglob(".*partial-*")))
    return arguments, Outcome(code, lines, checksums(inputs) == before, leftovers, interrupted)


def _run(command: list[str], work: Path) -> tuple[int, str]:
    done = subprocess.run(command, cwd=work, env=environment(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    return done.returncode, done.stderr


#: Ray's own log lines (``2026-12-03 08:27:32,356\tWARNING file.py:85 -- ...``).
RAY_LOG = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+[A-Z]+ ")


def _chatter(line: str) -> bool:
    """A progress or log line of a run that has started (sdfcar's or Ray's)."""
    return line.startswith(("PROGRESS ", "sdfcar: ")) or bool(RAY_LOG.match(line))


def _interruptible() -> None:
    """In the child: SIGINT as a terminal delivers it, even when this suite itself runs with
    SIGINT ignored (a shell's background job), which the child would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(command: list[str], work: Path, interrupt: Interrupt) -> tuple[int, str]:
    """Start ``command`` in a session of its own, send it ``interrupt.signal`` once it has
    started (its first log or progress line comes from inside the run, past the imports)
    and ``interrupt.delay_s`` later, and collect stderr; then kill what it left running
    (a killed batch's Ray processes)."""
    process = subprocess.Popen(command, cwd=work, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_interruptible)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if _chatter(line):
                started.set()
        started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started.wait(TIMEOUT_S)
    time.sleep(interrupt.delay_s)
    process.send_signal(interrupt.signal)
    process.wait(timeout=TIMEOUT_S)
    if interrupt.signal != signal.SIGKILL:
        reader.join(TIMEOUT_S)  # the run exits by itself: read all it wrote
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    reader.join(TIMEOUT_S)
    return process.returncode, "".join(lines)


def problems(case: HostileCase, outcome: Outcome, work: Path) -> list[str]:
    """What the case did other than expected (nothing: it passed)."""
    found = []
    if outcome.code != case.code:
        found.append(f"exit {outcome.code}, expected {case.code}")
    if len(outcome.stderr) != case.lines:
        found.append(f"{len(outcome.stderr)} line(s) on stderr, expected {case.lines}: "
                     f"{list(outcome.stderr)}")
    line = outcome.first_line
    if case.lines and line:
        if "Traceback" in line or not line.startswith("sdfcar "):
            found.append(f"not an sdfcar error line: {line!r}")
        if case.expect not in line:
            found.append(f"the error line lacks {case.expect!r}")
        if ": :" in line:
            found.append("an empty field in 'file: field: message'")
    if not outcome.inputs_unchanged:
        found.append("an input changed")
    if outcome.leftovers:
        found.append(f"left behind: {', '.join(outcome.leftovers)}")
    if case.interrupt is not None:
        found += _interrupt_problems(case.interrupt, outcome, work, line)
    return found


def _interrupt_problems(interrupt: Interrupt, outcome: Outcome, work: Path,
                        line: str) -> list[str]:
    code, output_left = outcome.interrupted
    expected = EXIT_INTERRUPTED if interrupt.signal == signal.SIGINT else -interrupt.signal
    found = [] if code == expected else [f"the signalled run exited {code}, not {expected}"]
    if output_left:
        found.append(f"the signalled run left {interrupt.output}")
    if interrupt.rerun is None and not line.endswith(": interrupted"):
        found.append(f"no 'interrupted' line: {line!r}")
    if interrupt.rerun is not None and not (work / interrupt.output / "run.json").is_file():
        found.append(f"the rerun did not write {interrupt.output}/run.json")
    return found
