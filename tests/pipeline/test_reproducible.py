"""Reproducibility: the same input and seed give byte-identical labels whatever the thread
counts (BLAS/OpenMP and torch) and the load on the machine, for every method (small
runs): ``neca`` and ``sdfcar-paper`` run the field method that ``default`` runs (a few of
their dense iterations leave the small case's label empty and take 40 s each)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Reconstructs the arc case (tests/conftest.py) with a preset of every method and prints the sha256 of
#: each label; torch takes its thread count from OMP_NUM_THREADS.
SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import SMALL_GEOMETRY
from sdfcar.config import build_config
from sdfcar.pipeline.run import reconstruct
views = [np.load({views!r} + f"/view{{i}}.npy") for i in (1, 2)]
for preset, overrides in (("tubes", ["tubes.trees=2"]), ("voxel", ["voxel.iterations=200"]),
                          ("default", ["field.iterations=20", "voxel.iterations=30"]),
                          ("sdf-tree", ["tree.tracing.trees=1", "tree.refine.coarse_iterations=20",
                                        "tree.refine.fine_iterations=10"])):
    result = reconstruct(views, SMALL_GEOMETRY, build_config(preset, overrides, device="cpu"))
    print(preset, hashlib.sha256(result.label.tobytes()).hexdigest(), int(result.label.sum()))
"""


def _digests(views: Path, threads: int) -> list[str]:
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES},
           "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    script = SCRIPT.format(tests=str(REPOSITORY / "tests"), views=str(views))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600, check=True)
    return done.stdout.split("\n")


@pytest.mark.slow
def test_labels_do_not_depend_on_thread_counts_or_load(arc_case, tmp_path):
    _, views = arc_case
    for index, view in enumerate(views, start=1):
        np.save(tmp_path / f"view{index}.npy", view)
    single = _digests(tmp_path, 1)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = _digests(tmp_path, 2)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert [line.split()[0] for line in single if line] == ["tubes", "voxel", "default",
                                                            "sdf-tree"]
    assert all(int(line.split()[2]) > 0 for line in single if line)
    assert single == loaded
