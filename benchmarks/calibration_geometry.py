"""How well self-calibration recovers view 2's geometry, without reconstructing anything.

For each phantom and view-2 error (the calibration suite's, :data:`realistic.CALIBRATION_ERRORS`,
plus single errors), views are simulated from the tree voxelised at 0.4 mm at the reference
geometry (no inverse crime), the error goes into the geometry given to the fit (or, for the
head-feet shift, into view 2's simulation), and the engine's epipolar search
(:class:`sdfcar.pipeline.calibration.EpipolarSearch`) corrects it. Reported per case, before
and after: the epipolar inconsistency; the *image error* (mean distance, mm at the
isocenter, between view 2's image of the true centrelines in the geometry used and where the
simulation put them); the *3D error* (mean distance between each true centreline point and
its triangulation from its true images with the geometry used: what a perfect method would
reconstruct) and the *ray gap* (mean distance between those two rays: how inconsistent the
geometry still is). The search's wall time is taken as it comes (the load average at start
and end is recorded).

    python benchmarks/calibration_geometry.py [--cases lca0,rca0] [--prior-head-feet MM]
                                              [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's sdfcar, not an installed one

import numpy as np  # noqa: E402

from harness import Cell  # noqa: E402
from realistic import CALIBRATION_ERRORS, fit_geometry, simulated_views, truth_of  # noqa: E402
from sdfcar.config import CalibrationSettings  # noqa: E402
from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry, ViewGeometry  # noqa: E402
from sdfcar.geometry.correction import Correction  # noqa: E402
from sdfcar.physics.hull import threshold_silhouette  # noqa: E402
from sdfcar.pipeline.calibration import EpipolarSearch  # noqa: E402

ERRORS = {**CALIBRATION_ERRORS,
          "primary 2 deg": {"rotation_error_deg": 2.0},
          "head-feet 5 mm": {"view_shift_mm": 5.0},
          "isocenter 3 mm": {"isocenter_error_mm": 3.0}}
RESULTS = ROOT / "benchmarks" / "results" / "geometry_recovery.md"


def _rays(view: ViewGeometry, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    directions = view.pixel_points(pixels[:, 0], pixels[:, 1]) - view.source
    return view.source, directions / np.linalg.norm(directions, axis=1, keepdims=True)


def triangulated(first: ViewGeometry, second: ViewGeometry, pixels: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints of the closest approach of the two views' rays through ``pixels`` and the
    distance between the rays."""
    (s1, d1), (s2, d2) = _rays(first, pixels[0]), _rays(second, pixels[1])
    w = s1 - s2
    b, d, e = np.sum(d1 * d2, 1), np.sum(d1 * w, 1), np.sum(d2 * w, 1)
    denominator = 1.0 - b * b
    t1, t2 = (b * e - d) / denominator, (e - b * d) / denominator
    q1, q2 = s1 + t1[:, None] * d1, s2 + t2[:, None] * d2
    return (q1 + q2) / 2, np.linalg.norm(q1 - q2, axis=1)


def scores(used: ViewGeometry, truth_view: ViewGeometry, first: ViewGeometry, points: np.ndarray,
           shift: np.ndarray) -> dict[str, float]:
    """Image error, 3D error and ray gap (mm) of view 2 in the geometry ``used``."""
    seen = (first.project_points(points), truth_view.project_points(points + shift))
    pixel_mm = min(used.detector_spacing_mm) * used.source_to_isocenter_mm \
        / used.source_to_detector_mm
    middle, gap = triangulated(first, used, seen)
    return {"image": float(np.mean(np.linalg.norm(used.project_points(points) - seen[1],
                                                  axis=1)) * pixel_mm),
            "3d": float(np.mean(np.linalg.norm(middle - points, axis=1))),
            "gap": float(np.mean(gap))}


def run_case(kind: str, seed: int, name: str, fields: dict, settings: CalibrationSettings
             ) -> dict:
    """Simulate one case, search the correction, score before and after."""
    geometry = CaseGeometry(REFERENCE_VIEWS)
    truth = truth_of(kind, seed, geometry.volume)
    cell = Cell("calibration", kind, seed, "sdf-tree", **fields)
    views = simulated_views(cell, truth, geometry)
    given = fit_geometry(cell, geometry)
    silhouettes = [threshold_silhouette(v, 0.05, 4.0)[0] for v in views]
    search = EpipolarSearch(given.views, views, silhouettes, settings)
    started = time.perf_counter()
    x = search.search()
    seconds = time.perf_counter() - started
    used = Correction.of_vector(x).applied(given.views[1])
    shift = np.array([0.0, 0.0, cell.view_shift_mm])
    points = truth.centerlines.points
    return {"case": f"{kind}{seed}", "error": name, "seconds": seconds,
            "inconsistency": (search.inconsistency(np.zeros(6)), search.inconsistency(x)),
            "before": scores(given.views[1], geometry.views[1], given.views[0], points, shift),
            "after": scores(used, geometry.views[1], given.views[0], points, shift),
            "seen": len(search.seen_directions(x)), "correction": np.round(x, 2).tolist()}


def table(rows: list[dict], load: tuple[float, float], settings: CalibrationSettings) -> str:
    lines = ["## Self-calibration: view 2's geometry recovered (no reconstruction)", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"Prior: rotation {settings.prior_rotation_deg:g} deg, lateral / AP shift "
             f"{settings.prior_shift_mm:g} mm, head-feet {settings.prior_head_feet_mm:g} mm.", "",
             f"Load average at start / end: {load[0]:.2f} / {load[1]:.2f} (2 cores).", "",
             "| case | view-2 error | inconsistency | image error mm | 3D error mm | ray gap mm "
             "| seen | correction (deg, mm) | search s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['case']} | {r['error']} | {r['inconsistency'][0]:.1e} -> "
                     f"{r['inconsistency'][1]:.1e} | {b['image']:.2f} -> {a['image']:.2f} | "
                     f"{b['3d']:.2f} -> {a['3d']:.2f} | {b['gap']:.2f} -> {a['gap']:.2f} | "
                     f"{r['seen']} | {r['correction']} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="lca0,rca0")
    parser.add_argument("--prior-head-feet", type=float, default=None,
                        help="calibration.prior_head_feet_mm (default: the engine's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    settings = CalibrationSettings() if args.prior_head_feet is None else \
        CalibrationSettings(prior_head_feet_mm=args.prior_head_feet)
    load = os.getloadavg()[0]
    rows = []
    for case in args.cases.split(","):
        kind, seed = case.rstrip("0123456789"), int(case[len(case.rstrip("0123456789")):])
        for name, fields in ERRORS.items():
            rows.append(run_case(kind, seed, name, fields, settings))
            print(f"{case} {name}: 3D error {rows[-1]['before']['3d']:.2f} -> "
                  f"{rows[-1]['after']['3d']:.2f} mm", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(rows, (load, os.getloadavg()[0]), settings))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
