"""C-arm self-calibration, before any method runs: view 2's rigid motion relative to view 1
found from the two views alone.

View 1 is the reference (the problem has no gauge freedom). View 2's C-arm may be turned
about the isocenter by a small rotation vector and shifted
(:meth:`~sdfcar.geometry.ViewGeometry.moved`): positioner angles read to a fraction of a
degree, isocenter and table drift, and the heart's breathing motion between the two runs
(the tree moved by ``m`` in view 2 is the C-arm moved by ``-m``). The correction that makes
the two views' epipolar plane profiles agree (:mod:`sdfcar.physics.epipolar`) is found by
Nelder-Mead from no correction, on profiles blurred by 2, 1, then 0.5 mm, within the bounds
(``max_rotation_deg`` per rotation component, ``max_translation_mm`` per shift component
across the baseline). Every method then fits the corrected views; a method with a model of
its own refines the pose further with it (the tree method,
:mod:`sdfcar.methods.tree.pose`).

**Not identifiable from two views**: a shift of view 2 along the baseline (source 1 to source
2) keeps every ray in its epipolar plane and only scales the reconstruction about source 1;
a prior sets it (:class:`~sdfcar.geometry.correction.ShiftBasis`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import optimize

from sdfcar.config import CalibrationSettings
from sdfcar.geometry import CaseGeometry, ViewGeometry
from sdfcar.geometry.correction import Correction, ShiftBasis
from sdfcar.methods.base import Problem
from sdfcar.physics.epipolar import ViewSamples, inconsistency, profiles

log = logging.getLogger("sdfcar")

#: Half width (mm at the isocenter) of the plane profiles: the heart fits well inside.
PROFILE_HALF_WIDTH_MM = 90.0
PROFILE_BIN_MM = 0.25
#: Blurs of the coarse-to-fine epipolar search (mm).
SEARCH_BLURS_MM = (2.0, 1.0, 0.5)
SEARCH_EVALUATIONS = 400


def _clipped(x: np.ndarray, settings: CalibrationSettings) -> np.ndarray:
    bound = np.array([settings.max_rotation_deg] * 3 + [settings.max_translation_mm] * 2)
    return np.clip(x, -bound, bound)


class EpipolarSearch:
    """The epipolar inconsistency of two views as a function of view 2's correction."""

    def __init__(self, views: tuple[ViewGeometry, ViewGeometry],
                 measured: tuple[np.ndarray, np.ndarray], silhouettes: tuple[np.ndarray, ...],
                 settings: CalibrationSettings) -> None:
        self.first, self.second = views
        self.images = [np.where(s, m, 0.0) for m, s in zip(measured, silhouettes)]
        self.samples_first = ViewSamples.of(self.first, self.images[0], 0.0)
        self.basis = ShiftBasis.of(self.first, self.second, settings.baseline_prior)
        self.settings = settings

    def correction(self, x: np.ndarray) -> Correction:
        """The correction of search coordinates ``x`` (3 angles in degrees, 2 shifts)."""
        x = _clipped(np.asarray(x, float), self.settings)
        return Correction(x[:3], self.basis.shift(x[3:]))

    def inconsistency(self, x: np.ndarray, blur_mm: float = SEARCH_BLURS_MM[-1]) -> float:
        """The views' inconsistency with view 2 corrected by ``x``."""
        view = self.correction(x).applied(self.second)
        samples = ViewSamples.of(view, self.images[1], 0.0)
        first, second = profiles((self.first, view), (self.samples_first, samples),
                                 np.zeros(3), PROFILE_HALF_WIDTH_MM, PROFILE_BIN_MM, blur_mm)
        return inconsistency(first, second)

    def search(self) -> np.ndarray:
        """The search coordinates of the most consistent correction (coarse to fine)."""
        x = np.zeros(5)
        for blur in SEARCH_BLURS_MM:
            x = optimize.minimize(self.inconsistency, x, args=(blur,), method="Nelder-Mead",
                                  options={"maxfev": SEARCH_EVALUATIONS, "xatol": 0.01,
                                           "fatol": 1e-8}).x
        return _clipped(x, self.settings)


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

    @classmethod
    def run(cls, problem: Problem, settings: CalibrationSettings) -> Calibration:
        """Decide (``auto``: line integrals whose epipolar inconsistency is high), then
        correct view 2 until the views' epipolar profiles agree."""
        given = problem.geometry
        wanted = settings.mode == "on" or (settings.mode == "auto"
                                           and problem.target == "integral")
        if not wanted:
            return cls(settings, given, False, given)
        search = EpipolarSearch(given.views, problem.measured[:2], problem.silhouettes,
                                settings)
        before = search.inconsistency(np.zeros(5))
        calibration = cls(settings, given, True, given, {"given": round(before, 6)})
        if settings.mode == "auto" and before <= settings.auto_inconsistency:
            calibration.active = False
            return calibration
        x = search.search()
        calibration.inconsistency["corrected"] = round(search.inconsistency(x), 6)
        calibration.add(search.correction(x), "epipolar")
        return calibration

    def add(self, correction: Correction, stage: str) -> None:
        """Move view 2 by ``correction`` (found by ``stage``)."""
        first, second = self.geometry.views
        self.geometry = replace(self.geometry, views=(first, correction.applied(second)))
        self.stages.append({"stage": stage, **correction.to_dict()})

    def problem(self, problem: Problem) -> Problem:
        """``problem`` in the corrected geometry, its methods told whether to refine it."""
        return replace(problem, geometry=self.geometry,
                       calibration=self.settings if self.active else None)

    def finish(self, fitted: CaseGeometry | None) -> dict[str, Any]:
        """The run record's section, once the method has run (``fitted``: the geometry it
        refined, None: it kept the one it was given)."""
        if fitted is not None and fitted != self.geometry:
            self.stages.append({"stage": "refinement", **Correction.difference(
                fitted.views[1], self.geometry.views[1]).to_dict()})
            self.geometry = fitted
        total = Correction.difference(self.geometry.views[1], self.given.views[1])
        at_bound = total.at_bound(self.settings.max_rotation_deg,
                                  self.settings.max_translation_mm) if self.active else []
        if self.active:
            log.info("self-calibration: view 2 corrected by %s (epipolar inconsistency "
                     "%.2g -> %.2g)", total.describe(), self.inconsistency["given"],
                     self.inconsistency["corrected"])
        if at_bound:
            log.warning("self-calibration: view 2's correction reached its bound (%s); the "
                        "geometry may be off by more than the bounds allow",
                        ", ".join(at_bound))
        return {"mode": self.settings.mode, "active": self.active,
                "inconsistency": self.inconsistency, "stages": self.stages,
                "total": total.to_dict(), "at_bound": at_bound,
                "not_identifiable": "view 2's shift along the baseline (set by the "
                                    f"{self.settings.baseline_prior} prior)"}
