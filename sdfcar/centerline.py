"""Two-view centreline triangulation: an initial vessel tree for the SDF field.

Every centreline pixel of one view is lifted to 3D by choosing a depth along its ray. The
candidate depths are where the ray's epipolar line crosses the other view's centreline;
a min-sum dynamic programme over a spanning tree of the centreline pixels picks one
candidate per pixel so that neighbours stay at similar depths and the radii measured in
both views agree. Pixels without a trustworthy candidate take the depth of their
neighbours. The result is a set of 3D centre points with radii, from which
:func:`tube_sdf` builds a signed distance field.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from .geometry import ViewGeometry, VolumeGrid

#: Maximum distance (px) between a reprojected ray sample and the other view's centreline.
MATCH_TOLERANCE_PX = 1.5
#: Ray sampling step (mm).
RAY_STEP_MM = 0.1
MAX_CANDIDATES = 64
#: Cost of leaving a pixel without a 3D point, and of a depth jump between neighbours.
NO_MATCH_COST = 1.5
JUMP_COST = 6.0
RADIUS_WEIGHT = 2.0


@dataclass
class Centreline2D:
    """Centreline pixels of one view with their vessel half-width (mm on the detector)."""

    pixels: np.ndarray  # (P, 2) row, col
    half_width_mm: np.ndarray  # (P,)
    distance_px: np.ndarray  # (rows, cols) distance to the nearest centreline pixel
    nearest: np.ndarray  # (2, rows, cols) indices of that pixel


def centreline_2d(mask: np.ndarray, spacing_mm: float) -> Centreline2D:
    """Skeleton of a silhouette and the half-width of the vessel at each skeleton pixel."""
    skeleton = skeletonize(mask)
    inside = ndimage.distance_transform_edt(mask)
    distance, nearest = ndimage.distance_transform_edt(~skeleton, return_indices=True)
    pixels = np.argwhere(skeleton)
    half = np.maximum(inside[skeleton] - 0.5, 0.5) * spacing_mm
    return Centreline2D(pixels, half, distance, nearest)


@dataclass
class Centreline3D:
    """Triangulated centre points, their radii (mm) and the edges joining them."""

    points: np.ndarray  # (N, 3) LPS mm
    radii: np.ndarray  # (N,)
    edges: np.ndarray  # (E, 2) indices into points


def triangulate(views: tuple[ViewGeometry, ViewGeometry],
                centrelines: tuple[Centreline2D, Centreline2D], grid: VolumeGrid,
                reference: int = 0) -> Centreline3D:
    """Lift the centreline of view ``reference`` to 3D using the other view."""
    view, other = views[reference], views[1 - reference]
    line, other_line = centrelines[reference], centrelines[1 - reference]
    depths, costs, radii = _candidates(view, other, line, other_line, grid)
    parents, order = _spanning_forest(line.pixels)
    choice = _tree_dp(depths, costs, parents, order, line.pixels)
    chosen_depth = np.array([depths[i][c] if c >= 0 else np.nan for i, c in enumerate(choice)])
    chosen_radius = np.array([radii[i][c] if c >= 0 else np.nan for i, c in enumerate(choice)])
    chosen_depth, chosen_radius = _fill_gaps(chosen_depth, chosen_radius, parents)
    keep = np.isfinite(chosen_depth)
    directions = _ray_directions(view, line.pixels)
    points = view.source + chosen_depth[:, None] * directions
    index = -np.ones(len(points), dtype=np.int64)
    index[keep] = np.arange(int(keep.sum()))
    edges = np.array([(index[c], index[p]) for c, p in enumerate(parents)
                      if p >= 0 and keep[c] and keep[p]], dtype=np.int64).reshape(-1, 2)
    return Centreline3D(points[keep], chosen_radius[keep], edges)


def _ray_directions(view: ViewGeometry, pixels: np.ndarray) -> np.ndarray:
    centres = view.pixel_centers(pixels[:, 0], pixels[:, 1])
    centres = centres[np.arange(len(pixels)), np.arange(len(pixels))]
    directions = centres - view.source
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _depth_range(view: ViewGeometry, grid: VolumeGrid) -> tuple[float, float]:
    corners = grid.affine @ np.array([[i, j, k, 1.0] for i in (0, grid.shape[0] - 1)
                                      for j in (0, grid.shape[1] - 1)
                                      for k in (0, grid.shape[2] - 1)]).T
    distances = np.linalg.norm(corners[:3].T - view.source, axis=1)
    return float(distances.min()), float(distances.max())


def _candidates(view: ViewGeometry, other: ViewGeometry, line: Centreline2D,
                other_line: Centreline2D, grid: VolumeGrid):
    """Per pixel: candidate depths (mm from the source), unary costs and radii."""
    near, far = _depth_range(view, grid)
    steps = np.arange(near, far, RAY_STEP_MM)
    directions = _ray_directions(view, line.pixels)
    sid, other_sid = view.source_to_detector_mm, other.source_to_detector_mm
    rows, cols = other_line.distance_px.shape
    depths, costs, radii = [], [], []
    for start in range(0, len(directions), 256):
        block = directions[start:start + 256]
        samples = view.source + steps[None, :, None] * block[:, None, :]  # B,S,3
        projected = other.project_points(samples)
        r = np.clip(np.rint(projected[..., 0]).astype(int), 0, rows - 1)
        c = np.clip(np.rint(projected[..., 1]).astype(int), 0, cols - 1)
        outside = ((projected[..., 0] < 0) | (projected[..., 0] > rows - 1)
                   | (projected[..., 1] < 0) | (projected[..., 1] > cols - 1))
        distance = np.where(outside, np.inf, other_line.distance_px[r, c])
        minima = ((distance <= MATCH_TOLERANCE_PX)
                  & (distance <= np.roll(distance, 1, axis=1))
                  & (distance < np.roll(distance, -1, axis=1)))
        for b in range(len(block)):
            pixel = start + b
            found = np.flatnonzero(minima[b])
            radius_here = line.half_width_mm[pixel] * steps[found] / sid
            q = other_line.nearest[:, r[b, found], c[b, found]]
            lookup = _pixel_lookup(other_line)
            other_half = other_line.half_width_mm[lookup[q[0], q[1]]]
            other_radius = other_half * np.linalg.norm(samples[b, found] - other.source,
                                                       axis=1) / other_sid
            mismatch = np.abs(radius_here - other_radius) / np.maximum(
                np.maximum(radius_here, other_radius), 0.3)
            cost = distance[b, found] / MATCH_TOLERANCE_PX + RADIUS_WEIGHT * mismatch
            best = np.argsort(cost)[:MAX_CANDIDATES]
            depths.append(steps[found][best])
            costs.append(cost[best])
            radii.append(0.5 * (radius_here + other_radius)[best])
    return depths, costs, radii


def _pixel_lookup(line: Centreline2D) -> np.ndarray:
    if not hasattr(line, "_lookup"):
        lookup = -np.ones(line.distance_px.shape, dtype=np.int64)
        lookup[line.pixels[:, 0], line.pixels[:, 1]] = np.arange(len(line.pixels))
        line._lookup = lookup
    return line._lookup


def _spanning_forest(pixels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """BFS spanning forest of 8-connected pixels: parent per pixel (-1 at roots), order."""
    lookup = {tuple(p): i for i, p in enumerate(pixels)}
    parents = -np.ones(len(pixels), dtype=np.int64)
    seen = np.zeros(len(pixels), dtype=bool)
    order: list[int] = []
    offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
    for root in range(len(pixels)):
        if seen[root]:
            continue
        seen[root] = True
        queue = deque([root])
        while queue:
            node = queue.popleft()
            order.append(node)
            r, c = pixels[node]
            for dr, dc in offsets:
                neighbour = lookup.get((r + dr, c + dc))
                if neighbour is not None and not seen[neighbour]:
                    seen[neighbour] = True
                    parents[neighbour] = node
                    queue.append(neighbour)
    return parents, order


def _tree_dp(depths, costs, parents, order, pixels) -> np.ndarray:
    """Min-sum over the forest; state ``K`` (last) of each node means "no 3D point"."""
    count = len(order)
    unary = [np.append(c, NO_MATCH_COST) for c in costs]
    messages = [np.zeros(len(u)) for u in unary]  # summed child messages per node state
    best_child_state: list[np.ndarray | None] = [None] * count
    for node in reversed(order):
        parent = parents[node]
        if parent < 0:
            continue
        total = unary[node] + messages[node]  # child states
        pair = _pair_cost(depths[parent], depths[node],
                          float(np.linalg.norm(pixels[node] - pixels[parent])))
        candidates = total[None, :] + pair  # parent states x child states
        best_child_state[node] = np.argmin(candidates, axis=1)
        messages[parent] = messages[parent] + candidates.min(axis=1)
    choice = -np.ones(count, dtype=np.int64)
    state = np.zeros(count, dtype=np.int64)
    for node in order:
        parent = parents[node]
        if parent < 0:
            state[node] = int(np.argmin(unary[node] + messages[node]))
        else:
            state[node] = best_child_state[node][state[parent]]
        choice[node] = state[node] if state[node] < len(depths[node]) else -1
    return choice


def _pair_cost(parent_depths: np.ndarray, child_depths: np.ndarray, step_px: float
               ) -> np.ndarray:
    """(parent states + 1) x (child states + 1) cost; the last state is "no point"."""
    jump = np.abs(parent_depths[:, None] - child_depths[None, :]) / (3.0 * step_px * 0.25)
    matched = np.minimum(jump, JUMP_COST)
    out = np.full((len(parent_depths) + 1, len(child_depths) + 1), 0.5)
    out[:-1, :-1] = matched
    out[-1, -1] = 0.0
    return out


def _fill_gaps(depth: np.ndarray, radius: np.ndarray, parents: np.ndarray,
               sweeps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Give unmatched pixels the mean depth/radius of their matched tree neighbours."""
    known = np.isfinite(depth)
    depth, radius = depth.copy(), radius.copy()
    child = np.flatnonzero(parents >= 0)
    edges = np.stack([child, parents[child]], axis=1)
    for _ in range(sweeps):
        missing = ~np.isfinite(depth)
        if not missing.any():
            break
        total = np.zeros(len(depth))
        total_r = np.zeros(len(depth))
        weight = np.zeros(len(depth))
        for a, b in ((edges[:, 0], edges[:, 1]), (edges[:, 1], edges[:, 0])):
            ok = np.isfinite(depth[b])
            np.add.at(total, a[ok], depth[b[ok]])
            np.add.at(total_r, a[ok], radius[b[ok]])
            np.add.at(weight, a[ok], 1.0)
        fill = missing & (weight > 0)
        if not fill.any():
            break
        depth[fill] = total[fill] / weight[fill]
        radius[fill] = total_r[fill] / weight[fill]
    del known
    return depth, radius


def tube_sdf(centreline: Centreline3D, grid: VolumeGrid, points: np.ndarray | None = None,
             neighbours: int = 8) -> np.ndarray:
    """Signed distance (mm) of the union of spheres along the centreline, densified so
    that consecutive centres are at most 0.2 mm apart. ``points`` default: all voxels."""
    centres, radii = _densify(centreline, 0.2)
    if points is None:
        points = grid.voxel_centers().reshape(-1, 3)
    if len(centres) == 0:
        return np.full(len(points), np.inf, dtype=np.float32)
    tree = cKDTree(centres)
    k = min(neighbours, len(centres))
    distance, index = tree.query(points, k=k)
    distance = distance.reshape(len(points), k)
    index = index.reshape(len(points), k)
    return (distance - radii[index]).min(axis=1).astype(np.float32)


def _densify(centreline: Centreline3D, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    points, radii = [centreline.points], [centreline.radii]
    for a, b in centreline.edges:
        length = np.linalg.norm(centreline.points[a] - centreline.points[b])
        pieces = int(np.ceil(length / step_mm))
        if pieces > 1:
            t = np.linspace(0.0, 1.0, pieces + 1)[1:-1, None]
            points.append(centreline.points[a] * (1 - t) + centreline.points[b] * t)
            radii.append(centreline.radii[a] * (1 - t[:, 0]) + centreline.radii[b] * t[:, 0])
    return np.concatenate(points), np.concatenate(radii)
