"""Tube tracing: a coronary tree as 3D centrelines with radii, fitted to two views.

Why tubes: with two views a per-voxel model cannot tell a vessel from its "ghost" pairings in
each epipolar plane once the data carry any noise or model error
(``docs/reconstruction-notes.md``, "The inverse crime"). A tracer carries the priors that do:
a vessel is a round tube, continuous through crossings in either view, and the tree is one
piece. The algorithm:

1. **Local tube fit** (:func:`fit_tube`): centre (two shifts across the axis), direction and
   radius of a 2 mm piece of cylinder, least squares (robust loss) between its analytic line
   integrals (:mod:`sdfcar.physics.tubes`) and both views' residual images in a window.
   *Support* per view is the scale that best maps the rendered chords onto the data (1 for
   a vessel, 0 for background).
2. **Following** a vessel: step ``step_mm`` along the axis, refit, stop when either view's
   support falls under ``min_support``, the axis turns more than ``max_turn_deg``, the tube
   leaves the volume, or it runs into an already traced vessel.
3. **Explaining away**: a traced vessel's rendered integrals are subtracted from both views,
   so its ghost pairings lose their support.
4. **Branches**: probes leave every other centreline point in 96 directions; where both
   smoothed residuals stay dark over 1-4 mm beyond the wall, a branch is followed from there
   and joined to its parent point.
5. **Start tubes**: the best-fitting thick tubes (support near 1 in both views) on a coarse grid,
   at least 5 mm apart. A whole tree is grown from each of the first ``trees`` of them, and
   the tree that leaves the least unexplained integral (sum of absolute residuals over both
   views) wins: a ghost start tube steals signal that the true vessels then miss.
6. **More trees**: up to ``max_trees`` separate trees (a phantom's separate vessels, a left
   and a right coronary tree, a catheter). With the kept trees explained away, start tubes
   are searched again in what they leave; the best of ``trees`` new trees is kept when it
   explains at least ``min_tree_share`` of the integral still unexplained.
7. **Ends** (:func:`trimmed_ends`, applied by the methods once trees are joined): a
   vessel's last fits, whose window still holds part of the vessel past its end, shrink
   their radius instead of moving along the axis; the points whose radius fell so are
   dropped from the free ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage, optimize
from scipy.spatial import cKDTree

from sdfcar.geometry import CaseGeometry, VolumeGrid
from sdfcar.physics.hull import noise_sigma
from sdfcar.geometry.tubes import Segment, branch_point
from sdfcar.parallel import forked_map
from sdfcar.physics.tubes import DetectorRays, cylinder_chords, render_chain
from sdfcar.progress import Progress, Step, silent

#: Floor of the per-view noise level used to weight residuals (mm of integral).
MIN_NOISE_MM = 0.1
#: Robust loss scale, in noise levels: larger residuals (other vessels) count less.
ROBUST_SCALE = 3.0
#: Half length of the tube piece a local fit sees (mm) and how far it may move (mm).
FIT_HALF_LENGTH_MM = 1.0
FIT_MAX_SHIFT_MM = 1.5
#: Relative step of the fit's finite differences.
FIT_DIFF_STEP = 1e-3
#: The fit stops when its cost or its parameters change by less than this (relative;
#: SciPy's default). At 1e-4 the tracer evaluated 34-72 % fewer chords, but the vessels'
#: ends came out 0.2-0.4 mm longer (before :func:`trimmed_ends`) and rca1's Dice fell by
#: 0.04-0.05 in each of three tries: docs/benchmarks.md, "Faster tracing".
FIT_TOLERANCE = 1e-8
#: Radius bounds of a fit (mm).
RADIUS_RANGE_MM = (0.3, 3.0)
#: A start tube's support must lie in this range in both views (no overlapping vessel).
START_SUPPORT = (0.85, 1.15)
START_SPACING_MM = 5.0
START_CANDIDATES = 40
#: Branch probes: distances beyond the parent's wall (mm), minimum angle to its axis (deg).
BRANCH_PROBES_MM = (0.8, 1.6, 2.4, 3.2)
BRANCH_MIN_ANGLE_DEG = 25.0
BRANCH_START_MM = 1.2
BRANCH_START_RADIUS_MM = 0.8
#: A free end's last points are dropped while their radius is under this share of the
#: largest of the ``END_LOOKBACK`` points before: the fit's window (``FIT_HALF_LENGTH_MM``
#: either side) still holds part of the vessel one step past its end, and the fit shrinks
#: the radius instead of moving along the axis (the QCA test's 40 mm vessel: its traced
#: ends 1.1 / 1.7 mm long at 0.7-0.75 of the true radius; 0.1 / 0.3 mm trimmed). A vessel
#: tapering by up to 3.5 % a step (4 % per mm) keeps its ends.
END_RADIUS_SHARE = 0.9
END_LOOKBACK = 3


@dataclass(frozen=True)
class TubeSettings:
    """Settings of the tube tracer (``tubes`` section)."""

    #: Trees grown, each from one start tube; the one leaving the least unexplained wins.
    trees: int = 6
    #: Separate trees kept at most (step 6 of the module docstring; 1: the winning one).
    #: At 4 (against 1; views from 0.4 mm trees, mean Dice): tubes LCA / RCA 0.392 / 0.751
    #: -> 0.448 / 0.784, sdf-tree 0.442 / 0.871 -> 0.488 / 0.898, lumens0 a little lower;
    #: the real GE pair's reprojection 0.42 -> 0.77 (docs/benchmarks.md).
    max_trees: int = 4
    #: A further tree is kept when it explains this share of what the kept ones leave.
    min_tree_share: float = 0.05
    #: Step along a vessel between fits (mm).
    step_mm: float = 0.8
    #: A vessel ends where either view's support (fitted scale of its integrals) drops below.
    min_support: float = 0.5
    #: ... or where its axis turns by more than this between steps (degrees).
    max_turn_deg: float = 40.0
    #: Weight of a step's departure from straight ahead in its fit (see :func:`fit_tube`;
    #: 0: none). At 1, rca0 / rca1 rose from Dice 0.735 / 0.693 to 0.909 / 0.816 after the
    #: tree method's refinement, lca0 / lca1 fell from 0.600 / 0.440 to 0.583 / 0.379
    #: (benchmarks/tree_stages.py, 2 start tubes, pruning still with the tracer's rendering).
    straightness: float = 0.0
    max_steps: int = 400
    #: A branch is tried where both smoothed residual views exceed this beyond the wall (mm).
    branch_threshold_mm: float = 0.5
    #: ... and kept when it can be followed this many steps.
    min_branch_steps: int = 4

    POSITIVE: ClassVar[tuple[str, ...]] = ("trees", "max_trees", "min_tree_share", "step_mm",
                                           "min_support", "max_turn_deg", "max_steps",
                                           "min_branch_steps")


@dataclass(frozen=True)
class TubeFit:
    """A fitted tube piece: centre and unit axis (LPS mm), radius (mm), per-view support
    and the worst view's relative misfit ``|y - rendered|^2 / |y|^2``."""

    centre: np.ndarray
    axis: np.ndarray
    radius: float
    support: tuple[float, ...]
    misfit: float


@dataclass
class TracedTree:
    """The traced vessels (each tree's first is its start tube's; a branch names its parent)
    and what they leave unexplained in the views (sum of |residual|, mm * px)."""

    vessels: list[Segment]
    unexplained: float
    trees_tried: int
    trees_kept: int = 1


class _ViewData:
    """One view's rays, its measured integrals and what traced vessels leave of them."""

    def __init__(self, detector: DetectorRays, image: np.ndarray) -> None:
        self.detector = detector
        self.image = np.asarray(image, dtype=np.float64)
        self.noise = max(noise_sigma(self.image), MIN_NOISE_MM)
        self.reset()

    def reset(self) -> None:
        self.residual = self.image.copy()
        self.smoothed = ndimage.gaussian_filter(self.residual, 1.0)

    def subtract(self, rendered: np.ndarray) -> None:
        self.residual -= rendered
        self.smoothed = ndimage.gaussian_filter(self.residual, 1.0)

    def saved(self) -> tuple[np.ndarray, np.ndarray]:
        """The residual and its smoothed copy, to put back with :meth:`restore`."""
        return self.residual.copy(), self.smoothed.copy()

    def restore(self, saved: tuple[np.ndarray, np.ndarray]) -> None:
        self.residual, self.smoothed = saved

    def sample_smoothed(self, points: np.ndarray) -> np.ndarray:
        """Smoothed residual (bilinear) at the projections of ``points`` (N, 3)."""
        coords = self.detector.project(points).T
        return ndimage.map_coordinates(self.smoothed, coords, order=1, mode="constant")


def _perpendicular_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    first = np.cross(axis, helper)
    first /= np.linalg.norm(first)
    return first, np.cross(axis, first)


def fit_tube(views: Sequence[_ViewData], centre: np.ndarray, axis: np.ndarray,
             radius: float, straightness: float = 0.0) -> TubeFit | None:
    """Fit a tube piece near (centre, axis, radius) to the views' residuals; None when the
    piece does not project onto both detectors. ``straightness`` > 0 adds the piece's
    departure from straight ahead (its shift across ``axis`` in mm, its turn in radians) as
    residuals weighted ``straightness * sqrt(pixels)``: where the views cannot place the
    piece (a vessel running along an epipolar plane is seen at no definite depth), it goes
    on straight instead of drifting to a ghost path."""
    reach = radius + max(1.0, radius)
    windows = []
    for view in views:
        window = view.detector.window(centre, axis, FIT_HALF_LENGTH_MM, reach)
        if window is None:
            return None
        windows.append((view, window, view.residual[window.rows, window.cols]))
    first, second = _perpendicular_basis(axis)

    def unpack(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres, unit axes and radii of parameter vectors ``z`` ``(K, 5)``."""
        directions = axis + z[:, 2:3] * first + z[:, 3:4] * second
        return (centre + z[:, 0:1] * first + z[:, 1:2] * second,
                directions / np.linalg.norm(directions, axis=1, keepdims=True), np.exp(z[:, 4]))

    prior_weight = straightness * np.sqrt(sum(len(measured) for _, _, measured in windows))

    def residuals_of(z: np.ndarray) -> np.ndarray:
        """Noise-scaled residuals ``(K, pixels)`` of parameter vectors ``z`` ``(K, 5)``, then
        the weighted shift and turn."""
        c, a, r = unpack(z)
        return np.concatenate([
            (measured - cylinder_chords(view.detector.source, window.rays, c, a, r)) / view.noise
            for view, window, measured in windows] + [prior_weight * z[:, 0:4]], axis=1)

    low_r, high_r = np.log(RADIUS_RANGE_MM)
    start = np.array([0.0, 0.0, 0.0, 0.0, np.clip(np.log(radius), low_r + 1e-6, high_r - 1e-6)])
    low = np.array([-FIT_MAX_SHIFT_MM] * 2 + [-0.6] * 2 + [low_r])
    high = np.array([FIT_MAX_SHIFT_MM] * 2 + [0.6] * 2 + [high_r])

    def jacobian(z: np.ndarray) -> np.ndarray:
        """Forward differences as SciPy's "2-point" takes them (steps away from 0, turned
        back inside the bounds), all five in one batched evaluation."""
        step = FIT_DIFF_STEP * np.where(z >= 0, 1.0, -1.0) * np.maximum(1.0, np.abs(z))
        step = np.where((z + step > high) | (z + step < low), -step, step)
        step = (z + step) - z  # exactly representable
        values = residuals_of(np.vstack([z, z + np.diag(step)]))
        return ((values[1:] - values[0]) / step[:, None]).T

    solution = optimize.least_squares(lambda z: residuals_of(z[None])[0], start,
                                      jac=jacobian, bounds=(low, high), loss="soft_l1",
                                      f_scale=ROBUST_SCALE, max_nfev=60,
                                      ftol=FIT_TOLERANCE, xtol=FIT_TOLERANCE)
    (c,), (a,), (radii,) = unpack(solution.x[None])
    r = float(radii)
    support, misfit = [], []
    for view, window, measured in windows:
        chords = cylinder_chords(view.detector.source, window.rays, c, a, r)
        energy = float(chords @ chords)
        support.append(float(measured @ chords) / energy if energy > 0 else 0.0)
        misfit.append(float(np.sum((measured - chords) ** 2) / max(measured @ measured, 1e-12)))
    return TubeFit(c, a, r, tuple(support), max(misfit))


def trimmed_ends(vessels: Sequence[Segment]) -> list[Segment]:
    """``vessels`` without the points at their free ends (a vessel's last; a root's first
    too) whose radius fell under ``END_RADIUS_SHARE`` of the largest of the
    ``END_LOOKBACK`` points before them; a point a branch leaves from is kept."""
    by_name = {v.name: v for v in vessels}
    anchors: dict[str, list[int]] = {v.name: [] for v in vessels}
    for vessel in vessels:
        if vessel.parent in by_name:
            anchors[vessel.parent].append(branch_point(by_name[vessel.parent], vessel))
    trimmed = []
    for vessel in vessels:
        at = anchors[vessel.name]
        last = _kept_length(vessel.radii, max(at, default=0) + 1)
        points, radii = vessel.points[:last], vessel.radii[:last]
        if vessel.parent is None:
            first = last - _kept_length(radii[::-1], last - min(at, default=last - 1))
            points, radii = points[first:], radii[first:]
        trimmed.append(Segment(vessel.name, points, radii, vessel.parent))
    return trimmed


def folded(vessels: Sequence[Segment], root: str) -> list[Segment]:
    """``vessels`` without the one-point vessel ``root`` (a start tube that could not be
    followed either way, e.g. at a bifurcation; one point is no centreline): its first
    branch, which starts at that point, becomes the root and the others leave from it."""
    children = [v.name for v in vessels if v.parent == root]
    parents = {name: None if order == 0 else children[0] for order, name in enumerate(children)}
    return [Segment(v.name, v.points, v.radii, parents.get(v.name, v.parent))
            for v in vessels if v.name != root]


def _kept_length(radii: np.ndarray, minimum: int) -> int:
    """How many of ``radii`` are kept when the last are dropped while under
    ``END_RADIUS_SHARE`` of the largest of the ``END_LOOKBACK`` before them (at least
    ``minimum``)."""
    keep = len(radii)
    while keep > max(minimum, 2) and radii[keep - 1] < END_RADIUS_SHARE * float(
            np.max(radii[max(keep - 1 - END_LOOKBACK, 0):keep - 1])):
        keep -= 1
    return keep


def _fibonacci_sphere(count: int) -> np.ndarray:
    """``count`` nearly evenly spread unit vectors."""
    index = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / count)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * index
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar),
                     np.cos(polar)], axis=1)


@dataclass
class _TracerState:
    """A snapshot of a :class:`_Tracer`: each view's residuals, the vessels, their points."""

    views: list[tuple[np.ndarray, np.ndarray]]
    vessels: list[Segment]
    points: np.ndarray
    radii: np.ndarray
    index: cKDTree | None


class _Tracer:
    """Grows trees from start tubes, explaining the views away as it goes."""

    def __init__(self, views: Sequence[_ViewData], grid: VolumeGrid, settings: TubeSettings
                 ) -> None:
        self.views = views
        self.grid = grid
        self.settings = settings
        self.cos_turn = float(np.cos(np.radians(settings.max_turn_deg)))
        self.vessels: list[Segment] = []
        self._points = np.empty((0, 3))
        self._radii = np.empty(0)
        self._index: cKDTree | None = None

    def inside_volume(self, point: np.ndarray) -> bool:
        index = self.grid.lps_to_index(point[None])[0]
        return bool(np.all(index >= 0) and np.all(index <= np.array(self.grid.shape) - 1))

    def inside_traced(self, point: np.ndarray) -> bool:
        """Whether ``point`` lies inside an already traced vessel."""
        if self._index is None:
            return False
        near = self._index.query_ball_point(point, float(self._radii.max()))
        return bool(near) and bool(np.any(
            np.linalg.norm(self._points[near] - point, axis=1) < self._radii[near]))

    def acceptable(self, fit: TubeFit | None, heading: np.ndarray) -> bool:
        return (fit is not None and min(fit.support) >= self.settings.min_support
                and abs(float(fit.axis @ heading)) >= self.cos_turn
                and self.inside_volume(fit.centre))

    def follow(self, centre: np.ndarray, heading: np.ndarray, radius: float
               ) -> list[tuple[np.ndarray, float]]:
        """Points and radii from ``centre`` (excluded) along ``heading`` until the tube ends."""
        path: list[tuple[np.ndarray, float]] = []
        for _ in range(self.settings.max_steps):
            fit = fit_tube(self.views, centre + self.settings.step_mm * heading, heading, radius,
                           self.settings.straightness)
            if not self.acceptable(fit, heading):
                break
            # The radius may change by a fifth per step: a crossing vessel does not inflate it.
            radius = float(np.clip(fit.radius, 0.8 * radius, 1.25 * radius))
            path.append((fit.centre, radius))
            if self.inside_traced(fit.centre):
                break  # joined a traced vessel
            heading = fit.axis if fit.axis @ heading > 0 else -fit.axis
            centre = fit.centre
        return path

    def add(self, path: list[tuple[np.ndarray, float]], parent: Segment | None = None
            ) -> Segment:
        """A new vessel along ``path`` (a branch of ``parent``), explained away."""
        names = {v.name for v in self.vessels}
        number = len(self.vessels)
        while f"vessel{number}" in names:
            number += 1
        vessel = Segment(f"vessel{number}", np.array([p for p, _ in path]),
                         np.array([r for _, r in path]), parent.name if parent else None)
        return self.adopt(vessel)

    def adopt(self, vessel: Segment) -> Segment:
        """Take ``vessel`` into the tree: subtract its integrals from the views."""
        self.explain(vessel.points, vessel.radii)
        self.vessels.append(vessel)
        return vessel

    def explain(self, points: np.ndarray, radii: np.ndarray) -> None:
        """Subtract the chain ``points`` with ``radii`` from the views; mark it traced."""
        for view in self.views:
            view.subtract(render_chain(view.detector, points, radii))
        self._points = np.concatenate([self._points, points])
        self._radii = np.concatenate([self._radii, radii])
        self._index = cKDTree(self._points)

    def extend(self, index: int) -> None:
        """Follow vessel ``index`` on beyond its free ends (its last point; a root's first
        point too): a vessel the tracer stopped early, e.g. at a crossing it could not see
        through before the tree was refined."""
        vessel = self.vessels[index]
        ends = (True, False) if vessel.parent is None else (True,)
        for last in ends:
            points, radii = self._beyond(vessel, last)
            if not len(points):
                continue
            if last:
                joined = (np.vstack([vessel.points, points]), np.concatenate([vessel.radii, radii]))
            else:
                joined = (np.vstack([points[::-1], vessel.points]),
                          np.concatenate([radii[::-1], vessel.radii]))
            vessel = Segment(vessel.name, *joined, vessel.parent)
        self.vessels[index] = vessel

    def _beyond(self, vessel: Segment, last: bool) -> tuple[np.ndarray, np.ndarray]:
        """Points and radii the vessel can be followed beyond its last (or first) point,
        explained away; empty when it holds for fewer than ``min_branch_steps`` steps."""
        nothing = np.empty((0, 3)), np.empty(0)
        if len(vessel.points) < 2:
            return nothing
        tip, neighbour = (-1, -2) if last else (0, 1)
        tip_point, radius = vessel.points[tip], float(vessel.radii[tip])
        heading = tip_point - vessel.points[neighbour]
        heading = heading / max(float(np.linalg.norm(heading)), 1e-9)
        # Start one radius beyond the tip, so the first fit is not inside the vessel itself.
        path = self.follow(tip_point + radius * heading, heading, radius)
        if len(path) < self.settings.min_branch_steps:
            return nothing
        points, radii = np.array([p for p, _ in path]), np.array([r for _, r in path])
        self.explain(np.vstack([tip_point, points]), np.concatenate([[radius], radii]))
        return points, radii

    def grow(self, start: TubeFit) -> None:
        """Trace the start tube's vessel both ways, then branches of every vessel traced."""
        backward = self.follow(start.centre, -start.axis, start.radius)
        forward = self.follow(start.centre, start.axis, start.radius)
        root = self.add(backward[::-1] + [(start.centre, start.radius)] + forward)
        self.grow_branches([root])
        if len(root.points) == 1:
            self.vessels = folded(self.vessels, root.name)

    def unexplained(self) -> float:
        """Sum of absolute residuals over the views (mm * px)."""
        return float(sum(np.abs(view.residual).sum() for view in self.views))

    def state(self) -> _TracerState:
        """A copy of what the tracer holds, to put back with :meth:`restore`."""
        return _TracerState([view.saved() for view in self.views], list(self.vessels),
                            self._points, self._radii, self._index)

    def restore(self, state: _TracerState) -> None:
        """Put back a :meth:`state` (each state once: the views go on from its arrays)."""
        self.vessels, self._points, self._radii, self._index = (
            state.vessels, state.points, state.radii, state.index)
        for view, saved in zip(self.views, state.views):
            view.restore(saved)

    def trial(self, start: TubeFit) -> tuple[float, _TracerState]:
        """What would be left unexplained with a tree grown from ``start``, and the tracer's
        state with that tree (to :meth:`restore` if it is kept); the tracer is left as it
        was."""
        before = self.state()
        self.grow(start)
        grown = self.unexplained(), self.state()
        self.restore(before)
        return grown

    def grow_branches(self, queue: list[Segment]) -> None:
        """Branches of the vessels in ``queue``, then of those branches, and so on."""
        directions = _fibonacci_sphere(96)
        while queue:
            parent = queue.pop(0)
            for index, direction in self.branch_candidates(parent, directions):
                branch = self.branch(parent, index, direction)
                if branch is not None:
                    queue.append(self.add(branch, parent))

    def branch_candidates(self, vessel: Segment, directions: np.ndarray
                          ) -> list[tuple[int, np.ndarray]]:
        """(point index, direction) pairs where both residual views stay dark beyond the
        wall, darkest first."""
        probes = np.asarray(BRANCH_PROBES_MM)
        max_cos = np.cos(np.radians(BRANCH_MIN_ANGLE_DEG))
        pairs, samples = [], []
        for index in range(0, len(vessel.points), 2):
            point, radius = vessel.points[index], vessel.radii[index]
            axis = vessel.points[min(index + 1, len(vessel.points) - 1)] \
                - vessel.points[max(index - 1, 0)]
            axis = axis / max(np.linalg.norm(axis), 1e-9)
            across = directions[np.abs(directions @ axis) <= max_cos]
            pairs += [(index, direction) for direction in across]
            samples.append(point + (radius + probes)[None, :, None] * across[:, None, :])
        if not pairs:
            return []
        darkness = self.darkness(np.concatenate(samples))
        found = [(float(dark), index, direction) for dark, (index, direction)
                 in zip(darkness, pairs) if dark >= self.settings.branch_threshold_mm]
        found.sort(key=lambda item: -item[0])
        return [(index, direction) for _, index, direction in found]

    def darkness(self, samples: np.ndarray) -> np.ndarray:
        """``(M,)``: the darker view's smoothed residual, averaged over each row of probe
        points ``samples`` ``(M, probes, 3)`` (one projection per view for all of them)."""
        return np.min([view.sample_smoothed(samples.reshape(-1, 3))
                       .reshape(samples.shape[:2]).mean(axis=1) for view in self.views],
                      axis=0)

    def branch(self, parent: Segment, index: int, direction: np.ndarray
               ) -> list[tuple[np.ndarray, float]] | None:
        """A branch leaving ``parent`` at point ``index`` along ``direction``, joined to
        that point, or None when it does not hold for ``min_branch_steps`` steps."""
        start = parent.points[index] + (parent.radii[index] + BRANCH_START_MM) * direction
        if self.inside_traced(start):
            return None
        # The candidates were found before the branches taken since: one of those may have
        # explained this one away (on lca0 three in four tries; skipping them is cheap).
        probes = parent.points[index] + (parent.radii[index] + np.asarray(BRANCH_PROBES_MM)
                                         )[:, None] * direction
        if self.darkness(probes[None])[0] < self.settings.branch_threshold_mm:
            return None
        fit = fit_tube(self.views, start, direction, BRANCH_START_RADIUS_MM)
        if not self.acceptable(fit, direction):
            return None
        heading = fit.axis if fit.axis @ direction > 0 else -fit.axis
        path = self.follow(fit.centre, heading, fit.radius)
        if len(path) < self.settings.min_branch_steps:
            return None
        return [(parent.points[index], fit.radius), (fit.centre, fit.radius)] + path


def find_start_tubes(views: Sequence[_ViewData], grid: VolumeGrid, count: int,
                     workers: int = 1) -> list[TubeFit]:
    """Up to ``count`` start tubes, best fitting first: at the darkest points (in both views)
    of every other voxel centre, the direction out of 13 that fits best, kept when both
    supports lie in :data:`START_SUPPORT`, and at least :data:`START_SPACING_MM` apart.
    The points are fitted in up to ``workers`` processes."""
    centres = grid.voxel_centers()[::2, ::2, ::2].reshape(-1, 3)
    darkness = np.min([view.sample_smoothed(centres) for view in views], axis=0)
    directions = _fibonacci_sphere(26)
    directions = directions[directions[:, 2] >= 0]
    candidates = np.argsort(-darkness)[:START_CANDIDATES]

    def best_at(index: int) -> TubeFit | None:
        point = candidates[index]
        radius = max(0.5, float(darkness[point]) / 2.5)
        fitted = [fit_tube(views, centres[point], d, radius) for d in directions]
        fitted = [f for f in fitted if f is not None
                  and all(START_SUPPORT[0] <= s <= START_SUPPORT[1] for s in f.support)]
        return min(fitted, key=lambda f: f.misfit) if fitted else None

    fits = [fit for fit in forked_map(best_at, len(candidates), workers) if fit is not None]
    fits.sort(key=lambda f: f.misfit)
    starts: list[TubeFit] = []
    for fit in fits:
        if all(np.linalg.norm(fit.centre - s.centre) > START_SPACING_MM for s in starts):
            starts.append(fit)
    return starts[:count]


def trace_each(images: Sequence[np.ndarray], geometry: CaseGeometry, settings: TubeSettings
               ) -> Iterator[tuple[TubeFit, TracedTree]]:
    """Each start tube of the first round (best fitting first) and the tree grown from it in
    two line-integral views (mm), with what that tree leaves unexplained."""
    views = [_ViewData(DetectorRays(view), image)
             for view, image in zip(geometry.views, images)]
    tracer = _Tracer(views, geometry.volume, settings)
    starts = find_start_tubes(views, geometry.volume, settings.trees)
    for start in starts:
        unexplained, grown = tracer.trial(start)
        yield start, TracedTree(grown.vessels, unexplained, len(starts))


def trace_tree(images: Sequence[np.ndarray], geometry: CaseGeometry, settings: TubeSettings,
               progress: Progress = silent, workers: int = 1) -> TracedTree:
    """Up to ``max_trees`` trees in two line-integral views (mm), see the module docstring:
    in each round, start tubes are found in what the kept trees leave, a tree is grown from
    each, and the one leaving the least unexplained is kept; a later round's tree only when
    it explains at least ``min_tree_share`` of what was left. The start-tube fits and the
    trial trees run in up to ``workers`` processes (:func:`sdfcar.parallel.forked_map`):
    the tree is the same for any number."""
    views = [_ViewData(DetectorRays(view), image)
             for view, image in zip(geometry.views, images)]
    tracer = _Tracer(views, geometry.volume, settings)
    kept = tried = 0
    while kept < settings.max_trees:
        left = tracer.unexplained()
        starts = find_start_tubes(views, geometry.volume, settings.trees, workers)
        best: tuple[float, _TracerState] | None = None
        trials = forked_map(lambda index: tracer.trial(starts[index]), len(starts), workers)
        for done, grown in enumerate(trials, start=1):
            if best is None or grown[0] < best[0]:
                best = grown
            if not kept:
                progress(Step("tracing", done, len(starts), "tree", grown[0]))
        tried += len(starts)
        if best is None or (kept and left - best[0] < settings.min_tree_share * left):
            break
        tracer.restore(best[1])
        kept += 1
        if kept > 1:
            progress(Step("more trees", kept, settings.max_trees, "tree", best[0]))
    if not kept:
        return TracedTree([], float("nan"), 0)
    return TracedTree(tracer.vessels, tracer.unexplained(), tried, kept)


def extend_tree(images: Sequence[np.ndarray], geometry: CaseGeometry, settings: TubeSettings,
                vessels: Sequence[Segment]) -> list[Segment]:
    """``vessels`` grown in the views with them explained away: each followed on beyond its
    last point, then branches searched for along every vessel (and the branches found).
    Returns the grown vessels (same names, in order), then the new ones."""
    views = [_ViewData(DetectorRays(view), image)
             for view, image in zip(geometry.views, images)]
    tracer = _Tracer(views, geometry.volume, settings)
    for vessel in vessels:
        tracer.adopt(vessel)
    for index in range(len(vessels)):
        tracer.extend(index)
    tracer.grow_branches(list(tracer.vessels))
    return tracer.vessels
