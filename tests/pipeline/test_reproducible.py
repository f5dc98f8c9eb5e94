"""Reproducibility: the same input and seed give byte-identical labels whatever the thread
counts (BLAS/OpenMP and torch) and the load on the machine, for every method (small
runs), from line-integral views and from an XA DICOM pair (the 2D step included):
``neca`` and ``sdfcar-paper`` run the field method that ``default`` runs (a few of their
dense iterations leave the small case's label empty and take 40 s each)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import xa_pair

REPOSITORY = Path(__file__).resolve().parents[2]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Reconstructs the arc case (tests/conftest.py) as views and as an XA pair with a preset of
#: every method and prints the sha256 of each label; torch takes its thread count from
#: OMP_NUM_THREADS.
SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import SMALL_GEOMETRY
from sdfcar.config import build_config
from sdfcar.pipeline.inputs import from_arrays, from_xa_pair
from sdfcar.pipeline.run import run
from sdfcar.xa import load_geometry_overrides
views = [np.load({folder!r} + f"/view{{i}}.npy") for i in (1, 2)]
inputs = {{"views": from_arrays(views, SMALL_GEOMETRY),
          "xa": from_xa_pair({folder!r} + "/view1.dcm", {folder!r} + "/view2.dcm",
                             overrides=load_geometry_overrides({folder!r} + "/geometry.json"))}}
for preset, overrides in (("tubes", ["tubes.trees=2"]), ("voxel", ["voxel.iterations=200"]),
                          ("field", ["field.iterations=20", "voxel.iterations=30"]),
                          ("sdf-tree", ["tree.tracing.trees=1", "tree.refine.coarse_iterations=20",
                                        "tree.refine.fine_iterations=10"])):
    for kind, given in inputs.items():
        result = run(given, build_config(preset, overrides, device="cpu"))
        label = result.label
        print(preset, kind, hashlib.sha256(label.tobytes()).hexdigest(), int(label.sum()))
"""


def _digests(folder: Path, threads: int) -> list[str]:
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES},
           "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    script = SCRIPT.format(tests=str(REPOSITORY / "tests"), folder=str(folder))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=900, check=True)
    return [line for line in done.stdout.split("\n") if line]


@pytest.mark.slow
def test_labels_do_not_depend_on_thread_counts_or_load(arc_case, tmp_path):
    _, views = arc_case
    for index, view in enumerate(views, start=1):
        np.save(tmp_path / f"view{index}.npy", view)
    xa_pair(tmp_path, arc_case, 12)  # view1.dcm, view2.dcm and geometry.json
    single = _digests(tmp_path, 1)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = _digests(tmp_path, 2)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert [line.split()[:2] for line in single] == [
        [preset, kind] for preset in ("tubes", "voxel", "field", "sdf-tree")
        for kind in ("views", "xa")]
    assert all(int(line.split()[3]) > 0 for line in single)
    assert single == loaded
