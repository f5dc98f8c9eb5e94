"""A second, independent phantom generator: Murray bifurcations with elliptical lumens.

Unlike :mod:`sdfcar.synthetic.phantom` (named vessels laid on a heart-shaped surface), a
tree here grows by recursive bifurcation in free space. A root of radius 1.7-2.0 mm splits
into two children with ``r_p^3 = r_1^3 + r_2^3`` (Murray's law; asymmetry ``r_2 / r_1`` in
0.45-0.95) at Murray's optimal angles (Zamir 1976:
``cos theta_1 = (r_p^4 + r_1^4 - r_2^4) / (2 r_p^2 r_1^2)``), in a randomly rolled plane.
A child thinner than 0.55 mm, or one at depth 5, is terminal: its radius tapers linearly to
0.28-0.36 mm at its tip. Each vessel is a straight axis bent sideways by sums of sinusoids
of arc length in two directions (amplitude 0.3-1.2 mm, wavelength 6-20 mm, faded in over
the first 4 mm). Lumens are ellipses of aspect ratio 1.3-1.6 (the same area as the circle of
the equivalent radius ``r``: semi-axes ``r sqrt(q)`` and ``r / sqrt(q)``) whose major axis
turns slowly along the vessel. One stenosis (a Gaussian dip of 50-70 % of the radius,
1.5-2.5 mm wide) sits on the root. A ball of the parent's radius fills each bifurcation.
The tree is centred on the origin and shrunk, when needed, to lie within 43 mm of it (the
default 102.4 mm field), like :mod:`sdfcar.synthetic.phantom`'s trees.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from sdfcar.centerlines import to_json
from sdfcar.errors import bad_input
from sdfcar.geometry import VolumeGrid

STEP_MM = 0.1  # centreline sample spacing
TERMINAL_RADIUS_MM = 0.55  # thinner children do not branch again
MAX_DEPTH = 5
FIT_MM = 43.0
CHUNK = 40  # samples voxelised together (4 mm of vessel)
CORNERS = np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)], dtype=float)


@dataclass
class Lumen:
    """One vessel: samples every :data:`STEP_MM`, equivalent radii, unit tangents, the
    major-axis direction of each cross-section and the aspect ratio ``q`` (major / minor)."""

    name: str
    parent: str | None
    points: np.ndarray  # (N, 3) LPS mm
    radii: np.ndarray  # (N,) mm
    tangents: np.ndarray  # (N, 3)
    majors: np.ndarray  # (N, 3), orthogonal to the tangents
    aspect: float

    def semi_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Major and minor semi-axes (mm) per sample."""
        root = np.sqrt(self.aspect)
        return self.radii * root, self.radii / root


@dataclass
class LumenTree:
    """A tree of :class:`Lumen` (parents first) with its stenosis ``(vessel, sample index,
    depth fraction)``."""

    seed: int
    vessels: list[Lumen]
    stenosis: tuple[str, int, float]

    def centerlines(self, every: int = 4) -> dict:
        """True centrelines with equivalent radii in the :mod:`sdfcar.centerlines` JSON
        format (every ``every``-th sample and the last), plus each vessel's ``aspect``."""
        data = to_json([(v.name, v.parent, v.points[_kept(len(v.points), every)],
                         v.radii[_kept(len(v.points), every)]) for v in self.vessels])
        for entry, vessel in zip(data["vessels"], self.vessels):
            entry["aspect"] = round(vessel.aspect, 4)
        return data

    def occupancy(self, grid: VolumeGrid, supersample: int = 1) -> np.ndarray:
        """Fraction (float32, ``grid.shape``) of ``supersample^3`` sub-points per voxel that
        lie inside a lumen or a bifurcation ball."""
        if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) \
                or supersample < 1:
            raise bad_input("supersample", f"expected an integer >= 1, got {supersample!r}")
        s = int(supersample)
        fine = grid.refined(s)
        inside = np.zeros(fine.shape, dtype=bool)
        for vessel in self.vessels:
            _paint_lumen(vessel, fine, inside)
        by_name = {v.name: v for v in self.vessels}
        for vessel in self.vessels[1:]:
            parent = by_name[vessel.parent]
            _paint_ball(parent.points[-1], parent.radii[-1], fine, inside)
        n = grid.shape
        return inside.reshape(n[0], s, n[1], s, n[2], s).mean(axis=(1, 3, 5), dtype=np.float32)

    def label(self, grid: VolumeGrid) -> np.ndarray:
        """Binary uint8 label: voxels whose centre is inside."""
        return (self.occupancy(grid) >= 0.5).astype(np.uint8)


def _kept(count: int, every: int) -> np.ndarray:
    return np.unique(np.append(np.arange(0, count, every), count - 1))


# ----------------------------------------------------------------------------- growth


def _perpendicular(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector orthogonal to ``direction``."""
    while True:
        v = np.cross(direction, rng.normal(size=3))
        if np.linalg.norm(v) > 1e-3:
            return v / np.linalg.norm(v)


def _axis(start: np.ndarray, direction: np.ndarray, length: float,
          rng: np.random.Generator) -> np.ndarray:
    """Samples of a straight axis bent by sums of sinusoids in two sideways directions."""
    s = np.arange(0.0, length + STEP_MM / 2, STEP_MM)
    side = _perpendicular(direction, rng)
    sides = (side, np.cross(direction, side))
    fade = np.sin(0.5 * np.pi * np.minimum(s / 4.0, 1.0)) ** 2
    points = start + s[:, None] * direction
    for unit in sides:
        offset = sum(rng.uniform(0.3, 1.2) * np.sin(2 * np.pi * s / rng.uniform(6.0, 20.0)
                                                     + rng.uniform(0.0, 2 * np.pi))
                     for _ in range(int(rng.integers(2, 4))))
        points = points + (fade * offset)[:, None] * unit
    return points


def _frames(points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangents and major-axis directions: a parallel-transported normal turned by a
    slowly varying angle (twist up to 0.05 rad/mm)."""
    tangents = np.gradient(points, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    normals = np.empty_like(points)
    normal = _perpendicular(tangents[0], rng)
    for n, t in enumerate(tangents):
        normal = normal - (normal @ t) * t
        normal /= np.linalg.norm(normal)
        normals[n] = normal
    angle = rng.uniform(0, np.pi) + rng.uniform(-0.05, 0.05) * STEP_MM * np.arange(len(points))
    majors = (np.cos(angle)[:, None] * normals
              + np.sin(angle)[:, None] * np.cross(tangents, normals))
    return tangents, majors


def _rotated(direction: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """``direction`` turned by ``angle`` about the unit ``axis`` (Rodrigues)."""
    return (direction * np.cos(angle) + np.cross(axis, direction) * np.sin(angle)
            + axis * (axis @ direction) * (1 - np.cos(angle)))


def _murray_children(radius: float, rng: np.random.Generator
                     ) -> list[tuple[float, float]]:
    """Radii and branching angles (rad) of the two children of a parent of ``radius``."""
    ratio = rng.uniform(0.45, 0.95)
    r1 = radius / np.cbrt(1.0 + ratio**3)
    r2 = ratio * r1
    cos1 = (radius**4 + r1**4 - r2**4) / (2 * radius**2 * r1**2)
    cos2 = (radius**4 + r2**4 - r1**4) / (2 * radius**2 * r2**2)
    return [(r1, float(np.arccos(np.clip(cos1, -1, 1)))),
            (r2, -float(np.arccos(np.clip(cos2, -1, 1))))]


def _vessel(name: str, parent: str | None, start: np.ndarray, direction: np.ndarray,
            radius: float, terminal: bool, rng: np.random.Generator) -> Lumen:
    """One vessel from ``start`` along ``direction``; a terminal one tapers to its tip."""
    length = (rng.uniform(15.0, 25.0) if terminal else rng.uniform(6.0, 10.0) * radius + 4.0)
    points = _axis(start, direction, length, rng)
    tip = rng.uniform(0.28, 0.36) if terminal else radius
    radii = np.linspace(radius, min(tip, radius), len(points))
    tangents, majors = _frames(points, rng)
    return Lumen(name, parent, points, radii, tangents, majors, rng.uniform(1.3, 1.6))


def _stenose(vessel: Lumen, rng: np.random.Generator) -> tuple[str, int, float]:
    """A Gaussian dip of 50-70 % of the radius in the middle part of ``vessel``."""
    s = STEP_MM * np.arange(len(vessel.points))
    centre, width, depth = rng.uniform(0.4, 0.7) * s[-1], rng.uniform(1.5, 2.5), \
        rng.uniform(0.5, 0.7)
    vessel.radii = vessel.radii * (1.0 - depth * np.exp(-((s - centre) / width) ** 2))
    return vessel.name, int(round(centre / STEP_MM)), depth


def _fit(vessels: list[Lumen]) -> None:
    """Centre the samples' bounding box on the origin; shrink to within :data:`FIT_MM`."""
    points = np.concatenate([v.points for v in vessels])
    centre = (points.min(axis=0) + points.max(axis=0)) / 2.0
    scale = min(1.0, FIT_MM / np.max(np.abs(points - centre)))
    for v in vessels:
        v.points = (v.points - centre) * scale


def generate_lumens(seed: int) -> LumenTree:
    """The reproducible tree of ``seed``, centred on the origin."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise bad_input("seed", f"expected a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), 0x1A7E5])
    direction = rng.normal(size=3)
    root = _vessel("T", None, np.zeros(3), direction / np.linalg.norm(direction),
                   rng.uniform(1.7, 2.0), False, rng)
    vessels = [root]
    stenosis = _stenose(root, rng)
    todo = deque([(root, 1)])
    while todo:
        parent, depth = todo.popleft()
        roll = _perpendicular(parent.tangents[-1], rng)
        for suffix, (radius, angle) in zip("ab", _murray_children(parent.radii[-1], rng)):
            terminal = radius < TERMINAL_RADIUS_MM or depth >= MAX_DEPTH
            heading = _rotated(parent.tangents[-1], roll, angle)
            child = _vessel(parent.name + suffix, parent.name, parent.points[-1], heading,
                            radius, terminal, rng)
            vessels.append(child)
            if not terminal:
                todo.append((child, depth + 1))
    _fit(vessels)
    return LumenTree(int(seed), vessels, stenosis)


# ----------------------------------------------------------------------------- voxelisation


def _box(grid: VolumeGrid, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, ...] | None:
    """Index box of the grid voxels whose centres may lie in the LPS box ``[lo, hi]``."""
    corners = grid.lps_to_index(lo + CORNERS * (hi - lo))
    first = np.maximum(np.ceil(corners.min(axis=0)), 0).astype(int)
    last = np.minimum(np.floor(corners.max(axis=0)) + 1, grid.shape).astype(int)
    if np.any(last <= first):
        return None
    return tuple(slice(a, b) for a, b in zip(first, last))


def _centres(grid: VolumeGrid, box: tuple[slice, ...]) -> np.ndarray:
    """LPS centres of the voxels of ``box``, shape ``box shape + (3,)``."""
    index = np.stack(np.meshgrid(*(np.arange(s.start, s.stop, dtype=float) for s in box),
                                 indexing="ij"), axis=-1)
    return index @ grid.index_to_lps.T + grid.origin_mm


def _paint_lumen(vessel: Lumen, grid: VolumeGrid, inside: np.ndarray) -> None:
    """Mark voxel centres inside the swept ellipses of ``vessel`` (tested against the
    cross-section of the nearest sample), a few millimetres of vessel at a time."""
    major, minor = vessel.semi_axes()
    for start in range(0, len(vessel.points), CHUNK):
        part = slice(max(start - 1, 0), start + CHUNK + 1)
        points = vessel.points[part]
        reach = float(major[part].max()) + STEP_MM
        box = _box(grid, points.min(axis=0) - reach, points.max(axis=0) + reach)
        if box is None:
            continue
        centres = _centres(grid, box)
        distance, nearest = cKDTree(points).query(centres, distance_upper_bound=reach)
        near = np.isfinite(distance)
        k = nearest[near]
        rel = centres[near] - points[k]
        along = np.einsum("ij,ij->i", rel, vessel.tangents[part][k])
        u = np.einsum("ij,ij->i", rel, vessel.majors[part][k])
        v = np.einsum("ij,ij->i", rel, np.cross(vessel.tangents[part][k],
                                                vessel.majors[part][k]))
        hit = (np.abs(along) <= STEP_MM) & ((u / major[part][k]) ** 2
                                            + (v / minor[part][k]) ** 2 <= 1.0)
        block = np.zeros(near.shape, dtype=bool)
        block[near] = hit
        inside[box] |= block


def _paint_ball(centre: np.ndarray, radius: float, grid: VolumeGrid, inside: np.ndarray
                ) -> None:
    """Mark voxel centres within ``radius`` of ``centre``."""
    box = _box(grid, centre - radius, centre + radius)
    if box is not None:
        inside[box] |= np.sum((_centres(grid, box) - centre) ** 2, axis=-1) <= radius**2
