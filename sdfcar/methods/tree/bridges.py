"""Join separately traced trees to the first along the vessel both views show between them.

The tracer stops a vessel where it cannot see through a crossing or an overlap, and what lies
beyond is traced as a further tree (:func:`~sdfcar.methods.tubes.tracing.trace_tree`). A
coronary tree comes from one ostium, so a further tree whose root ends near the first is
joined to it: the bridge is the minimal path (:class:`skimage.graph.MCP_Geometric`) from the
root's end to the first tree's centreline through the points that are dark in both views,
cost ``1 / darkness`` (so it keeps to the middle of a vessel), on a 0.4 mm lattice around
them. Where no such path exists (every way crosses a point one view shows as background),
the tree stays separate. The refinement then fits the bridge with the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.graph import MCP_Geometric

from sdfcar.geometry import CaseGeometry
from sdfcar.geometry.tubes import Segment, branch_point
from sdfcar.physics.tubes import DetectorRays

#: Spacing of the lattice the bridge's path is searched on (mm).
LATTICE_MM = 0.4
#: Margin of the searched box around the root's end and the anchors in reach (mm).
MARGIN_MM = 2.0
#: A root end this close to the first tree needs no bridge (mm).
MIN_GAP_MM = 1e-6


@dataclass(frozen=True)
class Darkness:
    """Both views' measured integrals, smoothed: where a point looks like vessel in both."""

    detectors: tuple[DetectorRays, ...]
    smoothed: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, images: Sequence[np.ndarray], geometry: CaseGeometry) -> Darkness:
        return cls(tuple(DetectorRays(view) for view in geometry.views),
                   tuple(ndimage.gaussian_filter(np.asarray(image, float), 1.0)
                         for image in images))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The smaller of the two views' smoothed integrals (mm) at ``points`` ``(N, 3)``."""
        return np.min([ndimage.map_coordinates(image, detector.project(points).T, order=1,
                                               mode="constant")
                       for detector, image in zip(self.detectors, self.smoothed)], axis=0)


def join(vessels: Sequence[Segment], images: Sequence[np.ndarray], geometry: CaseGeometry,
         max_gap_mm: float, threshold_mm: float, step_mm: float) -> list[Segment]:
    """``vessels`` with every further tree (a root after the first vessel, with its
    branches) made a branch of the first tree where a path dark in both views (at least
    ``threshold_mm`` of integral) leads from one of its free ends (either end of its root,
    the last point of a branch) to the first tree's centreline points within
    ``max_gap_mm``: the further tree is rerooted at that end (:func:`rerooted`) and its new
    root starts at the path's anchor, with the path (resampled every ``step_mm``, the end's
    radius throughout) as its first points. The first tree and the trees not joined are
    kept as they are; a joined tree's vessels follow the first tree's, parents first.
    ``max_gap_mm <= 0`` joins nothing."""
    if max_gap_mm <= 0 or sum(v.parent is None for v in vessels) < 2:
        return list(vessels)  # nothing to join: no images filtered
    darkness = Darkness.of(images, geometry)
    first, *further = trees(vessels)
    joined, apart = list(first), []
    for tree in further:
        bridged = _bridged(tree, joined, darkness, max_gap_mm, threshold_mm, step_mm)
        if bridged is None:
            apart += tree
        else:
            joined += bridged
    return joined + apart


def trees(vessels: Sequence[Segment]) -> list[list[Segment]]:
    """``vessels`` grouped by tree (each root with its branches, in their order), the trees
    in the order of their roots."""
    root_of: dict[str, str] = {}
    for vessel in vessels:
        root_of[vessel.name] = root_of.get(vessel.parent, vessel.name) \
            if vessel.parent is not None else vessel.name
    groups: dict[str, list[Segment]] = {}
    for vessel in vessels:
        groups.setdefault(root_of[vessel.name], []).append(vessel)
    return list(groups.values())


def rerooted(tree: Sequence[Segment], name: str) -> list[Segment]:
    """The tree ``tree`` (its root first, parents before branches) rerooted at the last
    point of vessel ``name``: the new root (named ``name``) runs from there back along
    ``name`` and up through its ancestors to the old root's first point; each ancestor's
    part beyond the point it was left at becomes a branch of the new root, under its own
    name; branches keep their points and move to whichever of the two now holds their
    first point. Parents come before their branches."""
    by_name = {v.name: v for v in tree}
    chain = [by_name[name]]
    while chain[-1].parent is not None:
        chain.append(by_name[chain[-1].parent])
    points, radii = [chain[0].points[::-1]], [chain[0].radii[::-1]]
    kept: dict[str, Segment] = {}
    parent_of = {v.name: v.parent for v in tree}
    for child, ancestor in zip(chain, chain[1:]):
        at = branch_point(ancestor, child)
        points.append(ancestor.points[:at][::-1])
        radii.append(ancestor.radii[:at][::-1])
        rest = len(ancestor.points) - at >= 2
        if rest:
            kept[ancestor.name] = Segment(ancestor.name, ancestor.points[at:],
                                          ancestor.radii[at:], name)
        for branch in tree:  # branches that left from what is now the new root
            if branch.parent == ancestor.name and branch.name != child.name and (
                    not rest or branch_point(ancestor, branch) < at):
                parent_of[branch.name] = name
    root = Segment(name, np.vstack(points), np.concatenate(radii), None)
    chained = {c.name for c in chain}
    others = [kept[v.name] if v.name in kept else
              Segment(v.name, v.points, v.radii, parent_of[v.name])
              for v in tree if v.name in kept or v.name not in chained]
    return _parents_first([root] + others)


def _parents_first(vessels: Sequence[Segment]) -> list[Segment]:
    """``vessels`` reordered so that every parent comes before its branches (stable); any
    whose parent is not among them follow at the end."""
    placed: set[str | None] = {None}
    ordered, waiting = [], list(vessels)
    while waiting:
        ready = [v for v in waiting if v.parent in placed] or waiting
        ordered += ready
        placed |= {v.name for v in ready}
        waiting = [v for v in waiting if v.name not in placed]
    return ordered


def _bridged(tree: Sequence[Segment], first: Sequence[Segment], darkness: Darkness,
             max_gap_mm: float, threshold_mm: float, step_mm: float) -> list[Segment] | None:
    """``tree`` rerooted at its free end with the cheapest path to ``first`` and made a
    branch of it along that path (see :func:`join`), or None when no end has one."""
    points = np.concatenate([v.points for v in first])
    owners = np.repeat(np.arange(len(first)), [len(v.points) for v in first])
    index = cKDTree(points)
    root = tree[0]
    ends = [(root, 0), (root, -1)] + [(v, -1) for v in tree[1:]]
    best: tuple[float, Segment, int, np.ndarray, int] | None = None
    for vessel, end in ends:
        anchors = index.query_ball_point(vessel.points[end], max_gap_mm)
        found = _path(vessel.points[end], points[anchors], darkness, threshold_mm) \
            if anchors else None
        if found is not None and (best is None or found[0] < best[0]):
            best = (found[0], vessel, end, found[1], anchors[found[2]])
    if best is None:
        return None
    _, vessel, end, path, anchor = best
    if vessel is not root:  # a branch's last point: it becomes the root's first
        tree, end = rerooted(tree, vessel.name), 0
        root = tree[0]
    ordered = (root.points, root.radii) if end == 0 else (root.points[::-1], root.radii[::-1])
    bridge = _resampled(np.vstack([points[anchor], path[1:-1], ordered[0][0]]), step_mm)[:-1]
    if np.linalg.norm(points[anchor] - ordered[0][0]) < MIN_GAP_MM:
        bridge = bridge[:0]  # the root starts at the anchor: no zero-length piece
    joined = Segment(root.name, np.vstack([bridge, ordered[0]]),
                     np.concatenate([np.full(len(bridge), ordered[1][0]), ordered[1]]),
                     first[owners[anchor]].name)
    return [joined] + list(tree[1:])


def _path(start: np.ndarray, anchors: np.ndarray, darkness: Darkness, threshold_mm: float
          ) -> tuple[float, np.ndarray, int] | None:
    """The minimal path from ``start`` to the nearest (by path cost) of ``anchors`` through
    points at least ``threshold_mm`` dark: its cost, its lattice points from the anchor to
    ``start``, and the anchor's index; None when every path leaves the dark points."""
    low = np.minimum(start, anchors.min(axis=0)) - MARGIN_MM
    high = np.maximum(start, anchors.max(axis=0)) + MARGIN_MM
    shape = tuple(int(n) for n in np.ceil((high - low) / LATTICE_MM) + 1)
    axes = [low[d] + LATTICE_MM * np.arange(shape[d]) for d in range(3)]
    lattice = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    dark = darkness(lattice.reshape(-1, 3)).reshape(shape)
    cost = np.where(dark >= threshold_mm, 1.0 / np.maximum(dark, 1e-6), np.inf)
    start_node = _node(start, low, shape)
    anchor_nodes = [_node(a, low, shape) for a in anchors]
    if not np.isfinite(cost[start_node]):
        return None
    search = MCP_Geometric(cost, fully_connected=True)
    costs, _ = search.find_costs([start_node], anchor_nodes, find_all_ends=False)
    reached = np.array([costs[node] for node in anchor_nodes])
    if not np.isfinite(reached).any():
        return None
    nearest = int(np.argmin(reached))
    nodes = np.array(search.traceback(anchor_nodes[nearest]))  # from start to the anchor
    return float(reached[nearest]), (low + LATTICE_MM * nodes)[::-1], nearest


def _node(point: np.ndarray, low: np.ndarray, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The lattice node nearest ``point``."""
    node = np.clip(np.rint((point - low) / LATTICE_MM).astype(int), 0, np.array(shape) - 1)
    return tuple(int(n) for n in node)


def _resampled(points: np.ndarray, step_mm: float) -> np.ndarray:
    """The polyline ``points`` resampled at equal arc-length steps of at most ``step_mm``,
    its first and last points kept."""
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    count = max(int(np.ceil(lengths[-1] / step_mm)), 1)
    at = np.linspace(0.0, lengths[-1], count + 1)
    return np.stack([np.interp(at, lengths, points[:, d]) for d in range(3)], axis=1)
