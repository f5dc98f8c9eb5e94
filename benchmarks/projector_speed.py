"""Projector benchmark: forward + backward of two 512^2 views of a 128^3 volume.

Usage: python benchmarks/projector_speed.py [--device cpu|cuda] [--repeats N]
Prints a JSON record (also written to benchmarks/results/projector_<device>.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import date
from pathlib import Path

import torch

from harness import git_commit, machine_description
from sdfcar.geometry import REFERENCE_VIEWS
from sdfcar.geometry import VolumeGrid
from sdfcar.physics.projector import ConeBeamProjector


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, repeats: int) -> dict:
    """Median seconds of forward, and of forward + backward, over ``repeats`` runs."""
    grid = VolumeGrid()
    projector = ConeBeamProjector(REFERENCE_VIEWS, grid, device=device)
    volume = torch.rand(grid.shape, device=device, generator=None).requires_grad_(True)
    targets = [torch.rand(v.detector_shape, device=device) for v in REFERENCE_VIEWS]
    forward, both = [], []
    for _ in range(repeats + 1):  # the first run warms up and is dropped
        _synchronise(device)
        start = time.perf_counter()
        with torch.no_grad():
            projector.project(volume)
        _synchronise(device)
        middle = time.perf_counter()
        loss = sum(((p - t) ** 2).mean() for p, t in zip(projector.project(volume), targets))
        loss.backward()
        _synchronise(device)
        end = time.perf_counter()
        forward.append(middle - start)
        both.append(end - middle)
    median = lambda values: sorted(values[1:])[len(values[1:]) // 2]
    record = {
        "benchmark": "projector forward+backward, 2 views 512x512, volume 128^3 at 0.8 mm",
        "device": str(device),
        "device_name": machine_description(),
        "repeats": repeats,
        "seconds_forward_two_views": round(median(forward), 4),
        "seconds_forward_backward_two_views": round(median(both), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
        "date": date.today().isoformat(),
        "commit": git_commit(),
    }
    if device.type == "cuda":
        record["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    record = measure(torch.device(args.device), args.repeats)
    out = Path(__file__).parent / "results" / f"projector_{torch.device(args.device).type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
