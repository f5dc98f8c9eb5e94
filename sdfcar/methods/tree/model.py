"""The tube tree as fittable tensors: shared centreline points, one radius per vessel point.

A vessel is a run of *slots* (its centreline points in order, each with its own radius); a
branch's first slot refers to the parent's centreline point it leaves from, so a child stays
attached to its parent however the points move. Pieces (:mod:`sdfcar.physics.pieces`) join
consecutive slots of a vessel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from sdfcar.geometry.tubes import Segment

#: A branch's first point is its parent's point when they are this close (mm).
ATTACH_TOLERANCE_MM = 1e-6


@dataclass(frozen=True)
class Vessel:
    """One vessel of the model: its name, its parent's name and its slots ``[start, stop)``."""

    name: str
    parent: str | None
    start: int
    stop: int


@dataclass
class TreeModel:
    """Centreline points ``(N, 3)`` (LPS mm) and log radii ``(M,)`` of ``M`` slots."""

    points: torch.Tensor
    log_radii: torch.Tensor
    slot_point: torch.Tensor  # (M,) long: the point of each slot
    vessels: list[Vessel]

    @classmethod
    def from_segments(cls, segments: Sequence[Segment], dtype: torch.dtype = torch.float64,
                      device: torch.device | str = "cpu") -> TreeModel:
        """The model of traced vessels (parents before their branches; a branch's first
        point is shared with its parent's point when it coincides with one)."""
        points: list[np.ndarray] = []
        slot_point: list[int] = []
        radii: list[float] = []
        vessels: list[Vessel] = []
        by_name: dict[str, Vessel] = {}
        for segment in segments:
            start = len(slot_point)
            parent = by_name.get(segment.parent or "")
            attached = _attachment(np.asarray(segment.points[0], float), parent, slot_point,
                                   points) if parent else None
            for n, point in enumerate(np.asarray(segment.points, dtype=float)):
                if n == 0 and attached is not None:
                    slot_point.append(slot_point[attached])
                else:
                    points.append(point)
                    slot_point.append(len(points) - 1)
            radii += [float(r) for r in segment.radii]
            vessel = Vessel(segment.name, segment.parent, start, len(slot_point))
            vessels.append(vessel)
            by_name[vessel.name] = vessel
        return cls(torch.tensor(np.array(points), dtype=dtype, device=device),
                   torch.log(torch.tensor(radii, dtype=dtype, device=device)),
                   torch.tensor(slot_point, dtype=torch.long, device=device), vessels)

    @property
    def radii(self) -> torch.Tensor:
        """Radius of every slot (mm)."""
        return torch.exp(self.log_radii)

    @property
    def slot_points(self) -> torch.Tensor:
        """Position of every slot ``(M, 3)``."""
        return self.points.index_select(0, self.slot_point)

    @cached_property
    def _topology(self) -> _Topology:
        """The index tensors of the model's fixed topology, built once (not every step)."""
        return _Topology.of(self.vessels, self.points.device)

    def piece_slots(self) -> torch.Tensor:
        """``(K, 2)`` slot indices of every piece (consecutive slots of a vessel)."""
        return self._topology.pieces

    def interior_slots(self) -> torch.Tensor:
        """``(J, 3)`` slot triples (previous, this, next) inside a vessel, for curvature."""
        return self._topology.interior

    def piece_parts(self) -> tuple[torch.Tensor, ...]:
        """Per piece: start and end points and end radii (mm), for
        :func:`~sdfcar.physics.pieces.piece_intervals`."""
        slots, points, radii = self.piece_slots(), self.slot_points, self.radii
        return (points.index_select(0, slots[:, 0]), points.index_select(0, slots[:, 1]),
                radii.index_select(0, slots[:, 0]), radii.index_select(0, slots[:, 1]))

    def ball_parts(self) -> tuple[torch.Tensor, ...]:
        """Per slot: its point and radius (mm), the balls of the capsules' joints and ends,
        for :func:`~sdfcar.physics.pieces.ball_intervals`."""
        return self.slot_points, self.radii

    def to_segments(self) -> list[Segment]:
        """The vessels as :class:`~sdfcar.geometry.tubes.Segment` (numpy, detached)."""
        points = self.slot_points.detach().cpu().numpy()
        radii = self.radii.detach().cpu().numpy()
        return [Segment(v.name, points[v.start:v.stop].copy(), radii[v.start:v.stop].copy(),
                        v.parent) for v in self.vessels]


@dataclass(frozen=True)
class _Topology:
    """Index tensors of a model's vessels: pieces and curvature triples."""

    pieces: torch.Tensor  # (K, 2)
    interior: torch.Tensor  # (J, 3)

    @classmethod
    def of(cls, vessels: Sequence[Vessel], device: torch.device) -> _Topology:
        pieces, interior = [], []
        for v in vessels:
            pieces += [(n, n + 1) for n in range(v.start, v.stop - 1)]
            interior += [(n - 1, n, n + 1) for n in range(v.start + 1, v.stop - 1)]
        return cls(torch.tensor(pieces, dtype=torch.long, device=device).reshape(-1, 2),
                   torch.tensor(interior, dtype=torch.long, device=device).reshape(-1, 3))


def _attachment(point: np.ndarray, parent: Vessel, slot_point: list[int],
                points: list[np.ndarray]) -> int | None:
    """The parent's slot whose point a branch's first point coincides with, if any."""
    for slot in range(parent.start, parent.stop):
        if np.linalg.norm(points[slot_point[slot]] - point) <= ATTACH_TOLERANCE_MM:
            return slot
    return None
