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
        """Per piece: start and end points, end radii and the start clip (mm; a branch's
        first piece starts at its parent's wall), for
        :func:`~sdfcar.physics.pieces.piece_chords`."""
        topology = self._topology
        slots, points, radii = topology.pieces, self.slot_points, self.radii
        clip = torch.zeros(len(slots), dtype=points.dtype, device=points.device)
        if len(topology.clipped):
            clip = clip.index_put((topology.clipped,),
                                  radii.index_select(0, topology.clip_slots))
        return (points.index_select(0, slots[:, 0]), points.index_select(0, slots[:, 1]),
                radii.index_select(0, slots[:, 0]), radii.index_select(0, slots[:, 1]), clip)

    def cap_parts(self) -> tuple[torch.Tensor, ...]:
        """Per free vessel end (every last point; a root's first point): centre, outward
        unit normal and radius, for :func:`~sdfcar.physics.pieces.cap_chords`."""
        topology, points = self._topology, self.slot_points
        centres = points.index_select(0, topology.tips)
        outward = centres - points.index_select(0, topology.tip_neighbours)
        normals = outward / torch.linalg.norm(outward, dim=1, keepdim=True).clamp_min(1e-9)
        return centres, normals, self.radii.index_select(0, topology.tips)

    def to_segments(self) -> list[Segment]:
        """The vessels as :class:`~sdfcar.geometry.tubes.Segment` (numpy, detached)."""
        points = self.slot_points.detach().cpu().numpy()
        radii = self.radii.detach().cpu().numpy()
        return [Segment(v.name, points[v.start:v.stop].copy(), radii[v.start:v.stop].copy(),
                        v.parent) for v in self.vessels]


@dataclass(frozen=True)
class _Topology:
    """Index tensors of a model's vessels: pieces, curvature triples, the branches' first
    pieces with the parent slots that clip them, and the free ends with their neighbours."""

    pieces: torch.Tensor  # (K, 2)
    interior: torch.Tensor  # (J, 3)
    clipped: torch.Tensor  # first pieces of attached branches
    clip_slots: torch.Tensor  # the parent slot each starts from
    tips: torch.Tensor  # free ends
    tip_neighbours: torch.Tensor  # the slot next to each free end

    @classmethod
    def of(cls, vessels: Sequence[Vessel], device: torch.device) -> _Topology:
        pieces, interior, clipped, clip_slots, tips, neighbours = [], [], [], [], [], []
        for v in vessels:
            if v.stop - v.start < 2:
                continue
            if v.attached_to is not None:
                clipped.append(len(pieces))
                clip_slots.append(v.attached_to)
            pieces += [(n, n + 1) for n in range(v.start, v.stop - 1)]
            interior += [(n - 1, n, n + 1) for n in range(v.start + 1, v.stop - 1)]
            tips.append(v.stop - 1)
            neighbours.append(v.stop - 2)
        for v in vessels:  # a root's first point is a free end too
            if v.stop - v.start >= 2 and v.attached_to is None:
                tips.append(v.start)
                neighbours.append(v.start + 1)

        def index(values: list, width: int | None = None) -> torch.Tensor:
            tensor = torch.tensor(values, dtype=torch.long, device=device)
            return tensor.reshape(-1, width) if width else tensor

        return cls(index(pieces, 2), index(interior, 3), index(clipped), index(clip_slots),
                   index(tips), index(neighbours))


def _attachment(point: np.ndarray, parent: Vessel, slot_point: list[int],
                points: list[np.ndarray]) -> int | None:
    """The parent's slot whose point a branch's first point coincides with, if any."""
    for slot in range(parent.start, parent.stop):
        if np.linalg.norm(points[slot_point[slot]] - point) <= ATTACH_TOLERANCE_MM:
            return slot
    return None
