"""The tube method: the tree traced as centrelines with radii, voxelised on the grid."""

from __future__ import annotations

import time
from typing import ClassVar

from sdfcar.device import cpu_workers
from sdfcar.errors import bad_input
from sdfcar.geometry.tubes import centreline_record, tree_occupancy
from sdfcar.methods.base import Problem, Reconstruction
from sdfcar.methods.tubes.tracing import TubeSettings, trace_tree, trimmed_ends
from sdfcar.progress import Progress

#: Traced tubes are voxelised with this many sub-points per voxel edge.
SUPERSAMPLE = 2


class TubeMethod:
    """Trace the tree as tubes (:mod:`sdfcar.methods.tubes.tracing`); a voxel is vessel when
    at least half of it (``SUPERSAMPLE^3`` sub-points) lies inside a traced tube, or a traced
    centreline passes through it (thin vessels stay joined)."""

    name: ClassVar[str] = "tubes"
    priors: ClassVar[tuple[str, ...]] = ("none",)

    def unusable(self, problem: Problem) -> str | None:
        """The tracer fits line integrals: binary masks are refused."""
        if problem.target == "mask":
            return ("the tubes method fits line integrals; for binary masks use a field "
                    "preset (e.g. --preset field)")
        return None

    def fit(self, problem: Problem, settings: TubeSettings, progress: Progress,
            prior: Reconstruction | None = None) -> Reconstruction:
        """Trace both views and voxelise the traced tree."""
        started = time.perf_counter()
        traced = trace_tree(problem.measured, problem.geometry, settings, progress,
                            cpu_workers())
        if not traced.vessels:
            raise bad_input("views", "no vessel found: no tube fits both views (check the geometry "
                                     "and that the views hold line integrals in mm)")
        vessels = trimmed_ends(traced.vessels)
        occupancy = tree_occupancy(vessels, problem.grid, supersample=SUPERSAMPLE)
        if not (occupancy >= 0.5).any():
            raise bad_input("views", "the traced vessels lie outside the volume (check the "
                                     "geometry's volume)")
        statistics = {"vessels": len(vessels), "trees_tried": traced.trees_tried,
                      "trees_kept": traced.trees_kept,
                      "unexplained_integral": round(traced.unexplained, 3),
                      "centreline_points": int(sum(len(v.points) for v in vessels)),
                      "seconds": round(time.perf_counter() - started, 3),
                      "centrelines": centreline_record(vessels)}
        return Reconstruction(occupancy, None, statistics)
