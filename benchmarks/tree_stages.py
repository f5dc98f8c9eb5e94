"""Where the tree method's quality and time come from: scores after tracing (and joining
further trees to the first), after the global refinement and after each topology round,
with each stage's wall time.

Views are simulated from each phantom voxelised at 0.4 mm (no inverse crime), noise-free,
at the reference geometry (two 512^2 views); scores are against the phantom's 0.8 mm label
and its true centrelines. One process runs every case in turn; the load average at start
and end is recorded (figures taken under load are marked).

    python benchmarks/tree_stages.py --cases lca0,rca0 [--trees 6] [--rounds 2] [--set KEY=VALUE]
        [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's sdfcar, not an installed one

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from sdfcar.centerlines import Centerlines, from_polylines  # noqa: E402
from sdfcar.config import ReconstructionConfig, build_config  # noqa: E402
from sdfcar.device import cpu_workers  # noqa: E402
from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry  # noqa: E402
from sdfcar.geometry.tubes import Segment, rasterize_segments  # noqa: E402
from sdfcar.methods.tree.method import join_trees, refit, repair  # noqa: E402
from sdfcar.methods.tubes.tracing import trace_tree  # noqa: E402
from sdfcar.metrics import centerline_scores, cldice, dice  # noqa: E402
from sdfcar.methods.base import Problem  # noqa: E402
from sdfcar.pipeline.problem import build_problem  # noqa: E402
from sdfcar.pipeline.run import deterministic  # noqa: E402
from sdfcar.progress import silent  # noqa: E402
from sdfcar.synthetic.phantom import generate_tree, label_volume  # noqa: E402
from sdfcar.synthetic.simulate import simulate_case  # noqa: E402


HEADER = """## Hybrid SDF tube tree (`sdf-tree`): what each stage adds

Views simulated from each phantom voxelised at 0.4 mm (2x finer than the 0.8 mm grid: no
inverse crime), noise-free, reference geometry, two 512^2 views. Scores after tracing (the
`tubes` tracer, further trees joined to the first: `tree.join_mm`), after the global
refinement, and after each topology round (prune, re-trace the residual, refine:
`tree.rounds`), against the 0.8 mm label (Dice, clDice, pieces: its 26-connected
components) and the true centrelines (recall and precision at 1 mm, median radius error of
the model's centrelines). Stage seconds include the scoring-free work of that stage only.

"""


def scores(vessels: list[Segment], label: np.ndarray, truth, grid) -> dict[str, float]:
    """Dice and clDice of the voxelised vessels, centreline recall/precision, radius error."""
    predicted = rasterize_segments(vessels, grid, supersample=2) >= 0.5
    lines = centerline_scores(from_polylines([(v.points, v.radii) for v in vessels]), truth)
    pieces = ndimage.label(predicted, structure=np.ones((3, 3, 3)))[1]
    return {"dice": dice(predicted, label), "cldice": cldice(predicted, label)[0],
            "recall": lines["cl_recall_1mm"], "precision": lines["cl_precision_1mm"],
            "radius": lines["radius_error_mm"], "vessels": len(vessels), "pieces": pieces}


@dataclass(frozen=True)
class Case:
    """A phantom's truth (0.8 mm label, centrelines) and the problem built from its views."""

    geometry: CaseGeometry
    label: np.ndarray
    truth: Centerlines
    config: ReconstructionConfig
    problem: Problem


def prepare_case(name: str, trees: int, overrides: list[str]) -> Case:
    """Phantom ``name`` (e.g. ``lca0``) simulated as the module docstring says, with the
    ``sdf-tree`` preset's settings, ``trees`` start tubes and ``overrides``."""
    kind, seed = name[:3], int(name[3:])
    geometry = CaseGeometry(REFERENCE_VIEWS)
    grid = geometry.volume
    label = label_volume(kind, seed, grid) > 0
    fine = label_volume(kind, seed, grid.refined(2))
    case = simulate_case(fine, grid.refined(2), geometry, seed=seed)
    truth = from_polylines([(s.points, s.radii) for s in generate_tree(kind, seed).segments])
    config = build_config("sdf-tree", [f"tree.tracing.trees={trees}", *overrides],
                          device="cpu")
    with deterministic():
        problem, _ = build_problem(case.views, geometry, None, config, torch.device("cpu"))
    return Case(geometry, label, truth, config, problem)


def run_case(name: str, trees: int, rounds: int, overrides: list[str]
             ) -> list[tuple[str, dict[str, float], float]]:
    """(stage, scores, seconds) after tracing, refinement and each of ``rounds`` topology
    rounds, with the preset's settings and ``overrides`` (``section.key=value``)."""
    rows = []
    case = prepare_case(name, trees, overrides)
    with deterministic():
        problem, settings, grid = case.problem, case.config.tree, case.geometry.volume
        label, truth = case.label, case.truth
        clock = time.perf_counter()
        vessels = trace_tree(problem.measured, case.geometry, settings.tracing, silent,
                             cpu_workers()).vessels
        vessels = join_trees(problem, settings, vessels)
        rows.append(("traced", scores(vessels, label, truth, grid), time.perf_counter() - clock))
        clock = time.perf_counter()
        vessels, _, _ = refit(problem, settings, vessels, True, silent)
        rows.append(("refined", scores(vessels, label, truth, grid),
                     time.perf_counter() - clock))
        for round_ in range(1, rounds + 1):
            clock = time.perf_counter()
            grown, _ = repair(problem, settings, vessels)
            vessels, _, _ = refit(problem, settings, grown, False, silent)
            rows.append((f"topology round {round_}", scores(vessels, label, truth, grid),
                         time.perf_counter() - clock))
    return rows


def case_parser(description: str, cases: str, out_name: str) -> argparse.ArgumentParser:
    """The options this script and ``trace_diagnosis.py`` share: cases, start tubes,
    settings and the Markdown file written (``benchmarks/results/<out_name>``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cases", default=cases)
    parser.add_argument("--trees", type=int, default=6, help="tracer start tubes tried")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the sdf-tree preset, e.g. tree.tracing.straightness=1")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / out_name)
    return parser


def write_table(path: Path, header: str, lines: list[str], conditions: str) -> None:
    """Write (and print) ``header``, the table ``lines`` and the command that made them,
    followed by ``conditions`` (load, threads)."""
    command = shlex.join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    note = f"\n`{command}`; {conditions}.\n"
    path.write_text(header + "\n".join(lines) + "\n" + note)
    print(note)


def main() -> None:
    parser = case_parser(__doc__.splitlines()[0], "lca0,rca0", "tree_stages.md")
    parser.add_argument("--rounds", type=int, default=2, help="topology rounds")
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    lines = ["| case | stage | Dice | clDice | cl recall 1 mm | cl precision 1 mm | "
             "radius error (mm) | vessels | pieces | stage s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in args.cases.split(","):
        for stage, s, seconds in run_case(name, args.trees, args.rounds, args.set):
            lines.append(f"| {name} | {stage} | {s['dice']:.3f} | {s['cldice']:.3f} | "
                         f"{s['recall']:.3f} | {s['precision']:.3f} | {s['radius']:.3f} | "
                         f"{s['vessels']} | {s['pieces']} | {seconds:.1f} |")
            print(lines[-1], flush=True)
    load.append(os.getloadavg()[0])
    write_table(args.out, HEADER, lines,
                f"load average {load[0]:.1f} at start, {load[1]:.1f} at end"
                f"{' (timed under load)' if max(load) > 1.5 else ''}; torch threads "
                f"{torch.get_num_threads()}")


if __name__ == "__main__":
    main()
