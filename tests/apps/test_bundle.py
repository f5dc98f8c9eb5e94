"""The MONAI bundle (monai_bundle/): command line and ConfigWorkflow runs against
`sdfcar reconstruct`, post-processing and writer geometry, metadata, README and bad input."""

import copy
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import monai.apps.utils
import numpy as np
import pytest
import slicerio
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, scripts
from monai.data.utils import orientation_ras_lps

from sdfcar.apps.bundle import CaseWriter, LabelToMetaTensord, bundle_config, flag, input_error
from sdfcar.apps.cli import main as sdfcar_main
from sdfcar.config import build_config
from sdfcar.errors import InputError
from sdfcar.geometry import rotation_x, rotation_z
from sdfcar.io.guard import MARKER
from sdfcar.io.images import read_volume, write_volume
from sdfcar.methods.base import Reconstruction
from sdfcar.pipeline.connect import select_tree
from sdfcar.pipeline.inputs import from_arrays
from sdfcar.pipeline.run import fit

from conftest import SMALL_GEOMETRY, SMALL_GRID, make_result

BUNDLE = Path(__file__).resolve().parents[2] / "monai_bundle"
CONFIG = BUNDLE / "configs" / "inference.json"
META = BUNDLE / "configs" / "metadata.json"
SCHEMA = BUNDLE / "docs" / "metadata_schema.json"
README = BUNDLE / "docs" / "README.md"
#: The files of `sdfcar reconstruct`: the bundle runs the same pipeline and writer.
BUNDLE_OUTPUTS = {"label.nii.gz", "sdf.nii.gz", "occupancy.nii.gz", "segmentation.seg.nrrd",
                  "mesh.vtk", "report.png", "run.json", MARKER}

# A tiny run on the shared small case. A steep, unbiased output layer makes the field cross
# zero after 5 iterations, so the label is not empty (with seed 2 it comes out in 2 pieces
# before component selection) and comparing labels means something.
ITERATIONS, SEED = 5, 2
OVERRIDES = ["field.network.output_gain=20", "field.network.output_bias=0",
             "voxel.iterations=20"]
SETTINGS = {"preset": "field", "device": "cpu", "iterations": ITERATIONS, "seed": SEED,
            "overrides": OVERRIDES}


def bundle_command(**keys) -> list[str]:
    """``python -m monai.bundle run`` of the bundle with ``--key value`` pairs."""
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG),
               "--meta_file", str(META), "--bundle_root", str(BUNDLE)]
    for key, value in keys.items():
        command += [f"--{key}", repr(value) if isinstance(value, list) else str(value)]
    return command


def workflow(**keys) -> ConfigWorkflow:
    """The bundle as a Python ConfigWorkflow (global logging left alone)."""
    return ConfigWorkflow(config_file=str(CONFIG), meta_file=str(META), logging_file=False,
                          workflow_type=None, bundle_root=str(BUNDLE), progress=False, **keys)


def run_workflow(**keys) -> None:
    flow = workflow(**keys)
    flow.initialize()
    flow.run()
    flow.finalize()


@pytest.fixture(scope="module")
def reference(small_case_dir, tmp_path_factory) -> Path:
    """The output folder of `sdfcar reconstruct` with the same settings."""
    out = tmp_path_factory.mktemp("reference") / "rec"
    sets = [arg for item in OVERRIDES for arg in ("--set", item)]
    assert sdfcar_main(["reconstruct", str(small_case_dir), "--out", str(out), "--device", "cpu",
                        "--preset", "field", "--iterations", str(ITERATIONS), "--seed",
                        str(SEED), *sets, "--quiet"]) == 0
    return out


def assert_same_label(bundle_out: Path, reference_out: Path) -> np.ndarray:
    label, grid = read_volume(bundle_out / "label.nii.gz")
    expected, expected_grid = read_volume(reference_out / "label.nii.gz")
    assert label.dtype == np.uint8 and label.any()
    np.testing.assert_array_equal(label, expected)
    assert grid.shape == expected_grid.shape
    np.testing.assert_allclose(grid.affine, expected_grid.affine, atol=1e-5)
    return label


@pytest.mark.slow
def test_command_line_run_matches_sdfcar_reconstruct(small_case_dir, reference, tmp_path):
    out = tmp_path / "bundle_out"
    done = subprocess.run(bundle_command(case_dir=small_case_dir, output_dir=out,
                                         progress="false", **SETTINGS),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == BUNDLE_OUTPUTS
    label = assert_same_label(out, reference)
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    assert [s["name"] for s in seg["segments"]] == ["Coronary artery"]
    np.testing.assert_array_equal(seg["voxels"], label)
    np.testing.assert_allclose(seg["ijkToLPS"], read_volume(reference / "label.nii.gz")[1].affine,
                               atol=1e-5)
    run = json.loads((out / "run.json").read_text())
    reference_run = json.loads((reference / "run.json").read_text())
    field = run["statistics"]["field"]
    assert (run["seed"], run["device"], field["iterations"]) == (SEED, "cpu", ITERATIONS)
    assert run["config"] == reference_run["config"]  # incl. connectivity: bridge
    assert field["loss_curve"] == reference_run["statistics"]["field"]["loss_curve"]
    assert run["inputs"] == reference_run["inputs"] == {"case_dir": str(small_case_dir)}
    assert run["bundle_version"] == json.loads(META.read_text())["version"]
    assert run["vessel_voxels"] == int(label.sum()) == reference_run["vessel_voxels"]
    assert run["components_before_postprocess"] >= run["components"] == 1


def test_config_workflow_run_from_python_matches_and_overwrites(small_case_dir, reference,
                                                               tmp_path):
    out = tmp_path / "bundle_out"
    out.mkdir()
    (out / "stale.txt").write_text("an earlier run")
    (out / MARKER).write_text("{}")  # written by sdfcar: --overwrite may replace it
    flow = workflow(case_dir=str(small_case_dir), output_dir=str(out), overwrite=True, **SETTINGS)
    flow.initialize()
    assert flow.check_properties() == []  # every meta property MONAI knows of is there
    assert flow.version == json.loads(META.read_text())["version"]
    flow.run()
    flow.finalize()
    assert {p.name for p in out.iterdir()} == BUNDLE_OUTPUTS
    assert_same_label(out, reference)


@pytest.fixture(scope="module")
def fitted(arc_case):
    """The pipeline's first stage on the small case, with its reconstruction replaced by
    two blocks one empty voxel apart and a speck (occupancy 0.9 / 0.1)."""
    occupancy = np.full(SMALL_GRID.shape, 0.1, np.float32)
    occupancy[16:21, 16:21, 16:18] = 0.9  # 50 voxels: the tree
    occupancy[16:21, 16:21, 19:21] = 0.9  # 50 voxels one empty voxel away: a fragment
    occupancy[0, 40, 0] = 0.9  # a speck
    config = build_config("field", ["voxel.iterations=2"], iterations=1, device="cpu")
    first = fit(from_arrays(arc_case[1], SMALL_GEOMETRY), config)
    first.reconstruction = Reconstruction(occupancy)
    return first


def test_postprocessing_is_the_pipelines_and_bridges_the_tree(fitted):
    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    out = parser.get_parsed_content("postprocessing")({"fitted": fitted})
    kept = out["label"]
    assert tuple(kept.shape) == (1, *SMALL_GRID.shape) and kept.dtype == torch.uint8
    occupancy = fitted.reconstruction.occupancy
    expected = select_tree(occupancy >= 0.5, occupancy, "bridge").label
    np.testing.assert_array_equal(kept.array[0], expected)
    np.testing.assert_array_equal(out["result"].label, expected)
    assert int(kept.array.sum()) == 101  # both blocks and one bridging voxel, no speck
    record = out["result"].record
    assert record.tree["bridged_fragments"] == 1 and record.tree["dropped_voxels"] == 1
    assert record.components == 1 and np.array_equal(out["result"].sdf < 0, expected > 0)
    np.testing.assert_allclose(kept.affine.numpy(), orientation_ras_lps(SMALL_GRID.affine))


def test_label_file_keeps_an_oblique_lps_geometry(tmp_path):
    direction = (rotation_z(30.0) @ rotation_x(-20.0)).ravel()
    result, _ = make_result(tuple(direction))
    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    writer = CaseWriter(tmp_path / "out", parser.get_parsed_content("label_saver"))
    data = LabelToMetaTensord()({"label": result.label, "grid": result.grid, "result": result})
    writer(data)
    write_volume(tmp_path / "sdfcar.nii.gz", result.label, result.grid)
    loaded, loaded_grid = read_volume(tmp_path / "out" / "label.nii.gz")
    _, sdfcar_grid = read_volume(tmp_path / "sdfcar.nii.gz")
    np.testing.assert_array_equal(loaded, result.label)
    for reread in (loaded_grid, sdfcar_grid):
        np.testing.assert_allclose(reread.affine, result.grid.affine, atol=1e-4)
    seg = slicerio.read_segmentation(str(tmp_path / "out" / "segmentation.seg.nrrd"))
    np.testing.assert_allclose(seg["ijkToLPS"], result.grid.affine, atol=1e-5)


@pytest.mark.filterwarnings("ignore:No hash value provided")
def test_verify_metadata_passes_offline_against_the_shipped_schema(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("verify_metadata tried to download the schema")

    monkeypatch.setattr(monai.apps.utils, "_download_with_progress", no_download)
    before = SCHEMA.read_bytes()
    scripts.verify_metadata(meta_file=str(META), filepath=str(SCHEMA))
    assert SCHEMA.read_bytes() == before


@pytest.mark.filterwarnings("ignore:No hash value provided")
@pytest.mark.parametrize("broken", ["no network_data_format", "no changelog",
                                    "no channel_def", "numeric version"])
def test_shipped_schema_rejects_incomplete_metadata(broken, tmp_path):
    meta = json.loads(META.read_text())
    bad = copy.deepcopy(meta)
    if broken == "no network_data_format":
        del bad["network_data_format"]
    elif broken == "no changelog":
        del bad["changelog"]
    elif broken == "no channel_def":
        del bad["network_data_format"]["outputs"]["pred"]["channel_def"]
    else:
        bad["version"] = 1
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError):
        scripts.verify_metadata(meta_file=str(path), filepath=str(SCHEMA))


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _column_names(section: str, column: int) -> list[str]:
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    return [name for cells in rows[1:] for name in re.findall(r"`([\w#]+)`", cells[column])]


def test_every_config_key_the_readme_mentions_exists():
    text = README.read_text()
    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    settings = _column_names(_section(text, "Config keys"), 0)
    steps = _column_names(_section(text, "What `inference.json` does"), 1)
    script_arguments = {name for function in (scripts.run, scripts.verify_metadata)
                        for name in inspect.signature(function).parameters}
    code = "\n".join(re.findall(r"^```\w*\n(.*?)^```", text, re.M | re.S))
    flags = set(re.findall(r"--(\w+)", code)) - script_arguments
    assert settings and steps and flags
    assert [key for key in [*settings, *steps, *sorted(flags)] if key not in parser] == []
    assert set(parser.config) - {"_meta_"} == set(settings) | set(steps)  # none undocumented


@pytest.mark.slow
def test_missing_case_folder_fails_in_one_line_and_writes_nothing(tmp_path):
    missing = tmp_path / "no_such_case"
    out = tmp_path / "out"
    done = subprocess.run(bundle_command(case_dir=missing, output_dir=out, device="cpu"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        f"sdfcar bundle: error: {missing}: case folder not found")
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def _without_view2(case_dir: Path, tmp_path: Path) -> Path:
    case = shutil.copytree(case_dir, tmp_path / "case")
    (case / "view2.nii.gz").unlink()
    return case


def _bad_geometry(case_dir: Path, tmp_path: Path) -> Path:
    case = shutil.copytree(case_dir, tmp_path / "case")
    geometry = json.loads((case / "geometry.json").read_text())
    geometry["views"][0]["source_to_isocenter_mm"] = "far"
    (case / "geometry.json").write_text(json.dumps(geometry))
    return case


@pytest.mark.parametrize("make_case, keys, expected", [
    (_without_view2, {}, "view2.*: missing view file"),
    (_bad_geometry, {}, "views[0].source_to_isocenter_mm"),
    (None, {"case_dir": ""}, "case_dir: required"),
    (None, {"preset": "nope"}, "unknown preset 'nope'"),
    (None, {"overrides": ["field.nope=1"]}, "field.nope: unknown setting"),
    (None, {"overwrite": "maybe"}, "overwrite: expected true or false"),
    (None, {"output_dir": "existing"}, "existing: already exists"),
    (None, {"output_dir": "existing", "overwrite": True}, "existing: not written by sdfcar"),
    (None, {"output_dir": "case", "overwrite": True}, "is the input"),
])
def test_bad_input_from_python_names_the_problem_and_writes_nothing(
        small_case_dir, tmp_path, make_case, keys, expected):
    case = make_case(small_case_dir, tmp_path) if make_case else small_case_dir
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("earlier results")
    settings = {"case_dir": str(case), "output_dir": str(tmp_path / "out"), **SETTINGS, **keys}
    settings["output_dir"] = {"existing": str(existing), "case": str(case)}.get(
        keys.get("output_dir"), settings["output_dir"])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(RuntimeError) as raised:
        run_workflow(**settings)
    cause = input_error(raised.value)
    assert isinstance(cause, InputError) and expected in str(cause)
    assert "\n" not in str(cause)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (existing / "keep.txt").read_text() == "earlier results"


@pytest.mark.parametrize("value, expected", [(True, True), ("FALSE", False), ("true", True),
                                             ("0", False)])
def test_flags_accept_command_line_text(value, expected):
    assert flag(value, "overwrite") is expected


def test_overrides_may_be_one_text_or_a_list():
    one = bundle_config(overrides="field.loss.eikonal=0.5").build("field")
    assert one.field.loss.eikonal == 0.5
    two = bundle_config(overrides=["field.loss.eikonal=0.5", "field.alpha=2"]).build("field")
    assert two.field.alpha == 2.0
    assert bundle_config(preset="").build("tubes").preset == "tubes"  # the input's default
    with pytest.raises(InputError, match="overrides"):
        bundle_config(overrides=[3])
