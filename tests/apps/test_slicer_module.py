"""The 3D Slicer extension outside Slicer: helpers, result import against real MRML classes
(``slicer-core``), the .ui, the module file and the CMake files.

The module file itself needs the Slicer application (Qt, the parameter node wrapper), so it
is only compiled here; ``SlicerSDFCARTest`` inside it runs a reconstruction in Slicer.
"""

import ast
import json
import math
import os
import py_compile
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import pydicom
import SimpleITK as sitk

from sdfcar.io.case import load_case
from sdfcar.apps.cli import build_parser, main
from sdfcar.config import PRESETS as ENGINE_PRESETS
from sdfcar.device import DEVICE_CHOICES
from sdfcar.errors import InputError
from sdfcar.geometry import ViewGeometry
from sdfcar.io.images import read_volume
from sdfcar.synthetic.xa import CineOptions, save_dataset, simulate_run, write_xa

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "SlicerSDFCAR"
MODULE_FILE = MODULE_DIR / "SlicerSDFCAR.py"
LIB_DIR = MODULE_DIR / "SlicerSDFCARLib"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SlicerSDFCAR.ui"
WIDGET_TEST = MODULE_DIR / "Testing" / "Python" / "SlicerSDFCARWidgetTest.py"
sys.path.insert(0, str(MODULE_DIR))

from SlicerSDFCARLib.case_folder import make_run_folder, write_case_folder  # noqa: E402
from SlicerSDFCARLib.command import (  # noqa: E402
    AUTOMATIC_PRESET, DEVICES, PRESET_CHOICES, PRESETS, EngineSettings, engine_preset,
    parse_overrides, reconstruct_command, xa_reconstruct_command)
from SlicerSDFCARLib.dicom import (  # noqa: E402
    FIELDS, geometry_command, parse_geometry, read_geometry)
from SlicerSDFCARLib.geometry import ViewSettings, volume_contract  # noqa: E402
from SlicerSDFCARLib.process import BackgroundProcess  # noqa: E402
from SlicerSDFCARLib.process_output import OutputMonitor, parse_progress  # noqa: E402

from sdfcar.progress import Step as Progress  # noqa: E402
from SlicerSDFCARLib.requirements import (  # noqa: E402
    install_arguments, local_source, missing_requirements, read_requirements)
from SlicerSDFCARLib.results import (  # noqa: E402
    SEGMENTATION_FILE, ResultImportError, import_results, import_xa_views, qca_line,
    working_view_camera)
from SlicerSDFCARLib.validation import ViewInput, has_errors, validate_views  # noqa: E402
from SlicerSDFCARLib.xa_input import (  # noqa: E402
    OVERRIDES_FILE, chosen_frames, edited_fields, xa_run_command)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def settings(primary=0.0, secondary=0.0, sid=1000.0, sod=750.0, spacing=(0.3, 0.3)):
    return ViewSettings(primary, secondary, sid, sod, spacing)


def drain(process, monitor, timeout_s=120.0):
    """Feed a process's output to ``monitor`` until it ends; returns its exit status."""
    deadline = time.monotonic() + timeout_s
    while True:
        for stream, line in process.read_lines():
            monitor.feed(stream, line)
        if process.returncode is not None:
            for stream, line in process.read_lines():
                monitor.feed(stream, line)
            return process.returncode
        assert time.monotonic() < deadline, "process did not end"
        time.sleep(0.02)


# ----------------------------------------------------------------------------- geometry


def test_contract_dicts_are_accepted_by_the_engine():
    view = settings(29.7, 0.1, 993, 757.06, (0.278, 0.279)).to_contract((512, 480))
    parsed = ViewGeometry.from_dict(view)
    assert parsed.detector_shape == (512, 480) and parsed.detector_spacing_mm == (0.278, 0.279)
    assert volume_contract(64, 0.5) == {"shape": [64] * 3, "spacing_mm": [0.5] * 3,
                                        "center_mm": [0.0] * 3}


# ----------------------------------------------------------------------------- validation


def view_input(primary=0.0, secondary=0.0, image_id="a", shape=(1, 96, 96), frame=0, **kw):
    return ViewInput(settings(primary, secondary, **kw), image_id, shape, frame)


def messages(issues, level):
    return [i.message for i in issues if i.level == level]


def test_close_views_warn_from_the_true_beam_angle_not_the_angle_difference():
    # 90 degrees of primary angle apart, but both look down from the head: 7 degrees apart.
    issues = validate_views([view_input(0, 85), view_input(90, 85, image_id="b")])
    assert not has_errors(issues)
    [warning] = messages(issues, "warning")
    assert "7.1\u00b0 apart" in warning and "20\u00b0" in warning
    # 45 degrees of primary difference is enough when the views are not steep.
    assert validate_views([view_input(0, 0), view_input(45, 0, image_id="b")]) == []
    # LAO 90 and RAO 90 are opposite views.
    [opposite] = messages(validate_views([view_input(90), view_input(-90, image_id="b")]),
                          "warning")
    assert "180.0\u00b0 apart" in opposite


def test_invalid_views_are_errors_that_name_the_view():
    issues = validate_views([view_input(sod=1200), view_input(image_id=None, shape=None)])
    assert has_errors(issues) and issues[0].level == "error"
    assert any("View 1" in m and "must be less than" in m for m in messages(issues, "error"))
    assert "View 2: select an image volume" in messages(issues, "error")
    cine = validate_views([view_input(shape=(10, 96, 96), frame=10),
                           view_input(primary=60, image_id="b", spacing=(0.0, 0.3))])
    assert any("frame 10 does not exist" in m for m in messages(cine, "error"))
    assert any("View 2" in m and "spacing" in m for m in messages(cine, "error"))
    same = validate_views([view_input(shape=(10, 96, 96), frame=3),
                           view_input(60, shape=(10, 96, 96), frame=3)])
    assert messages(same, "error") == ["View 1 and view 2 are the same image: pick two "
                                       "projections"]
    other_frame = validate_views([view_input(shape=(10, 96, 96), frame=3),
                                  view_input(60, shape=(10, 96, 96), frame=7)])
    assert other_frame == []


# ----------------------------------------------------------------------------- DICOM


XA_VIEW = ViewGeometry(29.7, -12.5, 993, 757.06, (64, 64), (0.278, 0.2781))


@pytest.fixture(scope="module")
def xa_file(tmp_path_factory):
    """A synthetic 3-frame XA run at ``XA_VIEW`` (primary angle stepping 2 degrees per frame)."""
    run = simulate_run(np.zeros(XA_VIEW.detector_shape), XA_VIEW, CineOptions(frames=3), seed=0)
    path = write_xa(tmp_path_factory.mktemp("xa") / "run.dcm", run)
    dataset = pydicom.dcmread(path)
    dataset.PositionerPrimaryAngleIncrement = 2.0
    return save_dataset(dataset, path)


def engine_answer(capsys, *arguments):
    """Exit status, stdout and stderr of ``sdfcar xa-geometry ...`` (the module's command)."""
    code = main(geometry_command("python", *arguments)[3:])
    out, err = capsys.readouterr()
    return code, out, err


def test_geometry_command_is_the_engines_with_frames_from_one(tmp_path):
    command = geometry_command("python3", tmp_path / "a.dcm", 4)
    assert command[:4] == ["python3", "-m", "sdfcar", "xa-geometry"]
    args = build_parser().parse_args(command[3:])
    assert (args.image, args.frame) == (tmp_path / "a.dcm", 5)
    with pytest.raises(ValueError, match="frame"):
        geometry_command("python3", "a.dcm", -1)


def test_geometry_of_an_xa_file_is_what_the_engine_reads(xa_file, capsys):
    from sdfcar.xa import read_xa

    found = parse_geometry(*engine_answer(capsys, xa_file, 2))  # the module's frame 2
    assert found.complete and found.notes == []
    engine = read_xa(xa_file).view(3)  # = the command line's frame 3
    assert found.values == {**{name: getattr(engine, name) for name in FIELDS[:-1]},
                            "detector_spacing_mm": (0.278, 0.2781)}
    assert found.values["primary_angle_deg"] == pytest.approx(29.7 + 2 * 2.0)


def test_geometry_notes_give_the_engines_warning_or_reason(xa_file, capsys, tmp_path):
    dataset = pydicom.dcmread(xa_file)
    dataset.PixelSpacing = dataset.ImagerPixelSpacing
    del dataset.ImagerPixelSpacing
    fallback = parse_geometry(*engine_answer(capsys, save_dataset(dataset, tmp_path / "p.dcm")))
    assert fallback.complete
    assert any("ImagerPixelSpacing (0018,1164) missing; using PixelSpacing" in note
               for note in fallback.notes)
    del dataset.DistanceSourceToPatient
    missing = parse_geometry(*engine_answer(capsys, save_dataset(dataset, tmp_path / "m.dcm")))
    assert missing.values == {} and not missing.complete
    [note] = missing.notes
    assert note.endswith("DistanceSourceToPatient (0018,1111): missing tag (give "
                         "source_to_isocenter_mm as a geometry override)")
    beyond = parse_geometry(*engine_answer(capsys, xa_file, 3))
    assert beyond.notes == [f"{xa_file}: frame: expected 1 to 3, got 4"]
    assert parse_geometry(1, "", "Traceback ...\nModuleNotFoundError: No module named "
                                 "'sdfcar'\n").notes == ["ModuleNotFoundError: No module "
                                                          "named 'sdfcar'"]
    assert parse_geometry(0, "{}", "").notes[0].startswith("unexpected answer")


def test_read_geometry_runs_the_configured_python(xa_file, tmp_path):
    missing = read_geometry(str(tmp_path / "no-python"), xa_file)
    assert missing.values == {} and missing.notes[0].startswith("sdfcar xa-geometry did not run")


@pytest.mark.slow
def test_read_geometry_through_a_real_engine_process(xa_file):
    found = read_geometry(sys.executable, xa_file, 1)
    assert found.complete and found.values["primary_angle_deg"] == pytest.approx(31.7)


# ----------------------------------------------------------------------------- command line


def test_command_is_accepted_by_the_sdfcar_cli(tmp_path):
    settings = EngineSettings("neca", "cpu", 7, 4,
                              ("field.loss.eikonal=0.1", "field.network.levels=12"), 0.4)
    command = reconstruct_command("python3", tmp_path / "case", tmp_path / "out", settings)
    assert command[:4] == ["python3", "-m", "sdfcar", "reconstruct"]
    args = build_parser().parse_args(command[3:])
    assert (args.case_dir, args.out) == (tmp_path / "case", tmp_path / "out")
    assert (args.preset, args.device, args.iterations, args.seed) == ("neca", "cpu", 7, 4)
    assert args.progress == "lines" and args.overrides == ["field.loss.eikonal=0.1", "field.network.levels=12"]
    assert args.output_spacing == 0.4
    default = build_parser().parse_args(reconstruct_command("p", "c", "o")[3:])
    assert default.iterations is None and default.preset is None  # the engine's default
    assert default.output_spacing is None  # the fit's grid
    assert set(PRESETS) == set(ENGINE_PRESETS) and DEVICES == DEVICE_CHOICES
    assert PRESET_CHOICES == (AUTOMATIC_PRESET, *PRESETS) and engine_preset("neca") == "neca"
    automatic = build_parser().parse_args(reconstruct_command(
        "p", "c", "o", EngineSettings(preset=engine_preset(AUTOMATIC_PRESET)))[3:])
    assert automatic.preset is None  # the command line's preset for the input
    with pytest.raises(ValueError, match="preset"):
        reconstruct_command("p", "c", "o", EngineSettings(preset="fastest"))
    with pytest.raises(ValueError, match="output spacing"):
        reconstruct_command("p", "c", "o", EngineSettings(output_spacing=-0.4))


def test_xa_command_counts_frames_from_one_as_the_cli_does(tmp_path):
    command = xa_reconstruct_command("python3", ("a.dcm", "b.dcm"), (0, 4), tmp_path / "o",
                                     EngineSettings(device="cpu"))
    args = build_parser().parse_args(command[3:])
    assert (args.view1, args.view2, args.frame) == (Path("a.dcm"), Path("b.dcm"), [1, 5])
    assert args.case_dir is None and args.preset is None  # the engine's preset for XA input
    with pytest.raises(ValueError, match="frames"):
        xa_reconstruct_command("p", ("a", "b"), (-1, 0), "o")


def test_extra_settings_are_split_into_key_value_items():
    assert parse_overrides(" field.network.levels=12  'hull.mode=off' ") == [
        "field.network.levels=12", "hull.mode=off"]
    assert parse_overrides("") == []
    with pytest.raises(ValueError, match="expected KEY=VALUE, got 'levels'"):
        parse_overrides("field.loss.eikonal=0.1 levels")
    with pytest.raises(ValueError, match="extra settings"):
        parse_overrides("a='1")


# ----------------------------------------------------------------------------- process output


def test_progress_lines_are_parsed_and_other_lines_are_not():
    assert parse_progress("PROGRESS 30 300 iteration 0.0123 field") == Progress(
        "field", 30, 300, "iteration", 0.0123)
    assert parse_progress("PROGRESS 300 300 iteration 1e-05 voxel fit").percent == 100
    assert parse_progress("PROGRESS 1 3 tree 3.47 tracing").percent == 33
    for line in ("PROGRESS 4 3 iteration 0.1 field", "PROGRESS 1 0 iteration 0.1 field",
                 "PROGRESS x 3 iteration 0.1 field", "PROGRESS 30 300 0.0123",
                 "progress 1 3 iteration 1 field", "sdfcar: visual hull: 6982 voxels", ""):
        assert parse_progress(line) is None


def test_failure_message_is_one_line():
    cli = OutputMonitor()
    for line in ("sdfcar: visual hull ...", "PROGRESS 1 3 iteration 0.5 field",
                 "sdfcar reconstruct: error: view2: is empty (no positive pixel)"):
        cli.feed("stderr", line)
    assert cli.progress == Progress("field", 1, 3, "iteration", 0.5)
    assert "PROGRESS 1 3 iteration 0.5 field" not in cli.log
    assert cli.failure_message(2) == "view2: is empty (no positive pixel)"
    crash = OutputMonitor()
    for line in ("Traceback (most recent call last):", '  File "x.py", line 1',
                 "RuntimeError: CUDA out of memory", ""):
        crash.feed("stderr", line)
    assert crash.failure_message(1) == "RuntimeError: CUDA out of memory"
    assert OutputMonitor().failure_message(-9) == ("The reconstruction process was stopped by "
                                                   "signal 9.")
    assert OutputMonitor().failure_message(3) == ("The reconstruction process exited with "
                                                  "status 3.")
    assert crash.failure_message(-15, cancelled=True).startswith("Cancelled")


# ----------------------------------------------------------------------------- process


def test_background_process_collects_lines_without_blocking():
    script = ("import sys, time\n"
              "print('out 1', flush=True)\n"
              "for i in range(1, 4):\n"
              "    print(f'PROGRESS {i} 3 iteration 0.5 field', file=sys.stderr, flush=True)\n"
              "    time.sleep(0.05)\n"
              "print('sdfcar reconstruct: error: boom', file=sys.stderr)\n"
              "sys.exit(2)\n")
    process = BackgroundProcess([sys.executable, "-c", script])
    started = time.monotonic()
    process.read_lines()  # returns at once while the child runs
    assert time.monotonic() - started < 0.05
    monitor = OutputMonitor()
    assert drain(process, monitor) == 2
    assert monitor.progress == Progress("field", 3, 3, "iteration", 0.5)
    assert monitor.log == ["out 1", "sdfcar reconstruct: error: boom"]
    assert monitor.failure_message(2) == "boom" and not process.cancelled


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cancel_kills_the_process_and_its_children():
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(60)\n")
    process = BackgroundProcess([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    lines = []
    while not lines:
        assert time.monotonic() < deadline
        lines = process.read_lines()
        time.sleep(0.02)
    grandchild = int(lines[0][1])
    assert _alive(process.pid) and _alive(grandchild)
    started = time.monotonic()
    process.cancel()
    assert time.monotonic() - started < 5
    monitor = OutputMonitor()
    assert drain(process, monitor, timeout_s=10) < 0 and process.cancelled
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild) and not _alive(process.pid)
    process.cancel()  # cancelling an ended process does nothing


# ----------------------------------------------------------------------------- requirements


def test_requirements_file_names_the_engine_and_it_is_installed_here():
    requirements = read_requirements(MODULE_DIR / "Resources" / "requirements.txt")
    assert requirements == ["sdfcar>=0.1"]
    assert missing_requirements(requirements) == []
    assert missing_requirements(["sdfcar>=99", "numpy>=1.0", "surely-absent-package-x>=1",
                                 "numpy<1; python_version < '3'"]) == [
        "sdfcar>=99", "surely-absent-package-x>=1"]


def test_engine_source_is_the_checkout_or_the_configured_path(tmp_path):
    assert local_source(MODULE_DIR, {}) == REPO
    assert local_source(tmp_path / "Module", {}) is None
    wheel = tmp_path / "sdfcar-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert local_source(tmp_path / "Module", {"SDFCAR_SOURCE": str(wheel)}) == wheel
    with pytest.raises(FileNotFoundError, match="SDFCAR_SOURCE"):
        local_source(MODULE_DIR, {"SDFCAR_SOURCE": str(tmp_path / "missing")})
    assert install_arguments(["SDFCAR>=0.1", "numpy"], REPO) == [
        f"sdfcar @ {REPO.as_uri()}", "numpy"]
    assert install_arguments(["sdfcar>=0.1"], None) == ["sdfcar>=0.1"]


# ----------------------------------------------------------------------------- case folder


def test_case_folder_round_trips_through_the_engine(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.random((40, 50)), rng.random((36, 30)).astype(np.float32)]
    views = [settings(30, 0, 1000, 750, (0.5, 0.6)), settings(0, 30, 1100, 760, (0.4, 0.4))]
    folder = make_run_folder(tmp_path, now=0)
    assert make_run_folder(tmp_path, now=0) == folder.with_name(folder.name + "-2")
    write_case_folder(folder / "case", images, views, volume_contract(32, 1.5))
    case = load_case(folder / "case")
    for image, loaded in zip(images, case.views):
        np.testing.assert_array_equal(loaded, np.asarray(image, np.float32))
    assert case.geometry.views[1].detector_shape == (36, 30)
    assert case.geometry.views[0].detector_spacing_mm == (0.5, 0.6)
    assert case.geometry.volume.shape == (32, 32, 32)
    assert case.geometry.volume.spacing_mm == (1.5, 1.5, 1.5)


def test_invalid_case_names_the_field_and_writes_nothing(tmp_path):
    images = [np.ones((8, 8))] * 2
    with pytest.raises(InputError, match=r"^views\[1\]\.source_to_isocenter_mm: must be less"):
        write_case_folder(tmp_path / "case", images,
                          [settings(), settings(sid=700, sod=750)], volume_contract(16, 1.0))
    with pytest.raises(InputError, match="view 2: expected a 2D image"):
        write_case_folder(tmp_path / "case", [np.ones((8, 8)), np.ones((2, 8, 8))],
                          [settings(), settings(60)], volume_contract(16, 1.0))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- result import


@pytest.fixture(scope="module")
def reconstruction(small_case_dir, tmp_path_factory):
    """An actual small reconstruction run as the module runs it: the command it builds, in a
    background process, with its output read by the module's monitor."""
    out = tmp_path_factory.mktemp("slicer_run") / "reconstruction"
    # A field that starts inside the visual hull gives a non-empty label in 3 iterations
    # (after 20 of the voxel prior).
    command = reconstruct_command(sys.executable, small_case_dir, out, EngineSettings(
        "field", "cpu", 3, overrides=("field.network.output_bias=-1", "voxel.iterations=20")))
    monitor = OutputMonitor()
    returncode = drain(BackgroundProcess(command, env=dict(os.environ, PYTHONUNBUFFERED="1")),
                       monitor, timeout_s=300)
    assert returncode == 0, monitor.failure_message(returncode)
    return out, monitor


@pytest.fixture(scope="module")
def mrml():
    """The MRML classes of slicer-core, with the labelmap-to-surface conversion rule that
    Slicer's Segmentations module registers at start-up."""
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not any(rule.IsA("vtkBinaryLabelmapToClosedSurfaceConversionRule")
               for rule in factory.GetConverterRules()):
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    return slicer


def matrix_array(matrix):
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def image_array(image_data):
    """A vtkImageData's scalars as an ``(i, j, k)`` array."""
    from vtk.util.numpy_support import vtk_to_numpy

    dims = image_data.GetDimensions()
    return vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(
        2, 1, 0)


@pytest.mark.slow
def test_run_reports_progress_through_the_monitor(reconstruction):
    _, monitor = reconstruction
    assert monitor.progress == Progress("field", 3, 3, "iteration", monitor.progress.loss)
    assert any(line.startswith("wrote ") for line in monitor.log)


def assert_segment_is_label(segment, label, grid):
    """The segment's binary labelmap is ``label`` (on its bounding box) in patient space."""
    import vtk

    assert label.any()
    present = [np.flatnonzero(label.any(axis=tuple(a for a in range(3) if a != axis)))
               for axis in range(3)]
    extent = [int(v) for axis in present for v in (axis[0], axis[-1])]
    labelmap = segment.GetRepresentation("Binary labelmap")
    assert list(labelmap.GetExtent()) == extent
    ijk_to_ras = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(ijk_to_ras)
    np.testing.assert_allclose(matrix_array(ijk_to_ras), LPS_TO_RAS @ grid.affine, atol=1e-6)
    i0, i1, j0, j1, k0, k1 = extent
    np.testing.assert_array_equal(image_array(labelmap) > 0,
                                  label[i0:i1 + 1, j0:j1 + 1, k0:k1 + 1] > 0)


@pytest.mark.slow
def test_result_import_places_the_segmentation_in_patient_space(mrml, reconstruction):
    import vtk

    out, _ = reconstruction
    scene = mrml.vtkMRMLScene()
    results = import_results(scene, out, sdf_volume=True, label_volume=True, surface_model=True)
    node = results.segmentation
    assert node.IsA("vtkMRMLSegmentationNode") and node.GetName() == "Coronary arteries"
    assert scene.GetFirstNodeByName("Coronary arteries").GetID() == node.GetID()
    assert node.GetSegmentation().GetNumberOfSegments() == 1
    segment = node.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "Coronary artery"

    label, grid = read_volume(out / "label.nii.gz")
    assert_segment_is_label(segment, label, grid)

    # Shown in 3D: a closed surface around the labelled voxels (RAS = LPS with x, y negated).
    assert node.GetDisplayNode().GetVisibility3D()
    surface = segment.GetRepresentation("Closed surface")
    assert surface is not None and surface.GetNumberOfPoints() > 0
    centres = (LPS_TO_RAS @ grid.affine @ np.c_[np.argwhere(label > 0), np.ones(label.sum())].T
               )[:3].T
    bounds = np.reshape(surface.GetBounds(), (3, 2))
    assert np.all(bounds[:, 0] >= centres.min(axis=0) - 1.0)
    assert np.all(bounds[:, 1] <= centres.max(axis=0) + 1.0)

    sdf, sdf_grid = read_volume(out / "sdf.nii.gz")
    ijk_to_ras = vtk.vtkMatrix4x4()
    results.sdf_volume.GetIJKToRASMatrix(ijk_to_ras)
    np.testing.assert_allclose(matrix_array(ijk_to_ras), LPS_TO_RAS @ sdf_grid.affine, atol=1e-6)
    np.testing.assert_allclose(image_array(results.sdf_volume.GetImageData()), sdf)
    assert results.label_volume.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(image_array(results.label_volume.GetImageData()), label)

    # mesh.vtk is LPS on disk; in the scene it lies where the segment's surface lies.
    model_bounds = np.reshape(results.surface_model.GetPolyData().GetBounds(), (3, 2))
    np.testing.assert_allclose(model_bounds, bounds, atol=2.0)
    assert results.surface_model.GetDisplayNode().GetColor() == pytest.approx(
        segment.GetColor())


@pytest.mark.slow
def test_failed_import_names_the_file_and_adds_nothing(mrml, reconstruction, tmp_path):
    out, _ = reconstruction
    scene = mrml.vtkMRMLScene()
    before = scene.GetNumberOfNodes()
    with pytest.raises(ResultImportError, match="segmentation.seg.nrrd: file not found"):
        import_results(scene, tmp_path)
    (tmp_path / SEGMENTATION_FILE).write_bytes((out / SEGMENTATION_FILE).read_bytes())
    (tmp_path / "sdf.nii.gz").write_text("not an image")
    with pytest.raises(ResultImportError, match=r"sdf\.nii\.gz: could not be read"):
        import_results(scene, tmp_path, sdf_volume=True)
    assert scene.GetNumberOfNodes() == before


def _qca_folder(folder):
    """An output folder with a small segmentation and the QCA files of a two-vessel tree (a
    straight 40 mm vessel along x, a 20 mm branch along y), as ``write_outputs`` writes them."""
    from sdfcar.analysis.summary import analyse
    from sdfcar.geometry import REFERENCE_VIEWS, VolumeGrid
    from sdfcar.io.centrelines import write_analysis
    from sdfcar.io.outputs import write_json, write_segmentation

    s = np.linspace(0.0, 1.0, 81)[:, None]
    trunk = (np.array([-20.0, 0, 0]) + s * [40.0, 0, 0]).tolist()
    branch = (np.array([0.0, 0, 0]) + s * [0, 20.0, 0]).tolist()
    records = [{"name": "a", "parent": None, "points": trunk, "radii": [1.5] * 81},
               {"name": "b", "parent": "a", "points": branch, "radii": [1.0] * 81}]
    analysis = analyse(records, REFERENCE_VIEWS)
    folder.mkdir()
    label = np.zeros((8, 8, 8), np.uint8)
    label[2:5, 3, 3] = 1
    write_segmentation(folder / SEGMENTATION_FILE, label, VolumeGrid((8, 8, 8)))
    write_analysis(folder, analysis)
    write_json(folder / "run.json", {"qca": analysis.record()})
    return analysis


def _markups_scene(mrml):
    """A scene with the markups node classes that Slicer's Markups module registers at
    start-up (a bare slicer-core scene cannot create them by class name)."""
    scene = mrml.vtkMRMLScene()
    for node in (mrml.vtkMRMLMarkupsJsonStorageNode(), mrml.vtkMRMLMarkupsCurveNode(),
                 mrml.vtkMRMLMarkupsDisplayNode()):
        scene.RegisterNodeClass(node)
    return scene


def test_result_import_loads_the_centrelines_as_radius_curves(mrml, tmp_path):
    analysis = _qca_folder(tmp_path / "out")
    scene = _markups_scene(mrml)
    results = import_results(scene, tmp_path / "out")
    curves = results.centrelines
    assert [c.GetName() for c in curves] == ["vessel 1", "branch 1"]
    for curve, vessel in zip(curves, analysis.tree.vessels):
        assert curve.IsA("vtkMRMLMarkupsCurveNode")
        assert curve.GetNumberOfControlPoints() == len(vessel.points)
        radius = curve.GetMeasurement("Radius")
        assert radius is not None and radius.GetUnits() == "mm"
        values = radius.GetControlPointValues()
        assert [values.GetValue(i) for i in range(values.GetNumberOfTuples())] == \
            pytest.approx(vessel.radii)
        # LPS in the file, RAS in the scene
        first = np.array(curve.GetNthControlPointPositionWorld(0))
        assert first == pytest.approx(LPS_TO_RAS[:3, :3] @ vessel.points[0])
        display = curve.GetDisplayNode()
        assert display.GetActiveScalarName() == "Radius" and display.GetScalarVisibility()
    assert results.qca["vessels"][0]["length_mm"] == pytest.approx(40.0)
    assert len(results.qca["working_views"]["best"]) == 3
    # the working view's camera looks along the beam (detector -> source reversed) at the
    # target, image up as view-up, as the angiogram at those angles shows the tree
    best = results.qca["working_views"]["best"][0]
    position, focal, up = working_view_camera(results)
    camera = mrml.vtkMRMLCameraNode()
    camera.SetPosition(position)
    camera.SetFocalPoint(focal)
    camera.SetViewUp(up)
    beam = LPS_TO_RAS[:3, :3] @ np.array(best["beam_lps"])
    looking = np.array(camera.GetFocalPoint()) - np.array(camera.GetPosition())
    assert looking / np.linalg.norm(looking) == pytest.approx(-beam, abs=1e-6)
    assert focal == pytest.approx(LPS_TO_RAS[:3, :3] @ analysis.tree.vessels[0].points.mean(0))
    assert np.array(camera.GetViewUp()) @ beam == pytest.approx(0.0, abs=1e-6)
    assert working_view_camera(results, rank=3) is None
    line = qca_line(results.qca)
    assert line.startswith("QCA of 2 vessel(s) in qca.csv; largest diameter stenosis ")
    assert "best working view for vessel 1: " in line and "foreshortening 0 %" in line
    # qca.csv as the panel's table: one row per vessel, the file's columns, numbers as
    # doubles (blank cells NaN) with their units, names as text
    table = results.qca_table
    assert table.IsA("vtkMRMLTableNode") and table.GetNumberOfRows() == 2
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == \
        list(analysis.columns)
    columns = {table.GetColumnName(c): table.GetTable().GetColumn(c)
               for c in range(table.GetNumberOfColumns())}
    for row, expected in enumerate(analysis.rows):
        assert columns["vessel"].GetValue(row) == expected["vessel"]
        for key in ("length_mm", "mld_mm", "foreshortening_view1"):
            assert columns[key].GetValue(row) == pytest.approx(expected[key], rel=1e-3)
    assert columns["length_mm"].IsA("vtkDoubleArray") and columns["parent"].IsA("vtkStringArray")
    assert np.isnan(columns["lesion_start_mm"].GetValue(0))  # no lesion: a blank cell
    assert table.GetColumnUnitLabel("length_mm") == "mm"
    assert table.GetColumnUnitLabel("diameter_stenosis_pct") == "%"


def test_failed_centreline_import_adds_nothing(mrml, tmp_path):
    analysis = _qca_folder(tmp_path / "out")
    (tmp_path / "out" / "run.json").write_text("{not json")
    scene = _markups_scene(mrml)
    before = scene.GetNumberOfNodes()
    with pytest.raises(ResultImportError, match=r"run\.json: not a readable run record"):
        import_results(scene, tmp_path / "out")
    assert scene.GetNumberOfNodes() == before
    (tmp_path / "out" / "run.json").write_text(json.dumps({"qca": analysis.record()}))
    (tmp_path / "out" / "qca.csv").unlink()
    with pytest.raises(ResultImportError, match=r"qca\.csv: file not found"):
        import_results(scene, tmp_path / "out")
    assert scene.GetNumberOfNodes() == before


# ----------------------------------------------------------------------------- raw XA in

#: The fastest settings that give a non-empty label on the tiny XA pair (seconds, not minutes).
XA_FAST = EngineSettings("voxel", "cpu", 20)
XA_VOLUME = volume_contract(32, 3.2)


def test_only_the_geometry_fields_the_user_changed_are_overridden():
    tags = {"primary_angle_deg": 30.0, "secondary_angle_deg": 0.0,
            "source_to_detector_mm": 1000.0, "source_to_isocenter_mm": 750.0,
            "detector_spacing_mm": (0.3, 0.3)}
    assert edited_fields(settings(30.0), tags) == {}
    assert edited_fields(settings(30.0, sod=760.0), tags) == {"source_to_isocenter_mm": 760.0}
    assert edited_fields(settings(30.0, spacing=(0.3, 0.25)), tags) == {
        "detector_spacing_mm": [0.3, 0.25]}
    missing = {k: v for k, v in tags.items() if k != "detector_spacing_mm"}
    assert edited_fields(settings(30.0), missing) == {"detector_spacing_mm": [0.3, 0.3]}


def test_xa_run_command_writes_the_overrides_the_cli_reads(tmp_path):
    from sdfcar.xa import load_geometry_overrides

    command = xa_run_command("python3", ("a.dcm", "b.dcm"), None, tmp_path / "case",
                             tmp_path / "rec", [{}, {"primary_angle_deg": -31.0}], XA_VOLUME,
                             XA_FAST)
    args = build_parser().parse_args(command[3:])
    assert args.frame is None and args.geometry == tmp_path / "case" / OVERRIDES_FILE
    assert (args.preset, args.iterations, args.out) == ("voxel", 20, tmp_path / "rec")
    overrides = load_geometry_overrides(args.geometry)
    assert overrides.views == ({}, {"primary_angle_deg": -31.0})
    assert overrides.volume.shape == (32, 32, 32)
    placed = xa_run_command("python3", ("a.dcm", "b.dcm"), None, tmp_path / "placed",
                            tmp_path / "rec", [{}, {}], None, XA_FAST)
    path = build_parser().parse_args(placed[3:]).geometry
    assert "volume" not in json.loads(path.read_text())  # the engine places the grid
    assert load_geometry_overrides(path).volume is None
    framed = xa_reconstruct_command("p", ("a", "b"), (2, 0), "o", geometry="g.json")
    assert build_parser().parse_args(framed[3:]).frame == [3, 1]
    with pytest.raises(ResultImportError, match="report.json: no frame number"):
        chosen_frames(tmp_path)


@pytest.fixture(scope="module")
def xa_pair_files(tmp_path_factory):
    """A tiny synthetic XA pair (128^2, 4 frames, lca0) as two DICOM files."""
    from sdfcar.synthetic.xa import phantom_pair, write_pair

    _, _, runs = phantom_pair("lca", 0, 128, CineOptions(frames=4))
    return runs, write_pair(tmp_path_factory.mktemp("xa_pair"), runs)


def reference_volume(scene, stored, name):
    """A multi-frame volume of the run's frames (k = frame), as the DICOM module loads it."""
    from vtk.util.numpy_support import numpy_to_vtk
    import vtk

    frames, rows, cols = stored.shape
    image = vtk.vtkImageData()
    image.SetDimensions(cols, rows, frames)
    image.GetPointData().SetScalars(numpy_to_vtk(stored.astype(np.float32).ravel(), deep=True))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(image)
    node.SetSpacing(0.5, 0.5, 2.0)
    node.SetOrigin(10.0, -5.0, 3.0)
    return node


@pytest.mark.slow
@pytest.mark.parametrize("volume", [XA_VOLUME, None], ids=["given grid", "placed grid"])
def test_raw_xa_files_reconstruct_as_the_cli_and_show_the_2d_step(mrml, xa_pair_files,
                                                                   tmp_path, volume):
    """Two raw XA files -> the module's command -> its run folder -> a segmentation node
    whose label is the one ``sdfcar reconstruct --view1 --view2`` gives with the same
    settings (without a grid: the one a plain command line run places on the vessels), and
    the 2D step's mask and line integral as volumes on the angiograms."""
    runs, files = xa_pair_files
    frames = (2, 3)
    edits = [edited_fields(ViewSettings(*[found.values[f] for f in FIELDS]), found.values)
             for found in (read_geometry(sys.executable, path, frame)
                           for path, frame in zip(files, frames))]
    assert edits == [{}, {}]  # the fields as the tags filled them
    folder = tmp_path / "run"
    command = xa_run_command(sys.executable, files, frames, folder / "case",
                             folder / "reconstruction", edits, volume, XA_FAST)
    monitor = OutputMonitor()
    returncode = drain(BackgroundProcess(command, env=dict(os.environ, PYTHONUNBUFFERED="1")),
                       monitor, timeout_s=300)
    assert returncode == 0, monitor.failure_message(returncode)
    out = folder / "reconstruction"

    cli_out = tmp_path / "cli"
    geometry = [] if volume is None else ["--geometry", str(folder / "case" / OVERRIDES_FILE)]
    assert main(["reconstruct", "--view1", str(files[0]), "--view2", str(files[1]),
                 "--frame", "3", "4", *geometry,
                 "--preset", "voxel", "--iterations", "20", "--device", "cpu", "--seed", "0",
                 "--out", str(cli_out), "--progress", "none"]) == 0
    label, grid = read_volume(cli_out / "label.nii.gz")
    placement = json.loads((out / "run.json").read_text())["inputs"]["xa"].get(
        "volume_placement")
    assert (placement is None) == (volume is not None)
    np.testing.assert_array_equal(read_volume(out / "label.nii.gz")[0], label)

    scene = mrml.vtkMRMLScene()
    results = import_results(scene, out)
    assert_segment_is_label(results.segmentation.GetSegmentation().GetNthSegment(0), label,
                            grid)
    references = tuple(reference_volume(scene, run.stored, f"run {i}")
                       for i, run in enumerate(runs, start=1))
    assert chosen_frames(out) == frames
    loaded = import_xa_views(scene, out, references, chosen_frames(out))
    for index, ((mask, integral), reference, frame) in enumerate(
            zip(loaded, references, frames), start=1):
        assert mask.IsA("vtkMRMLLabelMapVolumeNode") and integral.IsA("vtkMRMLScalarVolumeNode")
        assert scene.GetFirstNodeByName(f"View {index} vessel mask").GetID() == mask.GetID()
        engine_mask = sitk.GetArrayFromImage(sitk.ReadImage(
            str(out / "views" / f"view{index}" / "mask.nii.gz")))  # (rows, columns)
        assert engine_mask.any()
        np.testing.assert_array_equal(image_array(mask.GetImageData())[..., 0].T, engine_mask)
        assert mask.GetSpacing() == reference.GetSpacing()
        assert mask.GetOrigin() == pytest.approx((10.0, -5.0, 3.0 + 2.0 * frame))
        assert integral.GetOrigin() == mask.GetOrigin()
    with pytest.raises(ResultImportError, match="mask.nii.gz: file not found"):
        import_xa_views(scene, tmp_path)


# ----------------------------------------------------------------------------- module files


def parameter_members():
    """Members of the parameter node wrapper and of the per-view pack, from the module's AST."""
    classes = {node.name: node for node in ast.walk(ast.parse(MODULE_FILE.read_text()))
               if isinstance(node, ast.ClassDef)}

    def members(name):
        return {item.target.id: ast.unparse(item.annotation) for item in classes[name].body
                if isinstance(item, ast.AnnAssign)}

    return members("SlicerSDFCARParameterNode"), members("ViewParameters")


def used_ui_names(path):
    """``self.ui.X`` names, plus the per-view names built by ``_viewWidget(index, "X")``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "ui":
            names.add(node.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "_viewWidget":
            names |= {f"view{i}{node.args[1].value}" for i in (1, 2)}
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.endswith("CollapsibleButton"):
            names.add(node.value)
    return names


def test_ui_parses_and_names_every_widget_the_code_uses():
    root = ET.parse(UI_FILE).getroot()
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    used = used_ui_names(MODULE_FILE) | used_ui_names(WIDGET_TEST)
    assert {"applyButton", "cancelButton", "progressBar", "logTextEdit", "statusLabel",
            "validationLabel", "view1FrameSpinBox", "view2VolumeSelector"} <= used
    assert used - set(widgets) == set()
    custom = {c.findtext("class") for c in root.iter("customwidget")}
    assert {cls for cls in widgets.values() if not cls.startswith("Q")} <= custom
    for connection in root.iter("connection"):
        assert {connection.findtext("sender"), connection.findtext("receiver")} <= set(widgets)


def test_ui_binds_every_parameter_to_a_widget_that_can_show_it():
    top, view = parameter_members()
    root = ET.parse(UI_FILE).getroot()
    bound = {}
    for w in root.iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0"  # a dynamic property
                bound[prop.findtext("string")] = w.get("class")
    expected = {name: kind for name, kind in top.items() if not name.startswith("view")}
    expected |= {f"view{i}Volume": top[f"view{i}Volume"] for i in (1, 2)}
    expected |= {f"view{i}.{name}": kind for i in (1, 2) for name, kind in view.items()
                 if name != "filledFrom"}
    assert set(bound) == set(expected)
    widget_for = {"float": "QDoubleSpinBox", "int": "QSpinBox", "bool": "QCheckBox",
                  "str": "QLineEdit", "vtkMRMLScalarVolumeNode": "qMRMLNodeComboBox"}
    for name, annotation in expected.items():
        kind = re.sub(r"^Annotated\[(\w+),.*", r"\1", annotation)
        wanted = "QComboBox" if "Choice(" in annotation else widget_for[kind]
        assert bound[name] == wanted, name


def test_module_files_compile(tmp_path):
    for path in (MODULE_FILE, WIDGET_TEST, *LIB_DIR.glob("*.py")):
        py_compile.compile(str(path), cfile=str(tmp_path / f"{path.stem}.pyc"), doraise=True)


def test_helpers_do_not_import_slicer_qt_or_vtk():
    for path in LIB_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & {"slicer", "slicer_core", "qt", "ctk", "vtk", "vtkmodules"}, path


def test_icon_is_a_128_pixel_png():
    from PIL import Image

    with Image.open(MODULE_DIR / "Resources" / "Icons" / "SlicerSDFCAR.png") as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)
        assert np.asarray(icon.convert("L")).std() > 10  # a picture, not a blank square


def cmake_list(text, variable):
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    return match.group(1).split() if match else []


def test_extension_cmake_has_what_the_build_needs():
    text = (REPO / "CMakeLists.txt").read_text()
    steps = ["cmake_minimum_required(", "project(SlicerSDFCAR)", "find_package(Slicer REQUIRED)",
             "include(${Slicer_USE_FILE})", "add_subdirectory(SlicerSDFCAR)",
             "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL",
                  "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'^set\(EXTENSION_{field} "', text, re.M), field
    assert text.index("EXTENSION_DEPENDS") < text.index("find_package(Slicer")


def test_module_cmake_lists_every_script_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "set(MODULE_NAME SlicerSDFCAR)" in text
    assert re.search(r"slicerMacroBuildScriptedModule\(.*NAME \$\{MODULE_NAME\}.*SCRIPTS "
                     r"\$\{MODULE_PYTHON_SCRIPTS\}.*RESOURCES \$\{MODULE_PYTHON_RESOURCES\}.*"
                     r"WITH_GENERIC_TESTS.*\)", text, re.S)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert "add_subdirectory(Testing)" in text

    def files(variable):
        return {entry.replace("${MODULE_NAME}", "SlicerSDFCAR")
                for entry in cmake_list(text, variable)}

    scripts = {str(p.relative_to(MODULE_DIR)) for p in (MODULE_FILE, *LIB_DIR.glob("*.py"))}
    assert files("MODULE_PYTHON_SCRIPTS") == scripts
    resources = {str(p.relative_to(MODULE_DIR)) for p in (MODULE_DIR / "Resources").rglob("*")
                 if p.is_file()}
    assert files("MODULE_PYTHON_RESOURCES") == resources
    testing = MODULE_DIR / "Testing"
    assert "add_subdirectory(Python)" in (testing / "CMakeLists.txt").read_text()
    python_tests = (testing / "Python" / "CMakeLists.txt").read_text()
    for script in (testing / "Python").glob("*.py"):
        assert f"slicer_add_python_unittest(SCRIPT {script.name})" in python_tests
