"""Every preset through the command line, the MONAI bundle, the MONAI Label request handler
and ``sdfcar batch`` (a one-row manifest, on one local Ray instance for the file) on the small
case: each writes the same run-record keys and the same label, and the bundle's folder equals
the command line's."""

import json
import shutil

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from sdfcar.analysis.summary import compact
from sdfcar.apps.batch import ray_session
from sdfcar.apps.cli import main
from sdfcar.apps.monailabel.infer import run_request
from sdfcar.apps.monailabel.studies import RequestError
from sdfcar.config import PRESETS
from sdfcar.io.images import read_volume

from test_bundle import CONFIG, META, BUNDLE

#: A few iterations of each preset's method (tubes, sdf-tree: one tree), set as overrides
#: because ``--iterations`` does not apply to the tube methods.
SMALL = {"field": ["field.iterations=2", "voxel.iterations=10"],
         "voxel": ["voxel.iterations=10"], "neca": ["field.iterations=1"],
         "sdfcar-paper": ["field.iterations=1"], "tubes": ["tubes.trees=1"],
         "sdf-tree": ["tree.tracing.trees=1", "tree.refine.coarse_iterations=5",
                      "tree.refine.fine_iterations=5", "tree.rounds=0"]}
COMMON_KEYS = {"preset", "method", "prior", "seed", "device", "target", "silhouettes",
               "config", "inputs", "vessel_voxels", "components",
               "components_before_postprocess", "tree", "reprojection", "seconds",
               "statistics", "output_grid", "qca", "calibration", "geometry_used",
               "sdfcar_version", "torch_version"}
#: The QCA files, written for the methods with centrelines.
QCA_FILES = {"centerlines.mrk.json", "centerlines.vtp", "qca.csv", "working_views.png"}


#: The sections ``sdfcar batch`` adds to a case's run record.
BATCH_KEYS = {"batch", "metrics"}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for every batch below (``sdfcar batch`` uses the open one)."""
    pytest.importorskip("ray")
    with ray_session(num_cpus=1):
        yield


def test_the_table_covers_every_preset():
    assert set(SMALL) == set(PRESETS)


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(SMALL))
def test_preset_runs_through_every_front_end_with_the_same_record(preset, small_case_dir,
                                                                  tmp_path, local_ray):
    sets = [arg for item in SMALL[preset] for arg in ("--set", item)]
    cli_out = tmp_path / "cli"
    assert main(["reconstruct", str(small_case_dir), "--out", str(cli_out), "--preset", preset,
                 "--device", "cpu", "--progress", "none", *sets]) == 0
    cli_run = json.loads((cli_out / "run.json").read_text())
    assert COMMON_KEYS <= set(cli_run) and cli_run["preset"] == preset
    assert set(cli_run["statistics"]) >= {cli_run["method"]}
    with_centrelines = cli_run["method"] in ("tubes", "tree")
    assert cli_run["qca"]["available"] is with_centrelines
    assert (QCA_FILES <= {p.name for p in cli_out.iterdir()}) is with_centrelines

    bundle_out = tmp_path / "bundle"
    flow = ConfigWorkflow(config_file=str(CONFIG), meta_file=str(META), logging_file=False,
                          workflow_type=None, bundle_root=str(BUNDLE), progress=False,
                          case_dir=str(small_case_dir), output_dir=str(bundle_out),
                          preset=preset, device="cpu", overrides=SMALL[preset])
    flow.initialize()
    flow.run()
    flow.finalize()
    bundle_run = json.loads((bundle_out / "run.json").read_text())
    assert set(bundle_run) - {"bundle_version"} == set(cli_run)
    assert {p.name for p in bundle_out.iterdir()} == {p.name for p in cli_out.iterdir()}
    np.testing.assert_array_equal(read_volume(bundle_out / "label.nii.gz")[0],
                                  read_volume(cli_out / "label.nii.gz")[0])

    studies = tmp_path / "studies"
    studies.mkdir()
    for index in (1, 2):
        shutil.copy(small_case_dir / f"view{index}.nii.gz", studies / f"arc_view{index}.nii.gz")
    shutil.copy(small_case_dir / "geometry.json", studies / "arc_geometry.json")
    label_path, summary = run_request({"image": "arc_view1", "preset": preset, "device": "cpu",
                                       "overrides": SMALL[preset]}, studies, tmp_path)
    assert summary["run"]["preset"] == preset
    assert set(summary["run"]) == COMMON_KEYS - {"config", "inputs", "reprojection", "seconds",
                                                 "qca"}
    assert summary["qca"] == compact(cli_run["qca"])
    np.testing.assert_array_equal(read_volume(label_path)[0],
                                  read_volume(cli_out / "label.nii.gz")[0])

    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case,case_dir\narc,{small_case_dir}\n")
    batch_out = tmp_path / "batch"
    assert main(["batch", str(manifest), "--out", str(batch_out), "--preset", preset,
                 "--device", "cpu", "--progress", "none", *sets]) == 0
    batch_run = json.loads((batch_out / "arc" / "run.json").read_text())
    assert set(batch_run) - BATCH_KEYS == set(cli_run) and batch_run["preset"] == preset
    np.testing.assert_array_equal(read_volume(batch_out / "arc" / "label.nii.gz")[0],
                                  read_volume(cli_out / "label.nii.gz")[0])


@pytest.mark.slow
def test_output_spacing_reaches_every_front_end(small_case_dir, tmp_path, local_ray):
    """A finer output grid (``--output-spacing``, the bundle's and MONAI Label's
    ``output_spacing_mm``, ``sdfcar batch --output-spacing``): the same 0.5 mm label, filled
    by the tree model, from each."""
    sets = [arg for item in SMALL["sdf-tree"] for arg in ("--set", item)]
    common = ["--device", "cpu", "--progress", "none", "--output-spacing", "0.5", *sets]
    cli_out = tmp_path / "cli"
    assert main(["reconstruct", str(small_case_dir), "--out", str(cli_out), *common]) == 0
    label, grid = read_volume(cli_out / "label.nii.gz")
    assert label.shape == (96, 96, 96) and grid.spacing_mm == (0.5, 0.5, 0.5)
    record = json.loads((cli_out / "run.json").read_text())
    assert record["config"]["output_spacing_mm"] == 0.5
    assert record["output_grid"]["filled"] == "model"

    bundle_out = tmp_path / "bundle"
    flow = ConfigWorkflow(config_file=str(CONFIG), meta_file=str(META), logging_file=False,
                          workflow_type=None, bundle_root=str(BUNDLE), progress=False,
                          case_dir=str(small_case_dir), output_dir=str(bundle_out),
                          device="cpu", overrides=SMALL["sdf-tree"], output_spacing_mm=0.5)
    flow.initialize()
    flow.run()
    flow.finalize()
    np.testing.assert_array_equal(read_volume(bundle_out / "label.nii.gz")[0], label)

    studies = tmp_path / "studies"
    studies.mkdir()
    for index in (1, 2):
        shutil.copy(small_case_dir / f"view{index}.nii.gz", studies / f"arc_view{index}.nii.gz")
    shutil.copy(small_case_dir / "geometry.json", studies / "arc_geometry.json")
    request = {"image": "arc_view1", "device": "cpu", "overrides": SMALL["sdf-tree"]}
    label_path, _ = run_request({**request, "output_spacing_mm": 0.5}, studies, tmp_path)
    np.testing.assert_array_equal(read_volume(label_path)[0], label)
    with pytest.raises(RequestError, match="output_spacing_mm: at least 0.2 mm"):
        run_request({**request, "output_spacing_mm": 0.1}, studies, tmp_path)
    with pytest.raises(RequestError, match="output_spacing_mm: expected a number"):
        run_request({**request, "output_spacing_mm": "fine"}, studies, tmp_path)

    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case,case_dir\narc,{small_case_dir}\n")
    assert main(["batch", str(manifest), "--out", str(tmp_path / "batch"), *common]) == 0
    np.testing.assert_array_equal(
        read_volume(tmp_path / "batch" / "arc" / "label.nii.gz")[0], label)
