"""One XA DICOM pair through every front end: the command line, `sdfcar batch` (a
view1/view2 row), the MONAI bundle (view1/view2) and the Slicer module's command (the same
frames, counted from 0 there) read the runs with the engine's one XA path and give the same
label."""

import json
import subprocess
import sys

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from sdfcar.apps.cli import main
from sdfcar.io.images import read_volume
from sdfcar.xa import prepare_xa_pair

from test_bundle import BUNDLE, CONFIG, META
from conftest import xa_pair

SLICER_LIB = str(BUNDLE.parent / "SlicerSDFCAR")
#: The default preset, sdf-tree, with one start tube, short refinements and no topology round.
OVERRIDES = ["tree.tracing.trees=1", "tree.refine.coarse_iterations=5",
             "tree.refine.fine_iterations=5", "tree.rounds=0"]


@pytest.mark.slow
def test_an_xa_pair_gives_the_same_label_through_every_front_end(arc_case, tmp_path):
    _, (view1, view2), _ = xa_pair(tmp_path, arc_case, 12)
    sets = [arg for item in OVERRIDES for arg in ("--set", item)]
    cli = tmp_path / "cli"
    assert main(["reconstruct", "--view1", str(view1), "--view2", str(view2), "--out", str(cli),
                 "--device", "cpu", "--progress", "none", *sets]) == 0
    label = read_volume(cli / "label.nii.gz")[0]
    assert label.any()
    assert json.loads((cli / "run.json").read_text())["preset"] == "sdf-tree"

    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case,view1,view2\npair,{view1},{view2}\n")
    assert main(["batch", str(manifest), "--out", str(tmp_path / "batch"), "--device", "cpu",
                 "--progress", "none", *sets]) == 0
    np.testing.assert_array_equal(read_volume(tmp_path / "batch" / "pair" / "label.nii.gz")[0],
                                  label)

    flow = ConfigWorkflow(config_file=str(CONFIG), meta_file=str(META), logging_file=False,
                          workflow_type=None, bundle_root=str(BUNDLE), progress=False,
                          view1=str(view1), view2=str(view2),
                          output_dir=str(tmp_path / "bundle"), device="cpu",
                          overrides=OVERRIDES)
    flow.initialize()
    flow.run()
    flow.finalize()
    np.testing.assert_array_equal(read_volume(tmp_path / "bundle" / "label.nii.gz")[0], label)

    sys.path.insert(0, SLICER_LIB)
    try:
        from SlicerSDFCARLib.command import EngineSettings, xa_reconstruct_command
    finally:
        sys.path.remove(SLICER_LIB)
    frames = tuple(p.choice.number - 1 for p in prepare_xa_pair(view1, view2).views)
    command = xa_reconstruct_command(sys.executable, (view1, view2), frames,
                                     tmp_path / "slicer",
                                     EngineSettings(device="cpu", overrides=tuple(OVERRIDES)))
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path)
    np.testing.assert_array_equal(read_volume(tmp_path / "slicer" / "label.nii.gz")[0], label)
