"""Seeded synthetic coronary artery trees and their rasterisation on a :class:`VolumeGrid`.

A tree lies on a heart-like ellipsoid (patient LPS mm) whose long axis points from the base
to the apex (left, anterior, inferior). Points on it are addressed by ``theta`` (0 at the
base pole, 180 degrees at the apex) and ``phi`` around the long axis: 0 at the top of the
atrioventricular (AV) groove ring, where the anterior interventricular groove starts, +90 the
left ventricle's free wall, -90 the right ventricle's (acute margin), +-180 the crux. Each
vessel is a smooth spline through a few control points in ``(theta, phi)``, wiggled sideways
along the surface by a few sinusoids, projected back onto the surface and resampled every
<= 0.4 mm. A child starts on a sample of its parent's centerline, so the rasterised tree is
one connected piece.

Radii obey Murray's law at every bifurcation: along a segment
``r(s)^3 = r_end^3 + sum(r_child^3 for children still downstream) + lam * (L - s)``, where
``lam`` spreads the flow of unmodelled small side branches evenly over the tree and is chosen
so that the root radius is 1.85-2 mm; terminal radii are 0.6-0.7 mm. Finally the tree is
centred on the isocenter (the origin) and, when it would not keep a 5 mm margin inside the
default 102.4 mm field, shrunk slightly (a few per cent, for some RCA seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from sdfcar.errors import bad_input
from sdfcar.geometry import VolumeGrid
from sdfcar.geometry.tubes import Segment, rasterize_segments

KINDS = ("lca", "rca")
STEP_MM = 0.4  # centerline sample spacing
DENSE_MM = 0.05  # spacing of the dense curve that is resampled to STEP_MM
FIT_MM = 43.0  # centerlines stay within this of the origin (+ radius <= 2: 45 mm)


@dataclass
class CoronaryTree:
    """A coronary tree of kind ``"lca"`` or ``"rca"``; parents come before their children."""

    kind: str
    segments: list[Segment]

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """All centerline samples ``(points (M, 3), radii (M,))``."""
        points = np.concatenate([s.points for s in self.segments])
        radii = np.concatenate([s.radii for s in self.segments])
        return points, radii


@dataclass
class _Plan:
    """Layout of one vessel: control points in degrees, relative to its branch point
    (absolute for a root), and where along the parent (fraction of its samples) it starts."""

    name: str
    parent: str | None
    control_deg: list[tuple[float, float]]
    at: float = 1.0


@dataclass(frozen=True)
class _Heart:
    """Ellipsoid centred on the origin; the columns of ``axes`` are unit vectors to the top of
    the AV groove ring (phi = 0), the left ventricle's free wall (phi = 90) and the apex."""

    axes: np.ndarray  # (3, 3)
    semi: np.ndarray  # (3,) mm

    @classmethod
    def random(cls, rng: np.random.Generator) -> _Heart:
        """Apex 35-55 deg left of anterior and 20-35 deg below horizontal; random size."""
        az, el = np.radians(rng.uniform(35.0, 55.0)), np.radians(rng.uniform(20.0, 35.0))
        apex = np.array([np.cos(el) * np.cos(az), -np.cos(el) * np.sin(az), -np.sin(el)])
        top = np.array([0.0, 0.0, 1.0]) + np.sin(el) * apex  # superior, orthogonal to apex
        top /= np.linalg.norm(top)
        axes = np.stack([top, np.cross(top, apex), apex], axis=1)
        semi = np.array([rng.uniform(40, 45), rng.uniform(36, 40), rng.uniform(52, 57)])
        return cls(axes, semi)

    def point(self, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Surface points for angles in radians."""
        local = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                          -np.cos(theta)], axis=-1)
        return (local * self.semi) @ self.axes.T

    def angles(self, point: np.ndarray) -> np.ndarray:
        """``(theta, phi)`` in radians of a surface point."""
        u = (point @ self.axes) / self.semi
        return np.array([np.arccos(np.clip(-u[2], -1.0, 1.0)), np.arctan2(u[1], u[0])])

    def project(self, points: np.ndarray) -> np.ndarray:
        """Radial projection of points ``(N, 3)`` onto the surface."""
        local = points @ self.axes
        scale = np.linalg.norm(local / self.semi, axis=1, keepdims=True)
        return (local / scale) @ self.axes.T

    def normal(self, points: np.ndarray) -> np.ndarray:
        """Outward unit normals at surface points ``(N, 3)``."""
        n = ((points @ self.axes) / self.semi**2) @ self.axes.T
        return n / np.linalg.norm(n, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- layouts


def _bent(name: str, parent: str, dtheta: float, dphi: float, bend: float = 0.5,
          at: float = 1.0) -> _Plan:
    """A child reaching ``(dtheta, dphi)`` from its branch point, ``bend`` of ``dphi`` midway."""
    return _Plan(name, parent, [(0.5 * dtheta, bend * dphi), (dtheta, dphi)], at)


def _branches(rng: np.random.Generator, prefix: str, parent: str, span: tuple[float, float],
              dtheta: tuple[float, float], dphi: tuple[float, float]) -> list[_Plan]:
    """2-3 side branches spread over ``span`` (fraction of the parent's length)."""
    count = int(rng.integers(2, 4))
    edges = np.linspace(*span, count + 1)
    return [_bent(f"{prefix}{n + 1}", parent, rng.uniform(*dtheta), rng.uniform(*dphi),
                  rng.uniform(0.3, 0.6), rng.uniform(edges[n], edges[n + 1] - 0.03))
            for n in range(count)]


def _lca(rng: np.random.Generator, groove: float) -> list[_Plan]:
    """Left main -> LAD (anterior groove) with diagonals, LCX (AV groove) with marginals."""
    septum = rng.uniform(-5.0, 10.0)
    return [
        _Plan("LM", None, [(groove - rng.uniform(8, 11), septum - rng.uniform(8, 15)),
                           (groove, septum)]),
        _bent("LAD", "LM", rng.uniform(160, 168) - groove, rng.uniform(10, 35), bend=0.3),
        _bent("LCX", "LM", rng.uniform(2, 8), rng.uniform(85, 115)),
        *_branches(rng, "D", "LAD", (0.12, 0.6), (25.0, 40.0), (30.0, 45.0)),
        *_branches(rng, "OM", "LCX", (0.3, 0.9), (45.0, 62.0), (-5.0, 20.0)),
    ]


def _rca(rng: np.random.Generator, groove: float) -> list[_Plan]:
    """RCA in the right AV groove with acute marginals, PDA and posterolateral at the crux."""
    ostium, crux = rng.uniform(-35.0, -15.0), rng.uniform(-185.0, -165.0)
    return [
        _Plan("RCA", None, [(groove - rng.uniform(6, 10), ostium), (groove, ostium - 25.0),
                            (groove + rng.uniform(-3, 3), 0.5 * (ostium + crux)),
                            (groove + rng.uniform(0, 6), crux)]),
        *_branches(rng, "AM", "RCA", (0.3, 0.8), (35.0, 55.0), (-10.0, 10.0)),
        _bent("PDA", "RCA", rng.uniform(35, 55), rng.uniform(-10, 5)),
        _bent("PL", "RCA", rng.uniform(5, 20), -rng.uniform(15, 30)),
    ]


# ----------------------------------------------------------------------------- geometry


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    """Resample a polyline at uniform arc length, at most ``step`` apart."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    s = np.linspace(0.0, arc[-1], int(np.ceil(arc[-1] / step)) + 1)
    return np.stack([np.interp(s, arc, points[:, d]) for d in range(3)], axis=1)


def _wiggle(arc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sideways offset (mm) along arc length: 2-3 sinusoids faded in over ~5 mm."""
    offset = np.zeros_like(arc)
    for _ in range(int(rng.integers(2, 4))):
        amp, wavelength, phase = rng.uniform(0.5, 1.5), rng.uniform(20, 45), rng.uniform(0, 6.3)
        offset += amp * np.sin(2 * np.pi * arc / wavelength + phase)
    return offset * (1.0 - np.exp(-arc / 5.0))


def _curve(heart: _Heart, control_deg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth wiggly surface curve through control points ``(K, 2)`` (degrees)."""
    control = np.radians(control_deg)
    knots = heart.point(control[:, 0], control[:, 1])
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(knots, axis=0), axis=1))])
    spline = CubicSpline(chord / chord[-1], control, bc_type="natural")
    angles = spline(np.linspace(0.0, 1.0, int(chord[-1] / DENSE_MM) + 2))
    dense = _resample(heart.point(angles[:, 0], angles[:, 1]), DENSE_MM)
    tangent = np.gradient(dense, axis=0)
    side = np.cross(heart.normal(dense), tangent)
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    arc = DENSE_MM * np.arange(len(dense))
    return _resample(heart.project(dense + _wiggle(arc, rng)[:, None] * side), STEP_MM)


def _grow(heart: _Heart, plan: _Plan, segments: list[Segment], rng: np.random.Generator
          ) -> tuple[Segment, int]:
    """Centerline of one vessel (radii still empty) and its start index on the parent."""
    control = np.asarray(plan.control_deg, float)
    if plan.parent is None:
        return Segment(plan.name, _curve(heart, control, rng), np.empty(0), None), 0
    parent = next(s for s in segments if s.name == plan.parent)
    start = round(plan.at * (len(parent.points) - 1))
    origin = np.degrees(heart.angles(parent.points[start]))
    points = _curve(heart, origin + np.vstack([np.zeros(2), control]), rng)
    points[0] = parent.points[start]  # exactly on the parent's centerline
    return Segment(plan.name, points, np.empty(0), plan.parent), start


def _radii(segments: list[Segment], starts: list[int], rng: np.random.Generator) -> None:
    """Fill in Murray-consistent tapering radii (children must follow their parents)."""
    index = {s.name: n for n, s in enumerate(segments)}
    children: list[list[int]] = [[] for _ in segments]
    for n, s in enumerate(segments[1:], 1):
        children[index[s.parent]].append(n)
    ends = [0.0 if any(starts[c] == len(s.points) - 1 for c in children[n])
            else rng.uniform(0.6, 0.7) ** 3 for n, s in enumerate(segments)]
    lengths = [STEP_MM * (len(s.points) - 1) for s in segments]
    lam = (rng.uniform(1.85, 2.0) ** 3 - sum(ends)) / sum(lengths)
    for n in reversed(range(len(segments))):
        sample = np.arange(len(segments[n].points))
        cubes = ends[n] + lam * (lengths[n] - STEP_MM * sample)
        for c in children[n]:
            cubes = cubes + np.where(sample <= starts[c], segments[c].radii[0] ** 3, 0.0)
        segments[n].radii = np.cbrt(cubes)


def _fit(segments: list[Segment]) -> None:
    """Centre the centerlines' bounding box on the origin; shrink a tree that would reach
    further than ``FIT_MM`` from it (radii are kept)."""
    points = np.concatenate([s.points for s in segments])
    centre = (points.min(axis=0) + points.max(axis=0)) / 2.0
    scale = min(1.0, FIT_MM / np.max(np.abs(points - centre)))
    for s in segments:
        s.points = (s.points - centre) * scale


def generate_tree(kind: str, seed: int) -> CoronaryTree:
    """A reproducible LCA- or RCA-like tree for ``(kind, seed)``, centred on the origin."""
    if kind not in KINDS:
        raise bad_input("kind", f"expected 'lca' or 'rca', got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise bad_input("seed", f"expected a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), KINDS.index(kind)])
    heart = _Heart.random(rng)
    plans = (_lca if kind == "lca" else _rca)(rng, rng.uniform(52.0, 62.0))
    segments: list[Segment] = []
    starts: list[int] = []
    for plan in plans:
        segment, start = _grow(heart, plan, segments, rng)
        segments.append(segment)
        starts.append(start)
    _radii(segments, starts, rng)
    _fit(segments)
    return CoronaryTree(kind, segments)


# ----------------------------------------------------------------------------- rasterisation


def rasterize(tree: CoronaryTree, grid: VolumeGrid, supersample: int = 1) -> np.ndarray:
    """Occupancy in [0, 1] (float32, ``grid.shape``, index order i, j, k): the fraction of
    ``supersample^3`` sub-points per voxel that lie inside a vessel of ``tree``."""
    return rasterize_segments(tree.segments, grid, supersample)


def label_volume(kind: str, seed: int, grid: VolumeGrid) -> np.ndarray:
    """Binary uint8 label of the ``(kind, seed)`` phantom: voxels whose centre is inside."""
    return (rasterize(generate_tree(kind, seed), grid) >= 0.5).astype(np.uint8)
