"""What a batch did: its outcome records and a printable summary table."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BatchSummary:
    """The final record of every manifest case (manifest order), which of them were
    skipped as already done (``--resume``), and the wall time of the cases run now."""

    out_dir: Path
    records: tuple[dict[str, Any], ...]
    skipped: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> list[str]:
        """Cases whose outputs are complete."""
        return [r["case"] for r in self.records if r["status"] == "ok"]

    @property
    def failed(self) -> list[str]:
        """Cases that failed (their error is in their record)."""
        return [r["case"] for r in self.records if r["status"] != "ok"]

    @property
    def cases_per_hour(self) -> float | None:
        """Cases finished (ok or failed) per hour of this run's wall time."""
        ran = len(self.records) - len(self.skipped)
        return 3600.0 * ran / self.seconds if ran and self.seconds > 0 else None

    def table(self) -> str:
        """A headline, per-case seconds and metric statistics (when any case had ground
        truth) as a Markdown table, and the failed cases with their errors."""
        rate = self.cases_per_hour
        lines = [f"{len(self.records)} case(s) in {self.out_dir}: {len(self.ok)} ok, "
                 f"{len(self.failed)} failed"
                 + (f", {len(self.skipped)} already done" if self.skipped else "")
                 + (f"; {self.seconds:.1f} s, {rate:.0f} cases/hour" if rate else "")]
        done = [r for r in self.records if r["status"] == "ok"]
        rows = _statistics("seconds", [r.get("seconds") for r in done])
        names = dict.fromkeys(key for r in done for key in (r.get("metrics") or {}))
        for name in names:
            rows += _statistics(name, [(r.get("metrics") or {}).get(name) for r in done])
        if rows:
            lines += ["", "| per ok case | mean | std | min | max | n |",
                      "|---|---|---|---|---|---|", *rows]
        failures = [r for r in self.records if r["status"] != "ok"]
        if failures:
            lines += ["", "| failed case | attempts | error |", "|---|---|---|"]
            lines += [f"| {r['case']} | {r.get('attempts', '')} | "
                      f"{str(r.get('error', '')).replace('|', '/')} |" for r in failures]
        return "\n".join(lines)


def _statistics(name: str, values: list[Any]) -> list[str]:
    """One table row of mean/std/min/max over the finite numbers in ``values``."""
    numbers = [float(v) for v in values
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not numbers:
        return []
    spread = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
    cells = (statistics.fmean(numbers), spread, min(numbers), max(numbers))
    return [f"| {name} | " + " | ".join(f"{v:.4g}" for v in cells) + f" | {len(numbers)} |"]
