"""Where the tube tracer goes wrong: every start tube's tree, scored against the truth, and
how many of its centreline points are ghost pairings.

Same views as ``tree_stages.py`` (phantoms voxelised at 0.4 mm, noise-free, reference
geometry, two 512^2 views). For each start tube: how far it lies from the true centrelines
and its radius against the true one there; for the tree grown from it: what it leaves
unexplained (the tracer keeps the least), Dice, clDice, centreline recall and precision at
1 mm, and its points on the truth (within 1.2 mm), off it (more than 3 mm) and, of those,
the **ghost-paired** ones: points whose projection lies within :data:`PAIRED_MM` of the
projected true centrelines in *both* views while the true points they project onto are more
than 3 mm apart (one vessel in view 1, another in view 2: a pairing the two views cannot
tell from a vessel), with the median share of their tangents along the epipolar axis.

    python benchmarks/trace_diagnosis.py --cases lca0,lca1 [--trees 6] [--set KEY=VALUE]
        [--out FILE.md]
"""

from __future__ import annotations

import os

import numpy as np
from scipy.spatial import cKDTree

from tree_stages import Case, case_parser, prepare_case, scores, write_table

from sdfcar.geometry.tubes import Segment
from sdfcar.methods.tubes.tracing import trace_each
from sdfcar.physics.tubes import DetectorRays
from sdfcar.pipeline.run import deterministic

#: A point is on the truth within this distance (mm), off it beyond :data:`OFF_MM`.
ON_MM = 1.2
OFF_MM = 3.0
#: A projection this close to a projected true centreline (mm at the isocenter) lies on it.
PAIRED_MM = 1.0

HEADER = """## Tube tracer: every start tube's tree against the truth (ghost pairings)

`benchmarks/trace_diagnosis.py`: views simulated from each phantom voxelised at 0.4 mm
(no inverse crime), noise-free, reference geometry, two 512^2 views; the tracer alone (no
refinement). Per start tube: its distance from the true centrelines and its radius against
the true radius there; per tree grown from it: the integral it leaves unexplained (the
tracer keeps the least: *kept*), scores against the 0.8 mm label and the true centrelines,
and its centreline points on the truth (within 1.2 mm), off it (beyond 3 mm) and, of those,
ghost-paired (projecting within 1 mm of a true centreline in both views, onto true points
more than 3 mm apart); last, the median share of the tangent along the epipolar axis
(abs(t . e); 0: in an epipolar plane, where two views give no depth) of the points on the
truth and of the ghost-paired ones.

"""


def pairing(points: np.ndarray, case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Per point: whether it projects onto the true centrelines in both views, and how far
    apart (mm) the true points it projects onto are."""
    truth = case.truth.points
    near, nearest = [], []
    for view in case.geometry.views:
        detector = DetectorRays(view)
        distance, index = cKDTree(detector.project(truth)).query(detector.project(points))
        near.append(distance * detector.pixel_mm_at_isocenter <= PAIRED_MM)
        nearest.append(index)
    separation = np.linalg.norm(truth[nearest[0]] - truth[nearest[1]], axis=1)
    return near[0] & near[1], separation


def epipolar_share(vessels: list[Segment], case: Case) -> np.ndarray:
    """Per centreline point: ``|t . e|``, the share of the vessel's tangent ``t`` along the
    epipolar axis ``e`` (normal to both views' rays through the point), the one direction
    both views see; near 0 the vessel runs in an epipolar plane, where two views give no
    depth ("Which way ghost pairings run" in docs/reconstruction-notes.md)."""
    shares = []
    for vessel in vessels:
        if len(vessel.points) < 2:
            shares.append(np.zeros(len(vessel.points)))
            continue
        tangent = np.gradient(vessel.points, axis=0)
        rays = [vessel.points - view.source for view in case.geometry.views]
        axis = np.cross(rays[0], rays[1])
        shares.append(np.abs(np.sum(tangent * axis, axis=1)) / np.maximum(
            np.linalg.norm(tangent, axis=1) * np.linalg.norm(axis, axis=1), 1e-12))
    return np.concatenate(shares) if shares else np.empty(0)


def tree_row(vessels: list[Segment], case: Case) -> dict[str, float]:
    """Scores of the traced ``vessels``, the fractions of their points on the truth, off it
    and ghost-paired, and the median :func:`epipolar_share` of the points on the truth and
    of the ghost-paired ones."""
    row = scores(vessels, case.label, case.truth, case.geometry.volume)
    points = np.vstack([v.points for v in vessels]) if vessels else np.empty((0, 3))
    distance, _ = cKDTree(case.truth.points).query(points)
    paired, separation = pairing(points, case)
    off = distance > OFF_MM
    ghost = off & paired & (separation > OFF_MM)
    share = epipolar_share(vessels, case)
    count = max(len(points), 1)

    def median(selected: np.ndarray) -> float:
        return float(np.median(share[selected])) if np.any(selected) else float("nan")

    row |= {"points": len(points), "on": float(np.sum(distance <= ON_MM)) / count,
            "off": float(np.sum(off)) / count, "ghost": float(np.sum(ghost)) / count,
            "share_on": median(distance <= ON_MM), "share_ghost": median(ghost)}
    return row


def diagnose(name: str, trees: int, overrides: list[str]) -> list[str]:
    """Table rows of every start tube of case ``name``."""
    case = prepare_case(name, trees, overrides)
    truth = cKDTree(case.truth.points)
    rows = []
    with deterministic():
        grown = list(trace_each(case.problem.measured, case.geometry, case.config.tree.tracing))
    kept = min(range(len(grown)), key=lambda n: grown[n][1].unexplained) if grown else -1
    for number, (start, tree) in enumerate(grown):
        distance, index = truth.query(start.centre)
        s = tree_row(tree.vessels, case)
        rows.append(f"| {name} | {number}{' (kept)' if number == kept else ''} | "
                    f"{distance:.1f} | {start.radius:.2f} / {case.truth.radii[index]:.2f} | "
                    f"{tree.unexplained:.0f} | {s['dice']:.3f} | {s['cldice']:.3f} | "
                    f"{s['recall']:.3f} | {s['precision']:.3f} | {s['vessels']} | "
                    f"{s['points']} | {s['on']:.2f} | {s['off']:.2f} | {s['ghost']:.2f} | "
                    f"{s['share_on']:.2f} / {s['share_ghost']:.2f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    args = case_parser(__doc__.splitlines()[0], "lca0,lca1", "trace_diagnosis.md").parse_args()
    load = os.getloadavg()[0]
    lines = ["| case | start tube | off truth (mm) | radius / true (mm) | unexplained | Dice | "
             "clDice | cl recall 1 mm | cl precision 1 mm | vessels | points | on truth | "
             "off (> 3 mm) | ghost-paired | median abs(t . e) on / ghost |", "|" + "---|" * 15]
    for name in args.cases.split(","):
        lines += diagnose(name, args.trees, args.set)
    write_table(args.out, HEADER, lines,
                f"load average {load:.1f} at start (no times are reported)")


if __name__ == "__main__":
    main()
