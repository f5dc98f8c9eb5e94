"""Foreshortening and overlap of vessels in a C-arm view, and the working-view map.

* **Foreshortening** of a centreline in a view: ``1 - projected / true length``. Each piece
  between consecutive samples is projected through the view's cone beam
  (:meth:`~sdfcar.geometry.contract.ViewGeometry.project_points`) and its length on the
  detector (mm) is divided by the magnification at the piece's midpoint (SID / its depth
  along the central ray from the source), i.e. measured at the piece's own scale. For a
  short straight piece of direction ``t`` near the central ray this is
  ``1 - sqrt(1 - (t . beam)^2)``; 0 = seen side-on, 1 = end-on.
* **Overlap** of a centreline in a view: the fraction of its samples whose projected lumen
  meets the projected lumen of another vessel: some sample of another vessel lies within
  the sum of the two radii of it on the detector (at the isocenter scale, detector mm x
  SOD / SID), while the two are farther apart than the radii plus :data:`CONTACT_MM` in 3D
  (so the vessel's own junctions, where vessels really touch, do not count).
* **Working-view map**: both over gantry angles (primary :data:`PRIMARY_RANGE_DEG`,
  secondary :data:`SECONDARY_RANGE_DEG`, :data:`STEP_DEG` apart) with the distances and
  detector of a reference view (the first acquired one); the score of an angle pair is
  foreshortening + overlap, and the best pairs are the lowest scores at least
  :data:`SEPARATION_DEG` apart in either angle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sdfcar.geometry import ViewGeometry

#: Two samples of different vessels closer than their radii plus this in 3D touch (mm).
CONTACT_MM = 2.0
PRIMARY_RANGE_DEG = (-60.0, 60.0)
SECONDARY_RANGE_DEG = (-40.0, 40.0)
STEP_DEG = 5.0
#: The best angle pairs differ by at least this in the primary or the secondary angle.
SEPARATION_DEG = 10.0
BEST_COUNT = 3


def projected_lengths(points: np.ndarray, view: ViewGeometry) -> np.ndarray:
    """Length of each piece between consecutive ``points`` in ``view``, on the detector
    divided by the magnification at the piece's midpoint (mm)."""
    pixels = view.project_points(points) * np.asarray(view.detector_spacing_mm)
    on_detector = np.linalg.norm(np.diff(pixels, axis=0), axis=1)
    middle = (points[1:] + points[:-1]) / 2
    depth = (middle - view.source) @ view.beam_direction
    return on_detector * depth / view.source_to_detector_mm


def foreshortening(points: np.ndarray, view: ViewGeometry) -> float | None:
    """``1 - projected / true length`` of the polyline ``points`` in ``view`` (module
    docstring); None when it has no length."""
    true = float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())
    if true <= 0:
        return None
    return 1.0 - float(projected_lengths(points, view).sum()) / true


@dataclass(frozen=True)
class OverlapPairs:
    """The sample pairs that may overlap: a target's samples against the other vessels'
    samples that do not touch them in 3D, and the sums of their radii."""

    target: np.ndarray  # (N, 3) LPS mm
    others: np.ndarray  # (M, 3)
    reach: np.ndarray  # (N, M) sum of radii (mm); -inf where the samples touch in 3D

    @classmethod
    def build(cls, target: np.ndarray, target_radii: np.ndarray, others: np.ndarray,
              other_radii: np.ndarray) -> OverlapPairs:
        reach = target_radii[:, None] + other_radii[None, :]
        apart = np.linalg.norm(target[:, None] - others[None], axis=-1) > reach + CONTACT_MM
        return cls(target, others, np.where(apart, reach, -np.inf))

    def overlap(self, view: ViewGeometry) -> float:
        """Fraction of the target's samples overlapped in ``view`` (module docstring)."""
        if not len(self.others):
            return 0.0
        scale = np.asarray(view.detector_spacing_mm) * (view.source_to_isocenter_mm
                                                        / view.source_to_detector_mm)
        a = view.project_points(self.target) * scale
        b = view.project_points(self.others) * scale
        planar = np.linalg.norm(a[:, None] - b[None], axis=-1)
        return float(np.mean((planar < self.reach).any(axis=1)))


@dataclass(frozen=True)
class ViewMap:
    """Foreshortening and overlap of a target over gantry angles ``[primary, secondary]``."""

    primary_deg: np.ndarray  # (P,)
    secondary_deg: np.ndarray  # (S,)
    foreshortening: np.ndarray  # (P, S)
    overlap: np.ndarray  # (P, S)
    reference: ViewGeometry  # distances and detector of every view of the map

    def view(self, primary_deg: float, secondary_deg: float) -> ViewGeometry:
        """The map's view at ``(primary_deg, secondary_deg)``."""
        return replace(self.reference, primary_angle_deg=float(primary_deg),
                       secondary_angle_deg=float(secondary_deg))

    @property
    def score(self) -> np.ndarray:
        """Foreshortening + overlap (lower is better)."""
        return self.foreshortening + self.overlap

    def best(self, count: int = BEST_COUNT) -> list[dict[str, float]]:
        """The ``count`` lowest scores at least :data:`SEPARATION_DEG` apart."""
        chosen: list[tuple[int, int]] = []
        for flat in np.argsort(self.score, axis=None, kind="stable"):
            p, s = np.unravel_index(flat, self.score.shape)
            if all(max(abs(self.primary_deg[p] - self.primary_deg[q]),
                       abs(self.secondary_deg[s] - self.secondary_deg[t])) >= SEPARATION_DEG
                   for q, t in chosen):
                chosen.append((int(p), int(s)))
            if len(chosen) == count:
                break
        return [self._pick(p, s) for p, s in chosen]

    def _pick(self, p: int, s: int) -> dict[str, Any]:
        """One angle pair: its angles, scores, and its beam direction and image up direction
        (LPS unit vectors: source to detector, and minus the detector's row direction), for
        viewers that show the tree as that angiogram shows it."""
        view = self.view(self.primary_deg[p], self.secondary_deg[s])
        return {"primary_deg": float(self.primary_deg[p]),
                "secondary_deg": float(self.secondary_deg[s]),
                "foreshortening": float(self.foreshortening[p, s]),
                "overlap": float(self.overlap[p, s]),
                "beam_lps": np.round(view.beam_direction, 6).tolist(),
                "image_up_lps": np.round(-view.row_direction, 6).tolist()}

    def to_dict(self) -> dict[str, Any]:
        """The map for the run record (fractions rounded to 0.001)."""
        return {"primary_deg": self.primary_deg.tolist(),
                "secondary_deg": self.secondary_deg.tolist(),
                "foreshortening": np.round(self.foreshortening, 3).tolist(),
                "overlap": np.round(self.overlap, 3).tolist(), "best": self.best()}


def angle_steps(bounds: tuple[float, float], step: float = STEP_DEG) -> np.ndarray:
    """``bounds[0], bounds[0] + step, ...`` up to ``bounds[1]``."""
    return np.arange(bounds[0], bounds[1] + step / 2, step)


def working_view_map(target: np.ndarray, pairs: OverlapPairs, reference: ViewGeometry,
                     primary_deg: np.ndarray | None = None,
                     secondary_deg: np.ndarray | None = None) -> ViewMap:
    """Foreshortening of the polyline ``target`` and the overlap of ``pairs`` in views with
    ``reference``'s distances and detector at every ``(primary, secondary)``."""
    primary = angle_steps(PRIMARY_RANGE_DEG) if primary_deg is None else primary_deg
    secondary = angle_steps(SECONDARY_RANGE_DEG) if secondary_deg is None else secondary_deg
    shorter = np.zeros((len(primary), len(secondary)))
    hidden = np.zeros_like(shorter)
    view_map = ViewMap(np.asarray(primary, float), np.asarray(secondary, float), shorter,
                       hidden, reference)
    for i, p in enumerate(primary):
        for j, s in enumerate(secondary):
            view = view_map.view(p, s)
            shorter[i, j] = foreshortening(target, view) or 0.0
            hidden[i, j] = pairs.overlap(view)
    return view_map
