"""Differentiable line integrals of tube pieces in one C-arm view, in PyTorch.

A *piece* is a tapered cylinder between two centreline points ``A`` and ``B`` (radii
``r_A``, ``r_B``), cut by the planes through ``A`` and ``B`` perpendicular to its axis, so
consecutive pieces of a straight vessel tile it without overlap and their integrals add.
The chord of a ray ``S + s e`` through a piece is the overlap of two intervals in ``s``:

* the infinite cylinder: ``|w_perp + s e_perp|^2 <= r^2`` with ``w = S - A``, ``d`` the unit
  axis and ``_perp`` the parts perpendicular to it, a quadratic in ``s``;
* the slab between the end planes: ``0 <= (w + s e) . d <= |B - A|``.

The radius is interpolated linearly along the axis at the ray's closest approach. Every
centreline point is also a ball of its radius (:func:`ball_intervals`): the round joints and
ends of the tapered capsules whose union is the tree's signed distance
(:func:`sdfcar.geometry.tubes.segments_sdf`). A pixel's integral is the length of the union
of its ray's intervals (:func:`render_union`), so a branch overlapping its parent, a piece
overlapping its neighbour at a bend and a ball inside its pieces count once. The renderer
works on fixed lists of (pixel, shape) pairs, the pixels whose ray passes near the shape
(:func:`piece_pairs`), rebuilt by the caller whenever the shapes have moved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sdfcar.geometry import ViewGeometry
from sdfcar.physics.tubes import ray_axis_distance

#: ``sin^2`` of the ray-axis angle is kept above this: a piece seen end-on has a finite
#: chord (the slab bounds it).
MIN_SIN2 = 1e-4
#: Softening of the chord's square root at the silhouette edge (mm^2), so its gradient stays
#: finite where a ray grazes the wall.
EDGE_SOFTENING_MM2 = 1e-4


@dataclass(frozen=True)
class Pairs:
    """(pixel, piece) pairs of one view: flat pixel index, piece index and unit ray."""

    pixels: torch.Tensor  # (P,) long, row * cols + col
    pieces: torch.Tensor  # (P,) long
    rays: torch.Tensor  # (P, 3)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def subset(self, keep: torch.Tensor) -> Pairs:
        """The pairs where ``keep`` (bool, ``(P,)``) holds."""
        return Pairs(self.pixels[keep], self.pieces[keep], self.rays[keep])


def piece_pairs(view: ViewGeometry, starts: np.ndarray, ends: np.ndarray,
                reach_mm: np.ndarray, dtype: torch.dtype, device: torch.device) -> Pairs:
    """Pairs of every pixel whose ray passes within ``reach_mm[k]`` of piece ``k``'s axis
    segment ``starts[k] -> ends[k]`` (closest approach inside the segment, +- the reach)."""
    rows_n, cols_n = view.detector_shape
    source = view.source
    ends_px = view.project_points(np.stack([starts, ends], axis=1))  # (K, 2, 2)
    magnification = view.source_to_detector_mm / view.source_to_isocenter_mm
    pad = reach_mm * magnification / min(view.detector_spacing_mm) * 1.3 + 1.5
    low = np.maximum(np.floor(ends_px.min(axis=1) - pad[:, None]), 0).astype(int)
    high = np.minimum(np.ceil(ends_px.max(axis=1) + pad[:, None]) + 1,
                      (rows_n, cols_n)).astype(int)
    pixels, pieces, rays = [], [], []
    for k in np.flatnonzero(np.all(high > low, axis=1)):
        rows, cols = np.mgrid[low[k, 0]:high[k, 0], low[k, 1]:high[k, 1]]
        rows, cols = rows.ravel(), cols.ravel()
        directions = view.pixel_rays(rows, cols)
        axis = ends[k] - starts[k]
        length = max(float(np.linalg.norm(axis)), 1e-9)
        distance, along = ray_axis_distance(source, directions, starts[k], axis / length)
        keep = (distance <= reach_mm[k]) & (along >= -reach_mm[k]) \
            & (along <= length + reach_mm[k])
        pixels.append(rows[keep] * cols_n + cols[keep])
        pieces.append(np.full(int(keep.sum()), k))
        rays.append(directions[keep])
    if not pixels:
        pixels, pieces, rays = [np.zeros(0, dtype=int)], [np.zeros(0, dtype=int)], \
            [np.zeros((0, 3))]
    return Pairs(torch.as_tensor(np.concatenate(pixels), dtype=torch.long, device=device),
                 torch.as_tensor(np.concatenate(pieces), dtype=torch.long, device=device),
                 torch.as_tensor(np.concatenate(rays), dtype=dtype, device=device))


def _interval(middle: torch.Tensor, half: torch.Tensor, cos: torch.Tensor,
              low_t: torch.Tensor, high_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit ``s`` of ``[middle - half, middle + half]`` inside the slab ``low_t <=
    t(s) <= high_t``, where ``t(s) = t0 + s cos`` and the bounds are already relative to
    ``t0``; all or nothing when ``cos ~ 0``. An empty interval has exit <= entry."""
    safe_cos = torch.where(cos.abs() < 1e-9, torch.full_like(cos, 1e-9), cos)
    first, second = low_t / safe_cos, high_t / safe_cos
    low, high = torch.minimum(first, second), torch.maximum(first, second)
    return torch.maximum(middle - half, low), torch.minimum(middle + half, high)


def _softened_root(square: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(square, 0))`` with a finite slope where it reaches 0 (a grazing ray)."""
    return torch.sqrt(square.clamp_min(0.0) + EDGE_SOFTENING_MM2) - EDGE_SOFTENING_MM2 ** 0.5


def piece_intervals(source: torch.Tensor, rays: torch.Tensor, starts: torch.Tensor,
                    ends: torch.Tensor, radius_start: torch.Tensor, radius_end: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances (mm from ``source``) of rays ``(P, 3)`` through the pieces
    ``starts -> ends`` ``(P, 3)`` with end radii ``(P,)``; see the module docstring."""
    axis = ends - starts
    length = torch.linalg.norm(axis, dim=1).clamp_min(1e-9)
    d = axis / length[:, None]
    w = source - starts
    cos = (rays * d).sum(dim=1)
    wd = (w * d).sum(dim=1)
    e_perp = rays - cos[:, None] * d
    w_perp = w - wd[:, None] * d
    a = (e_perp * e_perp).sum(dim=1).clamp_min(MIN_SIN2)
    b = (w_perp * e_perp).sum(dim=1)
    middle = -b / a
    # The radius at the ray's closest approach to the axis.
    t = ((wd + middle * cos) / length).clamp(0.0, 1.0)
    radius = radius_start + t * (radius_end - radius_start)
    c = (w_perp * w_perp).sum(dim=1) - radius * radius
    half = _softened_root((b * b - a * c) / (a * a))
    return _interval(middle, half, cos, -wd, length - wd)


def ball_intervals(source: torch.Tensor, rays: torch.Tensor, centres: torch.Tensor,
                   radii: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances (mm from ``source``) of rays ``(P, 3)`` through the balls of
    ``radii`` at ``centres`` (a vessel's joints and round ends)."""
    w = source - centres
    middle = -(w * rays).sum(dim=1)
    half = _softened_root(middle * middle - (w * w).sum(dim=1) + radii * radii)
    return middle - half, middle + half


Intervals = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def render_union(parts: Sequence[tuple[Pairs, Intervals, Sequence[torch.Tensor]]],
                 source: torch.Tensor, pixel_count: int) -> torch.Tensor:
    """Line integrals (flat over the detector) of the union of shapes: for each ``(pairs,
    intervals, tensors)``, the rays of ``pairs`` through the shapes ``intervals`` describes
    by ``tensors`` (per shape, indexed by the pairs' shape index). Per pixel the length of
    the union of its intervals: overlapping pieces, balls and branches count once, as in
    the signed distance (:func:`sdfcar.geometry.tubes.segments_sdf`)."""
    enters, exits, pixels = [], [], []
    for pairs, intervals, tensors in parts:
        enter, exit_ = intervals(source, pairs.rays,
                                 *(t.index_select(0, pairs.pieces) for t in tensors))
        hit = (exit_ > enter).detach()
        enters.append(enter[hit])
        exits.append(exit_[hit])
        pixels.append(pairs.pixels[hit])
    enter, exit_, pixel = torch.cat(enters), torch.cat(exits), torch.cat(pixels)
    image = enter.new_zeros(pixel_count)
    if not len(pixel):
        return image
    # Sort by pixel, then entry: a sweep per pixel where each interval adds what reaches
    # beyond the farthest exit of the intervals before it.
    order = torch.sort(enter.detach(), stable=True).indices
    order = order[torch.sort(pixel[order], stable=True).indices]
    enter, exit_, pixel = enter[order], exit_[order], pixel[order]
    first = torch.ones_like(pixel, dtype=torch.bool)
    first[1:] = pixel[1:] != pixel[:-1]
    group = torch.cumsum(first.long(), 0) - 1
    # A running maximum within groups: an offset per group larger than any ray length.
    offset = group.to(torch.float64) * (2.0 * float(exit_.detach().abs().max()) + 1.0)
    reach = torch.cummax(exit_.detach().to(torch.float64) + offset, 0).indices
    before = torch.where(first, enter, exit_.index_select(0, torch.roll(reach, 1)))
    added = (exit_ - torch.maximum(enter, before)).clamp_min(0.0)
    return image.index_add(0, pixel, added)

