"""The centreline tree of a reconstruction: vessels resampled at 0.5 mm, their radii, names
and junctions.

Built from the run record's centrelines (``statistics.<method>.centrelines``: name, parent,
points in LPS mm, radii in mm; :func:`sdfcar.geometry.tubes.centreline_record`), so the
pipeline and ``sdfcar qca`` (which reads ``run.json`` back) analyse the very same numbers.

Names: the methods number their vessels in tracing order (``vessel3``), which says nothing
anatomical. Here the root vessels (no parent) are named ``vessel 1``, ``vessel 2``, ...
longest first, and every other vessel ``branch 1``, ``branch 2``, ... in the method's order;
no anatomical names (LAD, LCX, ...) are given: nothing in two views says which is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sdfcar.centerlines import parse, resample_polyline
from sdfcar.errors import bad_input

#: Centreline samples are at most this far apart (mm), equally spaced along each vessel.
STEP_MM = 0.5


@dataclass(frozen=True)
class Vessel:
    """One vessel: samples at most :data:`STEP_MM` apart from its start (proximal end)."""

    name: str  # "vessel 1", "branch 2", ...
    source_name: str  # the method's own name for it
    parent: str | None  # name of the parent vessel (None: a root)
    points: np.ndarray  # (N, 3) LPS mm
    radii: np.ndarray  # (N,) mm

    @property
    def arc(self) -> np.ndarray:
        """Arc length of each sample from the start (mm)."""
        return arc_length(self.points)

    @property
    def length_mm(self) -> float:
        """Length along the centreline (mm)."""
        return float(self.arc[-1])

    def point_at(self, arc_mm: float) -> np.ndarray:
        """The centreline point ``arc_mm`` from the start (clipped to the vessel)."""
        arc = self.arc
        return np.array([np.interp(arc_mm, arc, self.points[:, d]) for d in range(3)])


@dataclass(frozen=True)
class Junction:
    """Where a branch leaves its parent: the parent's centreline point closest to the
    branch's first point, its arc position along the parent and the gap between them."""

    child: str
    parent: str
    point: np.ndarray  # (3,) LPS mm
    arc_mm: float
    gap_mm: float


@dataclass(frozen=True)
class CentrelineTree:
    """The vessels (roots first, longest first) and the junctions of the branches."""

    vessels: tuple[Vessel, ...]
    junctions: tuple[Junction, ...]

    @classmethod
    def from_record(cls, records: Any, where: str = "centrelines") -> CentrelineTree:
        """The tree of a record's centreline list (one-line error naming ``where`` when it is
        not a list of vessels with points and radii)."""
        if not isinstance(records, list):
            raise bad_input(where, "expected a list of vessels")
        polylines = parse({"vessels": records}, where)
        names = [str(entry.get("name", n)) for n, entry in enumerate(records)]
        parents = [entry.get("parent") for entry in records]
        lengths = [float(arc_length(points)[-1]) for points, _ in polylines]
        roots = [n for n in range(len(records)) if parents[n] not in names]
        branches = [n for n in range(len(records)) if n not in roots]
        order = sorted(roots, key=lambda n: -lengths[n]) + branches
        display = {names[n]: f"vessel {k + 1}" for k, n in enumerate(order[:len(roots)])}
        display |= {names[n]: f"branch {k + 1}" for k, n in enumerate(branches)}
        vessels = []
        for n in order:
            points, radii, _ = resample_polyline(*polylines[n], STEP_MM)
            vessels.append(Vessel(display[names[n]], names[n], display.get(parents[n]),
                                  points, radii))
        by_name = {v.name: v for v in vessels}
        junctions = tuple(_junction(v, by_name[v.parent]) for v in vessels if v.parent)
        return cls(tuple(vessels), junctions)

    def vessel(self, name: str, where: str = "--vessel") -> Vessel:
        """The vessel called ``name`` (one-line error listing the names otherwise)."""
        for vessel in self.vessels:
            if vessel.name == name:
                return vessel
        raise bad_input(where, f"no vessel {name!r} (vessels: "
                               f"{', '.join(v.name for v in self.vessels)})")

    def children(self, name: str) -> list[Junction]:
        """The junctions of ``name``'s branches."""
        return [j for j in self.junctions if j.parent == name]

    def topology(self) -> list[dict[str, Any]]:
        """Per vessel: name, the method's name, parent, number of samples, and the junction
        (point on the parent, arc position along it, gap) for the run record."""
        junctions = {j.child: j for j in self.junctions}
        out = []
        for vessel in self.vessels:
            entry: dict[str, Any] = {"name": vessel.name, "source_name": vessel.source_name,
                                     "parent": vessel.parent, "points": len(vessel.points)}
            junction = junctions.get(vessel.name)
            if junction is not None:
                entry["junction_mm"] = np.round(junction.point, 2).tolist()
                entry["junction_arc_mm"] = round(junction.arc_mm, 2)
                entry["junction_gap_mm"] = round(junction.gap_mm, 2)
            out.append(entry)
        return out


def arc_length(points: np.ndarray) -> np.ndarray:
    """Cumulative length along a polyline ``(N, 3)``, starting at 0."""
    steps = np.linalg.norm(np.diff(np.asarray(points, float), axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def closest_on_polyline(points: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The point of polyline ``points`` closest to ``query``: the point, its arc position
    and its distance."""
    a, b = points[:-1], points[1:]
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", query - a, ab)
                / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0.0, 1.0)
    nearest = a + t[:, None] * ab
    distances = np.linalg.norm(nearest - query, axis=1)
    k = int(np.argmin(distances))
    arc = arc_length(points)
    return nearest[k], float(arc[k] + t[k] * (arc[k + 1] - arc[k])), float(distances[k])


def _junction(child: Vessel, parent: Vessel) -> Junction:
    point, arc, gap = closest_on_polyline(parent.points, child.points[0])
    return Junction(child.name, parent.name, point, arc, gap)

