"""The tube tree as fittable tensors: shared centreline points, one radius per vessel point.

A vessel is a run of *slots* (its centreline points in order, each with its own radius); a
branch's first slot refers to the parent's centreline point it leaves from, so a child stays
attached to its parent however the points move. Pieces (:mod:`sdfcar.physics.pieces`) join
consecutive slots of a vessel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    #: The parent's slot whose point this branch starts from (None: a free first end).
    attached_to: int | None = None


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
            vessel = Vessel(segment.name, segment.parent, start, len(slot_point), attached)
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

    def piece_slots(self) -> torch.Tensor:
        """``(K, 2)`` slot indices of every piece (consecutive slots of a vessel)."""
        pairs = [torch.stack([torch.arange(v.start, v.stop - 1), torch.arange(v.start + 1,
                                                                            v.stop)], dim=1)
                 for v in self.vessels if v.stop - v.start >= 2]
        if not pairs:
            return torch.zeros((0, 2), dtype=torch.long, device=self.points.device)
        return torch.cat(pairs).to(self.points.device)

    def interior_slots(self) -> torch.Tensor:
        """``(J, 3)`` slot triples (previous, this, next) inside a vessel, for curvature."""
        triples = [torch.stack([torch.arange(v.start, v.stop - 2),
                                torch.arange(v.start + 1, v.stop - 1),
                                torch.arange(v.start + 2, v.stop)], dim=1)
                   for v in self.vessels if v.stop - v.start >= 3]
        if not triples:
            return torch.zeros((0, 3), dtype=torch.long, device=self.points.device)
        return torch.cat(triples).to(self.points.device)

    def piece_parts(self) -> tuple[torch.Tensor, ...]:
        """Per piece: start and end points, end radii and the start clip (mm; a branch's
        first piece starts at its parent's wall) for :func:`~sdfcar.physics.pieces.piece_chords`."""
        slots = self.piece_slots()
        points, radii = self.slot_points, self.radii
        clip = torch.zeros(len(slots), dtype=points.dtype, device=points.device)
        firsts = [(n, v.attached_to) for n, v in zip(self._first_pieces(), self.vessels)
                  if v.attached_to is not None and n is not None]
        if firsts:
            index = torch.tensor([n for n, _ in firsts], device=points.device)
            parent_slots = torch.tensor([s for _, s in firsts], device=points.device)
            clip = clip.index_put((index,), radii.index_select(0, parent_slots))
        return (points.index_select(0, slots[:, 0]), points.index_select(0, slots[:, 1]),
                radii.index_select(0, slots[:, 0]), radii.index_select(0, slots[:, 1]), clip)

    def cap_parts(self) -> tuple[torch.Tensor, ...]:
        """Per free vessel end (every last point; a root's first point): centre, outward
        unit normal and radius, for :func:`~sdfcar.physics.pieces.cap_chords`."""
        ends = [(v.stop - 1, v.stop - 2) for v in self.vessels if v.stop - v.start >= 2]
        ends += [(v.start, v.start + 1) for v in self.vessels
                 if v.attached_to is None and v.stop - v.start >= 2]
        tips = torch.tensor([e for e, _ in ends], dtype=torch.long, device=self.points.device)
        inner = torch.tensor([i for _, i in ends], dtype=torch.long, device=self.points.device)
        points = self.slot_points
        centres = points.index_select(0, tips)
        outward = centres - points.index_select(0, inner)
        normals = outward / torch.linalg.norm(outward, dim=1, keepdim=True).clamp_min(1e-9)
        return centres, normals, self.radii.index_select(0, tips)

    def _first_pieces(self) -> list[int | None]:
        """Index of each vessel's first piece in :meth:`piece_slots` (None: no piece)."""
        firsts, count = [], 0
        for v in self.vessels:
            pieces = max(v.stop - v.start - 1, 0)
            firsts.append(count if pieces else None)
            count += pieces
        return firsts

    def to_segments(self) -> list[Segment]:
        """The vessels as :class:`~sdfcar.geometry.tubes.Segment` (numpy, detached)."""
        points = self.slot_points.detach().cpu().numpy()
        radii = self.radii.detach().cpu().numpy()
        return [Segment(v.name, points[v.start:v.stop].copy(), radii[v.start:v.stop].copy(),
                        v.parent) for v in self.vessels]


def _attachment(point: np.ndarray, parent: Vessel, slot_point: list[int],
                points: list[np.ndarray]) -> int | None:
    """The parent's slot whose point a branch's first point coincides with, if any."""
    for slot in range(parent.start, parent.stop):
        if np.linalg.norm(points[slot_point[slot]] - point) <= ATTACH_TOLERANCE_MM:
            return slot
    return None
