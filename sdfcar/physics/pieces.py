"""Differentiable line integrals of tube pieces in one C-arm view, in PyTorch.

A *piece* is a tapered cylinder between two centreline points ``A`` and ``B`` (radii
``r_A``, ``r_B``), cut by the planes through ``A`` and ``B`` perpendicular to its axis, so
consecutive pieces of a straight vessel tile it without overlap and their integrals add.
The chord of a ray ``S + s e`` through a piece is the overlap of two intervals in ``s``:

* the infinite cylinder: ``|w_perp + s e_perp|^2 <= r^2`` with ``w = S - A``, ``d`` the unit
  axis and ``_perp`` the parts perpendicular to it, a quadratic in ``s``;
* the slab between the end planes: ``0 <= (w + s e) . d <= |B - A|``.

The radius is interpolated linearly along the axis at the ray's closest approach. A
vessel's free ends are half balls (:func:`cap_chords`), as in its signed distance
(:func:`sdfcar.geometry.tubes.segments_sdf`). The renderer works on a fixed list of
(pixel, piece) pairs, the pixels whose ray passes near the piece (:func:`piece_pairs`),
rebuilt by the caller whenever the pieces have moved.
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
        directions = view.ray_directions(rows, cols)
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


def _overlap(middle: torch.Tensor, half: torch.Tensor, cos: torch.Tensor, low_t: torch.Tensor,
             high_t: torch.Tensor | None) -> torch.Tensor:
    """Length of ``[middle - half, middle + half]`` inside the slab ``low_t <= t(s) <=
    high_t`` (``high_t`` None: no upper plane), where ``t(s) = t0 + s cos`` and ``low_t``,
    ``high_t`` are already relative to ``t0``; all or nothing when ``cos ~ 0``."""
    safe_cos = torch.where(cos.abs() < 1e-9, torch.full_like(cos, 1e-9), cos)
    first = low_t / safe_cos
    second = high_t / safe_cos if high_t is not None \
        else torch.where(safe_cos > 0, torch.full_like(cos, 1e12), torch.full_like(cos, -1e12))
    low, high = torch.minimum(first, second), torch.maximum(first, second)
    return (torch.minimum(middle + half, high) - torch.maximum(middle - half, low)).clamp_min(0.0)


def _softened_root(square: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(square, 0))`` with a finite slope where it reaches 0 (a grazing ray)."""
    return torch.sqrt(square.clamp_min(0.0) + EDGE_SOFTENING_MM2) - EDGE_SOFTENING_MM2 ** 0.5


def piece_chords(source: torch.Tensor, rays: torch.Tensor, starts: torch.Tensor,
                 ends: torch.Tensor, radius_start: torch.Tensor, radius_end: torch.Tensor,
                 clip_start: torch.Tensor | None = None) -> torch.Tensor:
    """Chord lengths (mm) of rays ``(P, 3)`` from ``source`` through the pieces
    ``starts -> ends`` ``(P, 3)`` with end radii ``(P,)``; see the module docstring.
    ``clip_start`` (mm, ``(P,)``) moves a piece's start plane along its axis (a branch's
    first piece begins at its parent's wall, not inside the parent)."""
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
    start = -wd if clip_start is None else torch.minimum(clip_start, length) - wd
    return _overlap(middle, half, cos, start, length - wd)


def cap_chords(source: torch.Tensor, rays: torch.Tensor, centres: torch.Tensor,
               normals: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Chord lengths (mm) of rays through the half balls of ``radii`` at ``centres`` on the
    side of the unit ``normals`` (the round end of a vessel beyond its last piece)."""
    w = source - centres
    wn = (w * normals).sum(dim=1)
    middle = -(w * rays).sum(dim=1)
    half = _softened_root(middle * middle - (w * w).sum(dim=1) + radii * radii)
    return _overlap(middle, half, (rays * normals).sum(dim=1), -wn, None)


def render_pairs(pairs: Pairs, chords: Callable[..., torch.Tensor], source: torch.Tensor,
                 parts: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """``image`` (flat over the detector) plus the ``chords`` of every pair, summed per
    pixel; ``parts`` are the per-piece tensors ``chords`` takes after the rays, indexed by
    the pairs' piece index."""
    # index_select, not indexing: its backward is a fast index_add (indexing's is a
    # sorting index_put).
    values = chords(source, pairs.rays, *(t.index_select(0, pairs.pieces) for t in parts))
    return image.index_add(0, pairs.pixels, values)
