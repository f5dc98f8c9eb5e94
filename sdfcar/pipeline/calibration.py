"""C-arm self-calibration, before any method runs: view 2's rigid motion relative to view 1,
found from the two views alone.

View 1 is the reference (the problem has no gauge freedom). View 2's C-arm may be turned
about the isocenter by a small rotation vector and shifted
(:meth:`~sdfcar.geometry.ViewGeometry.moved`): positioner angles read to a fraction of a
degree, isocenter and table drift, and the heart's breathing motion between the two runs
(the tree moved by ``m`` in view 2 is the C-arm moved by ``-m``). The correction is the
most probable one that makes the two views' epipolar plane profiles agree
(:mod:`sdfcar.physics.epipolar`): Nelder-Mead from no correction on profiles blurred by 2,
1, then 0.5 mm, of the inconsistency plus :data:`PRIOR_WEIGHT` times the squared correction
in the prior's standard deviations (``calibration.prior_*``), within the bounds. ``auto``
runs it when the inconsistency exceeds ``calibration.auto_inconsistency`` and keeps the
given geometry when the correction reaches its bounds or lowers the inconsistency less than
:data:`MIN_GAIN` times (the views' noise, not their geometry).

**What two views cannot see.** A shift of view 2 along the baseline (source 1 to source 2)
keeps every ray in its epipolar plane; it only scales the reconstruction about source 1.
With an X-ray detector's narrow cone (+-4 degrees) two more combinations come close: a turn
about the axis across the baseline in the detector plane (with a shift), and a shift along
view 2's beam (a 0.1 % change of magnification per mm). On lca0 at the reference views the
inconsistency's curvature along those three is 1e-5 of the largest; the views determine the
other three (:meth:`EpipolarSearch.seen_directions`). Along the unseen ones the prior
decides, so the correction is right there only as far as the prior is: a head-feet shift
is put right; a lateral isocenter error's part along the baseline is moved head-feet and
ends worse than uncorrected (``benchmarks/calibration_geometry.py``). Every method then fits the corrected views; a method with a model
of its own refines the pose along the seen directions (the tree method,
:mod:`sdfcar.methods.tree.pose`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import optimize

from sdfcar.config import CalibrationSettings
from sdfcar.geometry import CaseGeometry, ViewGeometry
from sdfcar.geometry.correction import Correction
from sdfcar.methods.base import PoseFreedom, Problem
from sdfcar.physics.epipolar import ViewSamples, inconsistency, profiles

log = logging.getLogger("sdfcar")

#: Half width (mm at the isocenter) of the plane profiles: the heart fits well inside.
PROFILE_HALF_WIDTH_MM = 90.0
PROFILE_BIN_MM = 0.25
#: Blurs of the coarse-to-fine epipolar search (mm), and its evaluations per blur.
SEARCH_BLURS_MM = (2.0, 1.0, 0.5)
SEARCH_EVALUATIONS = 600
#: Weight of the prior: small against every direction the views determine (the weakest
#: seen one curves by 4e-3 per degree or mm squared on lca0), decisive along the unseen.
PRIOR_WEIGHT = 1e-4
#: A direction is seen when the inconsistency curves along it by at least this fraction of
#: its largest curvature (unseen ones: ~1e-5 on lca0, seen ones: 0.04-1).
SEEN_CURVATURE = 1e-3
#: Finite-difference step of that curvature (degrees or mm).
CURVATURE_STEP = 0.1
#: ``auto`` uses a correction only when it divides the inconsistency by at least this: views
#: whose inconsistency is their noise, not their geometry (a small synthetic XA pair at its
#: exact geometry: 0.024, "corrected" by 0.6 degrees to about the same), are left alone,
#: while real errors fall 8-1000 times (the GE pair after its table move: 0.027 -> 0.0033).
MIN_GAIN = 2.0


class EpipolarSearch:
    """The epipolar inconsistency of two views as a function of view 2's correction
    (six numbers: rotation vector in degrees, shift in mm)."""

    def __init__(self, views: tuple[ViewGeometry, ViewGeometry],
                 measured: tuple[np.ndarray, np.ndarray], silhouettes: tuple[np.ndarray, ...],
                 settings: CalibrationSettings) -> None:
        self.first, self.second = views
        self.images = [np.where(s, m, 0.0) for m, s in zip(measured, silhouettes)]
        self.samples_first = ViewSamples.of(self.first, self.images[0], 0.0)
        self.settings = settings

    def clipped(self, x: np.ndarray) -> np.ndarray:
        """``x`` within the bounds."""
        return np.clip(np.asarray(x, float), -self.settings.bounds, self.settings.bounds)

    def inconsistency(self, x: np.ndarray, blur_mm: float = SEARCH_BLURS_MM[-1]) -> float:
        """The views' inconsistency with view 2 corrected by ``x``."""
        view = Correction.of_vector(self.clipped(x)).applied(self.second)
        samples = ViewSamples.of(view, self.images[1], 0.0)
        first, second = profiles((self.first, view), (self.samples_first, samples),
                                 np.zeros(3), PROFILE_HALF_WIDTH_MM, PROFILE_BIN_MM, blur_mm)
        return inconsistency(first, second)

    def objective(self, x: np.ndarray, blur_mm: float) -> float:
        """Inconsistency plus the prior (see the module docstring)."""
        prior = float(np.sum((np.asarray(x) / self.settings.prior_scale) ** 2))
        return self.inconsistency(x, blur_mm) + PRIOR_WEIGHT * prior

    def search(self) -> np.ndarray:
        """The most probable consistent correction (coarse to fine)."""
        x = np.zeros(6)
        for blur in SEARCH_BLURS_MM:
            x = optimize.minimize(self.objective, x, args=(blur,), method="Nelder-Mead",
                                  options={"maxfev": SEARCH_EVALUATIONS, "xatol": 0.005,
                                           "fatol": 1e-9}).x
        return self.clipped(x)

    def seen_directions(self, x: np.ndarray) -> np.ndarray:
        """Orthonormal directions ``(k, 6)`` of the correction that the views determine at
        ``x``: the inconsistency's curvature along them is at least :data:`SEEN_CURVATURE`
        of the largest (finite differences of :data:`CURVATURE_STEP`)."""
        h, eye = CURVATURE_STEP, np.eye(6)
        hessian = np.zeros((6, 6))
        for i in range(6):
            for j in range(i, 6):
                corners = [self.inconsistency(x + h * (si * eye[i] + sj * eye[j]))
                           for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
                hessian[i, j] = hessian[j, i] = (corners[0] - corners[1] - corners[2]
                                                 + corners[3]) / (4 * h * h)
        curvature, vectors = np.linalg.eigh(hessian)
        return vectors[:, curvature >= SEEN_CURVATURE * max(curvature.max(), 1e-30)].T


@dataclass
class Calibration:
    """Self-calibration of a run: whether it is on, the geometry found, and the
    corrections found (before any method runs, then by the method's own refinement)."""

    settings: CalibrationSettings
    given: CaseGeometry
    active: bool
    geometry: CaseGeometry
    inconsistency: dict[str, float] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    seen: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    #: ``auto`` found a correction at its bounds (these components) and did not use it.
    rejected: list[str] = field(default_factory=list)
    #: ``auto`` found a correction that lowers the inconsistency too little to be a
    #: measurement (:data:`MIN_GAIN`) and did not use it.
    small_gain: bool = False

    @classmethod
    def run(cls, problem: Problem, settings: CalibrationSettings) -> Calibration:
        """Decide (``auto``: line integrals whose epipolar inconsistency is high), then
        correct view 2 (see the module docstring); ``auto`` keeps the given geometry when
        the correction found reaches its bounds."""
        given = problem.geometry
        wanted = settings.mode == "on" or (settings.mode == "auto"
                                           and problem.target == "integral")
        if not wanted:
            return cls(settings, given, False, given)
        search = EpipolarSearch(given.views, problem.measured[:2], problem.silhouettes,
                                settings)
        before = search.inconsistency(np.zeros(6))
        calibration = cls(settings, given, True, given, {"given": round(before, 6)})
        if settings.mode == "auto" and before <= settings.auto_inconsistency:
            calibration.active = False
            return calibration
        x = search.search()
        calibration.inconsistency["corrected"] = round(search.inconsistency(x), 6)
        bounded = Correction.of_vector(x).at_bound(settings.bounds)
        if settings.mode == "auto" and bounded:
            log.warning("self-calibration: the views agree best with view 2 corrected up to "
                        "its bounds (%s; epipolar inconsistency %.2g -> %.2g); kept the given "
                        "geometry (set calibration.mode=on to use the correction, or widen "
                        "calibration.max_*)", ", ".join(bounded), before,
                        calibration.inconsistency["corrected"])
            calibration.active = False
            calibration.rejected = bounded
            return calibration
        if settings.mode == "auto" and calibration.inconsistency["corrected"] * MIN_GAIN > before:
            log.info("self-calibration: the best correction only takes the epipolar "
                     "inconsistency from %.2g to %.2g; kept the given geometry (set "
                     "calibration.mode=on to use it)", before,
                     calibration.inconsistency["corrected"])
            calibration.active = False
            calibration.small_gain = True
            return calibration
        calibration.seen = search.seen_directions(x)
        calibration.add(Correction.of_vector(x), "epipolar")
        return calibration

    def add(self, correction: Correction, stage: str) -> None:
        """Move view 2 by ``correction`` (found by ``stage``)."""
        first, second = self.geometry.views
        self.geometry = replace(self.geometry, views=(first, correction.applied(second)))
        self.stages.append({"stage": stage, **correction.to_dict()})

    def problem(self, problem: Problem) -> Problem:
        """``problem`` in the corrected geometry, with the pose freedom its method may use."""
        start = Correction.difference(self.geometry.views[1], self.given.views[1])
        freedom = PoseFreedom(self.seen, start.vector, self.settings) if self.active else None
        return replace(problem, geometry=self.geometry, pose_freedom=freedom)

    def finish(self, fitted: CaseGeometry | None) -> dict[str, Any]:
        """The run record's section, once the method has run (``fitted``: the geometry it
        refined, None: it kept the one it was given)."""
        if fitted is not None and fitted != self.geometry:
            self.stages.append({"stage": "refinement", **Correction.difference(
                fitted.views[1], self.geometry.views[1]).to_dict()})
            self.geometry = fitted
        total = Correction.difference(self.geometry.views[1], self.given.views[1])
        at_bound = total.at_bound(self.settings.bounds) if self.active else []
        if self.active:
            log.info("self-calibration: view 2 corrected by %s (epipolar inconsistency "
                     "%.2g -> %.2g)", total.describe(), self.inconsistency["given"],
                     self.inconsistency["corrected"])
        if at_bound:
            log.warning("self-calibration: view 2's correction reached its bound (%s); the "
                        "views may hold more than the vessels, or the geometry may be off by "
                        "more than the bounds allow", ", ".join(at_bound))
        return {"mode": self.settings.mode, "active": self.active,
                "inconsistency": self.inconsistency, "stages": self.stages,
                "total": total.to_dict(), "at_bound": at_bound,
                "rejected_at_bound": self.rejected,
                "rejected_small_gain": self.small_gain,
                "seen_directions": np.round(self.seen, 3).tolist(),
                "not_identifiable": f"{6 - len(self.seen)} of the 6 correction directions "
                                    "(set by the prior; see sdfcar.pipeline.calibration)"
                                    if self.active else ""}
