"""The hybrid SDF tube tree: trace the tree, refine it globally, repair its topology, and
give the pipeline its occupancy and signed distance.

1. **Trace** (:mod:`sdfcar.methods.tubes.tracing`): centrelines with radii, vessel by
   vessel (integral targets only: the tracer fits line integrals).
2. **Refine** (:mod:`sdfcar.methods.tree.refine`): every point and radius jointly against
   both full views, on binned views first, then at full resolution. With self-calibration
   on (:mod:`sdfcar.pipeline.calibration` has corrected the geometry), view 2's pose too:
   alone on the binned views first, then with the tree (:mod:`sdfcar.methods.tree.pose`).
   First, every further tree the tracer found is joined to the first where both views
   show a vessel between them (:mod:`sdfcar.methods.tree.bridges`), so one tree is fitted,
   and the free ends are trimmed (:func:`~sdfcar.methods.tubes.tracing.trimmed_ends`).
3. **Topology** (:mod:`sdfcar.methods.tree.topology`), ``rounds`` times: drop branches the
   views do not support, follow every vessel on beyond its end and trace the branches the
   refined tree leaves unexplained, join further trees that now reach the first, trim the
   free ends, refine again at full resolution; stop when a round changes nothing.
4. **Field**: the signed distance of the union of the refined tapered tubes
   (:func:`sdfcar.geometry.tubes.segments_sdf`), exact near the surface, and the occupancy
   as the fraction of ``supersample^3`` sub-points per voxel inside it (partial volume),
   at least 0.5 in the voxels a centreline passes through (thin vessels stay joined).
   The centrelines with radii and the tree's topology go into the statistics.
"""

from __future__ import annotations

import time
from functools import partial
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch

from sdfcar.device import cpu_workers
from sdfcar.errors import bad_input
from sdfcar.geometry import CaseGeometry, VolumeGrid
from sdfcar.geometry.tubes import (Segment, centreline_record, tree_occupancy,
                                   segments_sdf)
from sdfcar.methods.base import Problem, Reconstruction
from sdfcar.methods.tree.bridges import join
from sdfcar.methods.tree.pose import Motion
from sdfcar.methods.tree.model import TreeModel
from sdfcar.methods.tree.refine import RefineSettings, refine, view_targets
from sdfcar.methods.tree.topology import prune, retrace
from sdfcar.methods.tubes.tracing import TubeSettings, trace_tree, trimmed_ends
from sdfcar.progress import Progress, Step

#: The signed distance is exact within this distance of the tree's surface (mm).
SDF_BAND_MM = 4.0


@dataclass(frozen=True)
class TreeSettings:
    """Settings of the hybrid SDF tube tree (``tree`` section)."""

    tracing: TubeSettings = field(default_factory=TubeSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)
    #: Topology rounds (prune, follow on, trace missed branches, refine) after the first
    #: refinement: lca0 Dice 0.717 -> 0.737 -> 0.772, rca0 0.713 -> 0.722 -> 0.721
    #: (benchmarks/tree_stages.py, 2 start tubes).
    rounds: int = 2
    #: A further tree is joined to the first when a path dark in both views (at least
    #: ``tracing.branch_threshold_mm``) leads from one of its root's ends to the first
    #: tree's centreline within this distance (mm; 0: never): see
    #: :func:`~sdfcar.methods.tree.bridges.join`.
    join_mm: float = 10.0
    #: A branch is dropped when either view holds less than this share of its integral.
    min_support: float = 0.5
    #: Sub-points per voxel edge for the occupancy (partial volume).
    supersample: int = 2

    POSITIVE: ClassVar[tuple[str, ...]] = ("supersample",)


class TreeMethod:
    """The hybrid SDF tube tree (see the module docstring)."""

    name: ClassVar[str] = "tree"
    priors: ClassVar[tuple[str, ...]] = ("none",)

    def unusable(self, problem: Problem) -> str | None:
        """The tracer that initialises the tree fits line integrals: masks are refused."""
        if problem.target == "mask":
            return ("the tree method is initialised by tracing line integrals; for binary "
                    "masks use a field preset (e.g. --preset field)")
        return None

    def fit(self, problem: Problem, settings: TreeSettings, progress: Progress,
            prior: Reconstruction | None = None) -> Reconstruction:
        """Trace, refine (with view 2's pose when self-calibrating), repair the topology;
        the occupancy and SDF of the refined tree, and the geometry it was refined in."""
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        traced = trace_tree(problem.measured, problem.geometry, settings.tracing, progress,
                            cpu_workers())
        if not traced.vessels:
            raise bad_input("views", "no vessel found: no tube fits both views (check the geometry "
                                "and that the views hold line integrals in mm)")
        joined = trimmed_ends(join_trees(problem, settings, traced.vessels))
        seconds["tracing"], clock = _lap(clock)
        vessels, history, geometry = self._refined(problem, settings, joined, progress)
        seconds["refining"], clock = _lap(clock)
        occupancy, sdf = _field(problem.grid, vessels, settings.supersample)
        if not (occupancy >= 0.5).any():
            raise bad_input("views", "the traced vessels lie outside the volume (check the "
                                     "geometry's volume)")
        seconds["field"], _ = _lap(clock)
        statistics = {"vessels": len(vessels), "vessels_traced": len(traced.vessels),
                      "trees_tried": traced.trees_tried, "trees_kept": traced.trees_kept,
                      "trees_joined": _roots(traced.vessels) - _roots(joined),
                      "rounds": history,
                      "seconds": seconds, "centrelines": centreline_record(vessels)}
        return Reconstruction(occupancy, sdf, statistics, partial(
            _field, vessels=vessels, supersample=settings.supersample),
            geometry if problem.pose_freedom is not None else None)

    def _refined(self, problem: Problem, settings: TreeSettings, vessels: list[Segment],
                 progress: Progress) -> tuple[list[Segment], list[dict[str, Any]], CaseGeometry]:
        """The traced vessels refined, then ``rounds`` topology rounds; the geometry they
        were refined in."""
        vessels, steps, problem = refit(problem, settings, vessels, True, progress)
        history = [{"round": 0, "vessels": len(vessels), "steps": steps}]
        for round_ in range(1, settings.rounds + 1):
            grown, record = repair(problem, settings, vessels)
            progress(Step("topology", round_, settings.rounds, "round"))
            if not any(record.values()):
                history.append(record | {"round": round_, "vessels": len(vessels), "steps": 0})
                break
            vessels, steps, problem = refit(problem, settings, grown, False, progress)
            history.append(record | {"round": round_, "vessels": len(vessels), "steps": steps})
        return vessels, history, problem.geometry


def join_trees(problem: Problem, settings: TreeSettings, vessels: list[Segment]
               ) -> list[Segment]:
    """``vessels`` with further trees joined to the first (:func:`~sdfcar.methods.tree.
    bridges.join`, within ``join_mm``, through points the tracer would take a branch at)."""
    return join(vessels, problem.measured, problem.geometry, settings.join_mm,
                settings.tracing.branch_threshold_mm, settings.tracing.step_mm)


def refit(problem: Problem, settings: TreeSettings, vessels: list[Segment], coarse: bool,
          progress: Progress) -> tuple[list[Segment], int, Problem]:
    """``vessels`` refined against the problem's views (binned first when ``coarse``; when
    self-calibrating, view 2's pose alone on the binned views first, then with the tree),
    the steps taken, and the problem in the geometry refined with them."""
    refined, freedom = settings.refine, problem.pose_freedom
    model = TreeModel.from_segments(vessels, torch.float32, problem.device)
    motion = None if freedom is None else Motion(freedom, torch.float32, problem.device)
    calibration = None if freedom is None else freedom.settings
    steps = 0
    levels = ((refined.binning, refined.coarse_iterations),) if coarse else ()
    for index, (binning, iterations) in enumerate(levels + ((1, refined.fine_iterations),)):
        targets = view_targets(problem.geometry.views, problem.measured, problem.silhouettes,
                               torch.float32, problem.device, binning)
        targets[1].motion = motion
        first_binned = motion is not None and coarse and index == 0
        alone = ((False, calibration.pose_iterations),) if first_binned else ()
        for fit_tree, count in alone + ((True, iterations),):
            steps += refine(model, targets, refined, count, problem.target,
                            problem.silhouette.k, settings.tracing.step_mm, progress,
                            "refining" if fit_tree else "calibrating", fit_tree,
                            calibration).steps
    if motion is not None:
        first, second = problem.geometry.views
        further = motion.correction()
        views = (first, further.applied(second))
        freedom = replace(freedom, start=freedom.start + further.vector)
        problem = replace(problem, geometry=replace(problem.geometry, views=views),
                          pose_freedom=freedom)
    return model.to_segments(), steps, problem


def repair(problem: Problem, settings: TreeSettings, vessels: list[Segment]
           ) -> tuple[list[Segment], dict[str, int]]:
    """One topology round's new tree (unsupported branches dropped, vessels followed on
    beyond their ends, missed branches traced, further trees joined to the first, free
    ends trimmed) and how many vessels it dropped, extended and added, and how many trees
    it joined."""
    kept = prune(vessels, problem, settings.min_support)
    grown = retrace(kept, problem.measured, problem.geometry, settings.tracing)
    extended = sum(len(after.points) > len(before.points) for before, after in zip(kept, grown))
    joined = trimmed_ends(join_trees(problem, settings, grown))
    return joined, {"pruned": len(vessels) - len(kept), "extended": extended,
                    "added": len(grown) - len(kept), "joined": _roots(grown) - _roots(joined)}


def _field(grid: VolumeGrid, vessels: list[Segment], supersample: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy (partial volume; at least 0.5 where a centreline passes, so thin vessels
    stay joined) and signed distance of the refined tubes on ``grid``."""
    return (tree_occupancy(vessels, grid, supersample),
            segments_sdf(vessels, grid, SDF_BAND_MM))


def _roots(vessels: list[Segment]) -> int:
    """How many separate trees ``vessels`` hold."""
    return sum(v.parent is None for v in vessels)


def _lap(clock: float) -> tuple[float, float]:
    """Seconds since ``clock`` (rounded) and the new clock."""
    now = time.perf_counter()
    return round(now - clock, 3), now

