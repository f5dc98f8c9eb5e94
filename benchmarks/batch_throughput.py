"""Batch throughput on Ray: cases per hour with 1, 2, ... concurrent tasks on this machine.

Setup: N simulated left-coronary phantoms (seeds 0..N-1) on a 64^3 grid at 1.6 mm (the
same 102 mm field as the reference 128^3 at 0.8 mm), projected into the two reference views
with 128^2 detectors at 1.112 mm (the reference 512^2 x 0.278 mm panel, 4x coarser); the
`field` preset (the former default) for a few iterations, no ground truth (no scoring). For each concurrency k
a fresh local Ray instance gets --cpus CPUs and each case asks for cpus//k of them (so k
tasks run at once, each with cpus//k torch threads, on the same cores); on CUDA each case
also asks for 1/k of one GPU. k warm-up cases run first in the same instance (worker
start-up and imports are not counted); cases/hour runs from the first submission to the
last outcome.

Usage: python benchmarks/batch_throughput.py [--cases 4] [--iterations 30]
           [--concurrency 1 2] [--cpus 2] [--device cpu|cuda] [--work DIR]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
from pathlib import Path

import ray
import torch

from sdfcar.apps.batch import ray_session, run_batch
from sdfcar.io.case import write_case
from sdfcar.config import build_config
from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry, VolumeGrid
from sdfcar.synthetic.phantom import label_volume
from sdfcar.synthetic.simulate import simulate_case

GRID = VolumeGrid((64, 64, 64), (1.6, 1.6, 1.6))
VIEWS = tuple(dataclasses.replace(view, detector_shape=(128, 128),
                                  detector_spacing_mm=(1.112, 1.112))
              for view in REFERENCE_VIEWS)


def make_cases(folder: Path, count: int) -> list[dict[str, str]]:
    """Simulate ``count`` phantom cases into ``folder``; returns manifest rows."""
    geometry = CaseGeometry(VIEWS, GRID)
    rows = []
    for seed in range(count):
        case_dir = folder / f"lca{seed}"
        if not case_dir.exists():
            label = label_volume("lca", seed, GRID)
            write_case(case_dir, simulate_case(label, GRID, geometry))
        rows.append({"case": f"lca{seed}", "case_dir": str(case_dir)})
    return rows


def measure(rows: list[dict[str, str]], work: Path, concurrency: int, cpus: int,
            device: str, iterations: int) -> dict:
    """One configuration in its own local Ray instance: warm-up, then the timed batch."""
    config = build_config("field", iterations=iterations, device=device, seed=0)
    share = {"cpus_per_case": float(max(1, cpus // concurrency)),
             "gpus_per_case": 1.0 / concurrency if device == "cuda" else 0.0}
    with ray_session(num_cpus=cpus):
        warm_rows = [dict(row, case=f"warm{i}") for i, row in enumerate(rows[:concurrency])]
        run_batch(warm_rows, work / f"warm-k{concurrency}", config, progress=False,
                  overwrite=True, **share)
        summary = run_batch(rows, work / f"timed-k{concurrency}", config, progress=False,
                            overwrite=True, **share)
    seconds = [r["seconds"] for r in summary.records if r["status"] == "ok"]
    return {"k": concurrency, **share, "cases": len(summary.ok), "failed": len(summary.failed),
            "wall": summary.seconds, "per_hour": summary.cases_per_hour,
            "mean_case": sum(seconds) / max(len(seconds), 1)}


def table(results: list[dict]) -> str:
    """The Markdown table of all configurations (speed-up against the first)."""
    lines = ["| concurrent tasks | CPUs per case | GPUs per case | cases ok | wall s | "
             "cases/hour | mean s per case | speed-up |", "|---|---|---|---|---|---|---|---|"]
    base = results[0]["per_hour"]
    for r in results:
        lines.append(f"| {r['k']} | {r['cpus_per_case']:g} | {r['gpus_per_case']:g} | "
                     f"{r['cases']} | {r['wall']:.1f} | {r['per_hour']:.0f} | "
                     f"{r['mean_case']:.1f} | {r['per_hour'] / base:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1,
                        help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for cases and outputs (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        rows = make_cases(work / "cases", args.cases)
        results = [measure(rows, work, k, args.cpus, args.device, args.iterations)
                   for k in args.concurrency]
    gpu = f", {torch.cuda.get_device_name(0)}" if args.device == "cuda" else ""
    print(f"Setup: {args.cases} lca phantom cases, 64^3 grid at 1.6 mm, two 128^2 views at "
          f"1.112 mm (reference angles), preset field, {args.iterations} iterations, "
          f"device {args.device}{gpu}; local Ray {ray.__version__} with {args.cpus} CPUs on "
          f"{platform.machine()} ({os.cpu_count()} cores), torch {torch.__version__}.\n")
    print(table(results))


if __name__ == "__main__":
    main()
