"""Run the benchmark suites (resumable) and regenerate docs/benchmarks.md.

Usage: python benchmarks/run.py [SUITE ...] [--presets tubes,voxel] [--cases lca0,rca1]
                                [--iterations voxel=200 --iterations neca=100] [--limit N]
                                [--report-only]
SUITE: realistic, robustness-matrix (issue 18: views from the tree voxelised at 0.4 mm, every
preset), quality, robustness (the original suites); default: realistic robustness-matrix.
--presets defaults to every preset of sdfcar.config.PRESETS. Each cell runs in its own
process; finished cells (benchmarks/results/<cell>.json) are skipped; delete a file to rerun
it. (--suite NAME, repeatable, is kept for the original suites.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import harness
import realistic
from report import write_report

ROOT = Path(__file__).resolve().parent.parent
SUITES = {**harness.SUITES, **realistic.SUITES}
DEFAULT_SUITES = tuple(realistic.SUITES)


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def _iterations(text: str) -> tuple[str, int]:
    preset, _, count = text.partition("=")
    if not preset or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected PRESET=N with N >= 1, got {text!r}")
    return preset, int(count)


def suite_cells(suites: list[str], presets: list[str] | None,
                iterations: dict[str, int]) -> list[harness.Cell]:
    """Every cell of ``suites``: the realistic ones for ``presets`` (None: all) with the
    reduced ``iterations``, the original ones as they are."""
    cells = []
    for suite in suites:
        if suite in realistic.SUITES:
            cells += realistic.SUITES[suite](presets, iterations)
        else:
            cells += harness.SUITES[suite]()
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"suites to run, of {', '.join(sorted(SUITES))} (default: "
                             f"{' '.join(DEFAULT_SUITES)})")
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), default=[],
                        help=argparse.SUPPRESS)
    parser.add_argument("--presets", type=_names, default=None,
                        help="comma-separated presets (default: every preset)")
    parser.add_argument("--cases", type=_names, default=None,
                        help="comma-separated phantoms, e.g. lca0,lumens0 (default: all)")
    parser.add_argument("--iterations", type=_iterations, action="append", default=[],
                        metavar="PRESET=N", help="run PRESET with N iterations (time to "
                        "solution extrapolated and labelled so); repeatable")
    parser.add_argument("--limit", type=int, default=None, help="run at most N cells")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the docs")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="where benchmarks.md and figures/ are written (default docs/)")
    args = parser.parse_args()
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite {unknown[0]!r} (expected one of {', '.join(sorted(SUITES))})")
    if not args.report_only:
        suites = (args.suites + args.suite) or list(DEFAULT_SUITES)
        cells = suite_cells(suites, args.presets, dict(args.iterations))
        harness.run_cells(harness.select_cells(cells, args.presets, args.cases),
                          args.results, args.limit)
    print(f"wrote {write_report(args.results, args.docs)}")


if __name__ == "__main__":
    main()
