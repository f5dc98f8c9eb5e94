"""Run the benchmark suites (resumable) and regenerate docs/benchmarks.md.

Usage: python benchmarks/run.py [--suite quality] [--suite robustness] [--limit N]
                                [--report-only]
Finished cells (benchmarks/results/<cell>.json) are skipped; delete a file to rerun it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import SUITES, run_suites
from report import write_report

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES),
                        help="suite to run (repeatable; default: all)")
    parser.add_argument("--limit", type=int, default=None, help="run at most N cells")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the docs")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if not args.report_only:
        run_suites(args.suite or sorted(SUITES), args.results, args.limit)
    print(f"wrote {write_report(args.results, ROOT / 'docs')}")


if __name__ == "__main__":
    main()
