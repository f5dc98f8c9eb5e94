"""Benchmark harness: phantoms x presets x conditions, one isolated process per cell.

Each cell (a phantom, a preset, an acquisition condition) runs in its own Python process so
its peak memory is its own, writes ``<results>/<cell>.json`` atomically, and is skipped
when that file exists (the suite resumes where it stopped); the record keeps the load
average at the cell's start and end. The original suites (``quality``, ``robustness``) run
here; the realistic ones are built and run by ``benchmarks/realistic.py``.
``benchmarks/report.py`` turns the records into ``docs/benchmarks.md`` and its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

# The sdfcar of this checkout (a git worktree, say), not whichever one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdfcar import __version__  # noqa: E402
from sdfcar.io.atomic import atomic_file
from sdfcar.config import build_config
from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry, ViewGeometry
from sdfcar.metrics import evaluate
from sdfcar.io.outputs import strict_json
from sdfcar.synthetic.phantom import label_volume
from sdfcar.pipeline.run import reconstruct
from sdfcar.synthetic.simulate import NoiseModel, simulate_case

PHANTOMS = (("lca", 0), ("lca", 1), ("lca", 2), ("rca", 0), ("rca", 1), ("rca", 2))


@dataclass(frozen=True)
class Cell:
    """One benchmark run. ``iterations`` overrides the preset (None: the preset's)."""

    suite: str
    kind: str
    seed: int
    preset: str
    noise: float = 0.0  # Gaussian sigma as a fraction of each view's maximum
    separation_deg: float | None = None  # None: the reference views
    rotation_error_deg: float = 0.0  # error on view 2's primary angle given to the fit
    shift_mm: float = 0.0  # patient displacement along x unknown to the fit
    #: The views are simulated from the phantom voxelised this many times finer than the
    #: reconstruction grid (1: the same grid, an "inverse crime": the data are then exactly
    #: what a binary label on that grid projects to).
    phantom_supersample: int = 1
    iterations: int | None = None
    overrides: tuple[str, ...] = ()
    note: str = ""
    timing_only: bool = False  # too few iterations for its scores to mean anything
    poisson_photons: float = 0.0  # Poisson noise at this many photons per pixel (0: none)
    xa: bool = False  # through synthetic XA DICOM runs and the full 2D pipeline
    rotation_secondary_error_deg: float = 0.0  # error on view 2's secondary angle (fit only)
    isocenter_error_mm: float = 0.0  # view 2's isocenter misplaced by this much (fit only)
    view_shift_mm: float = 0.0  # the tree moved head-feet (S) in view 2's simulation only
    calibration: str = "auto"  # calibration.mode of the fit (self-calibration)

    @property
    def case(self) -> str:
        """The phantom, e.g. ``lca0``."""
        return f"{self.kind}{self.seed}"

    @property
    def name(self) -> str:
        """File-name key of the cell."""
        parts = [self.suite, self.case, self.preset]
        if self.noise:
            parts.append(f"noise{self.noise:g}")
        if self.poisson_photons:
            parts.append(f"poisson{self.poisson_photons:g}")
        if self.xa:
            parts.append("xa")
        if self.separation_deg is not None:
            parts.append(f"sep{self.separation_deg:g}")
        if self.rotation_error_deg:
            parts.append(f"rot{self.rotation_error_deg:g}")
        if self.rotation_secondary_error_deg:
            parts.append(f"rotsec{self.rotation_secondary_error_deg:g}")
        if self.isocenter_error_mm:
            parts.append(f"iso{self.isocenter_error_mm:g}")
        if self.view_shift_mm:
            parts.append(f"resp{self.view_shift_mm:g}")
        if self.shift_mm:
            parts.append(f"shift{self.shift_mm:g}")
        if self.calibration != "auto":
            parts.append(f"cal{self.calibration}")
        if self.phantom_supersample > 1:
            parts.append(f"fine{self.phantom_supersample}")
        if self.iterations is not None:
            parts.append(f"it{self.iterations}")
        return "_".join(parts)


def quality_cells() -> list[Cell]:
    """The reference comparison: 6 phantoms, three presets, clean and 5 % noise (cheapest
    cells first, so a partial run already compares presets)."""
    cells = [Cell("quality", kind, seed, "field") for kind, seed in PHANTOMS]
    cells.append(Cell("quality", "lca", 0, "sdfcar-paper", iterations=2, timing_only=True,
                      note="sdfcar-paper ran 2 iterations to measure its seconds per "
                           "iteration (dense: the full grid every iteration); no scores"))
    cells += [Cell("quality", kind, seed, "field", noise=0.05) for kind, seed in PHANTOMS]
    cells += [Cell("quality", kind, seed, "neca", iterations=100, overrides=("hull.mode=on",),
                   note="neca ran 100 iterations inside the visual hull (its dense 5000 "
                        "iterations take days on 2 CPU cores): its model and loss at our "
                        "compute budget, not a converged NeCA")
              for kind, seed in PHANTOMS]
    return cells


def robustness_cells() -> list[Cell]:
    """Where the method breaks: view separation, noise, C-arm geometry error and a phantom
    finer than the reconstruction grid."""
    cells = [Cell("robustness", "lca", 0, "field", separation_deg=angle)
             for angle in (20, 30, 45, 60, 90)]
    cells += [Cell("robustness", "lca", 0, "field", noise=level) for level in (0.02, 0.1)]
    cells += [Cell("robustness", "lca", 0, "field", rotation_error_deg=angle)
              for angle in (1, 2, 3)]
    cells += [Cell("robustness", "lca", 0, "field", shift_mm=shift) for shift in (2, 5)]
    cells += [Cell("robustness", kind, 0, "field", phantom_supersample=2)
              for kind in ("lca", "rca")]
    return cells


SUITES = {"quality": quality_cells, "robustness": robustness_cells}


def cell_views(cell: Cell) -> tuple[ViewGeometry, ViewGeometry]:
    """The reference views, or a LAO/RAO pair at +-separation/2 without cranial tilt."""
    if cell.separation_deg is None:
        return REFERENCE_VIEWS
    half = cell.separation_deg / 2.0
    return (dataclasses.replace(REFERENCE_VIEWS[0], primary_angle_deg=half,
                                secondary_angle_deg=0.0),
            dataclasses.replace(REFERENCE_VIEWS[1], primary_angle_deg=-half,
                                secondary_angle_deg=0.0))


def run_cell(cell: Cell) -> tuple[dict, np.ndarray]:
    """Simulate, reconstruct and score one cell in this process; returns its record and
    the predicted label."""
    started = time.perf_counter()
    views = cell_views(cell)
    geometry = CaseGeometry(views)
    grid = geometry.volume
    label = label_volume(cell.kind, cell.seed, grid)
    # The simulated object: the phantom on its grid, or voxelised finer on the same field.
    factor = cell.phantom_supersample
    object_grid = grid.refined(factor)
    seen = label if factor == 1 else label_volume(cell.kind, cell.seed, object_grid)
    # An isocenter error: the tree sits shift_mm along x from where the fit's geometry
    # assumes it (the label is simulated on its grid moved by that much).
    seen_grid = dataclasses.replace(object_grid, center_mm=(
        grid.center_mm[0] + cell.shift_mm, *grid.center_mm[1:]))
    noise = NoiseModel("gaussian", cell.noise) if cell.noise else None
    case = simulate_case(seen, seen_grid, geometry, noise=noise, seed=cell.seed)
    fit_views = (views[0], dataclasses.replace(
        views[1], primary_angle_deg=views[1].primary_angle_deg + cell.rotation_error_deg))
    config = cell_config(cell)
    result = reconstruct(case.views, CaseGeometry(fit_views, grid), config)
    scores = evaluate(result.label > 0, label > 0, grid, grid)
    return cell_record(cell, started, scores, config, result), result.label


def cell_config(cell: Cell):
    """The reconstruction config of a cell (its preset, overrides and iterations)."""
    calibration = [f"calibration.mode={cell.calibration}"] if cell.calibration != "auto" else []
    return build_config(cell.preset, list(cell.overrides) + calibration,
                        iterations=cell.iterations, device="auto")


def cell_record(cell: Cell, started: float, scores: dict, config=None, result=None) -> dict:
    """A cell's record: scores, wall time, timing of the reconstruction (with the preset's
    remaining iterations extrapolated where the cell ran fewer), memory and provenance.
    Without ``config``/``result`` (a row that reconstructs nothing) the timing is empty."""
    record = {"cell": dataclasses.asdict(cell), "name": cell.name, "scores": scores,
              "seconds_total": round(time.perf_counter() - started, 2)}
    if result is not None:
        record.update(_timing(cell, config, result))
    record.update({
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": machine_description(), "date": date.today().isoformat(),
        "commit": git_commit(), "sdfcar_version": __version__,
    })
    return record


def _timing(cell: Cell, config, result) -> dict:
    record_ = result.record
    statistics = record_.statistics[config.method]
    iterations = getattr(config.settings_of(config.method), "iterations", None)
    preset_iterations = getattr(build_config(cell.preset).settings_of(config.method),
                                "iterations", None)
    # A method that does not time its iterations: the whole reconstruction per iteration
    # (an upper bound, setup included), said so in the record.
    measured = "seconds_per_iteration" in statistics
    per_iteration = (statistics["seconds_per_iteration"] if measured
                     else record_.seconds["reconstruct"] / iterations if iterations else 0.0)
    missing = (preset_iterations or 0) - (iterations or 0)
    return {
        "seconds_reconstruct": record_.seconds["reconstruct"],
        "seconds_per_iteration": round(per_iteration, 5),
        "seconds_per_iteration_from": "method" if measured else "reconstruct / iterations",
        "iterations": iterations, "preset_iterations": preset_iterations,
        "seconds_to_solution": round(record_.seconds["reconstruct"] + per_iteration * missing,
                                     2),
        "extrapolated": iterations != preset_iterations,
        "path": statistics.get("sampling", config.method), "device": record_.device,
        # the method's own stages where it times them (the tree method: tracing, refining...)
        "stage_seconds": stages if isinstance(stages := statistics.get("seconds"), dict) else {},
        "components_before_postprocess": record_.components_before_postprocess,
    }


def machine_description() -> str:
    """CPU/GPU of this machine in a few words."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def git_commit() -> str:
    """Short hash of the checked-out commit (outside a git work tree, such as the copy the
    GPU machine gets: ``$SDFCAR_COMMIT``, else ``unknown``)."""
    if os.environ.get("SDFCAR_COMMIT"):
        return os.environ["SDFCAR_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


#: A cell timed while the 1-minute load average exceeded this (at its start or end) is
#: marked ``under_load``: its seconds are not those of a quiet machine (1.5 on 2 cores;
#: three quarters of the cores on a larger machine, where a cell's own workers add load).
LOAD_LIMIT = max(1.5, 0.75 * (os.cpu_count() or 2))
#: Suites whose cells :mod:`realistic` runs (the rest run here).
REALISTIC_SUITES = ("realistic", "robustness-matrix", "calibration")
#: The preset name of the rows that score the truth's own partial-volume label (no fit).
CEILING = "ceiling"


def select_cells(cells: list[Cell], presets: list[str] | None = None,
                 cases: list[str] | None = None) -> list[Cell]:
    """The cells of the given presets (rows without a reconstruction, such as the ceiling,
    always stay) and phantoms (e.g. ``lca0``); None keeps all."""
    return [cell for cell in cells
            if (presets is None or cell.preset in presets or cell.preset == CEILING)
            and (cases is None or cell.case in cases)]


def pending(cells: list[Cell], results: Path, limit: int | None = None) -> list[Cell]:
    """The first ``limit`` cells (all when None) without a record under ``results``."""
    todo = [cell for cell in cells if not (results / f"{cell.name}.json").exists()]
    return todo[:limit] if limit is not None else todo


def run_cells(cells: list[Cell], results: Path, limit: int | None = None) -> list[Path]:
    """Run every unfinished cell (each in a fresh process); skip finished ones."""
    todo = pending(cells, results, limit)
    results.mkdir(parents=True, exist_ok=True)
    written, failed = [], []
    bar = tqdm(todo, desc="benchmark", unit="cell")
    for cell in bar:
        bar.set_postfix_str(cell.name)
        spec = json.dumps(dataclasses.asdict(cell))
        process = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cell", spec,
                                  "--results", str(results)], capture_output=True, text=True)
        if process.returncode != 0:
            failed.append(cell.name)
            tqdm.write(f"{cell.name} failed: {process.stderr.strip().splitlines()[-1:]}")
        else:
            written.append(results / f"{cell.name}.json")
    if failed:
        tqdm.write(f"{len(failed)} cell(s) failed: {', '.join(failed)}")
    return written


def cell_from_spec(spec: str) -> Cell:
    """A cell from its JSON (``dataclasses.asdict``)."""
    data = json.loads(spec)
    data["overrides"] = tuple(data.get("overrides", ()))
    return Cell(**data)


def _cell_main(spec: str, results: Path) -> None:
    cell = cell_from_spec(spec)
    load_start = os.getloadavg()[0]
    if cell.suite in REALISTIC_SUITES:
        from realistic import run_cell as runner
    else:
        runner = run_cell
    record, label = runner(cell)
    load_end = os.getloadavg()[0]
    record.update(load_start=round(load_start, 2), load_end=round(load_end, 2),
                  under_load=max(load_start, load_end) > LOAD_LIMIT)
    with atomic_file(results / f"{cell.name}.label.npz", overwrite=True) as temporary:
        np.savez_compressed(temporary, label=np.packbits(label > 0))
    with atomic_file(results / f"{cell.name}.json", overwrite=True) as temporary:
        temporary.write_text(json.dumps(strict_json(record), indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="run one benchmark cell (internal)")
    parser.add_argument("--cell", required=True)
    parser.add_argument("--results", required=True, type=Path)
    arguments = parser.parse_args()
    _cell_main(arguments.cell, arguments.results)
