"""A rigid correction of a view's C-arm (self-calibration): what it is, how it is applied,
reported and checked against its bounds, and the shifts two views can see."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdfcar.geometry.contract import ViewGeometry
from sdfcar.geometry.rotations import rotation_vector, rotation_vector_of

#: A correction within this fraction of its bound is reported as at the bound.
AT_BOUND = 0.98


def baseline(first: ViewGeometry, second: ViewGeometry) -> np.ndarray:
    """The unit vector from the first view's source to the second's."""
    line = second.source - first.source
    return line / np.linalg.norm(line)


@dataclass(frozen=True)
class Correction:
    """A rigid correction of a view's C-arm: rotation vector (degrees), shift (mm)."""

    rotation_deg: np.ndarray
    translation_mm: np.ndarray

    def applied(self, view: ViewGeometry) -> ViewGeometry:
        """``view`` moved by this correction."""
        return view.moved(self.rotation_deg, self.translation_mm)

    def at_bound(self, max_rotation_deg: float, max_translation_mm: float) -> list[str]:
        """The components within :data:`AT_BOUND` of their bounds, by name."""
        names = [f"rotation_{a}" for a in "xyz"] + [f"translation_{a}" for a in "xyz"]
        values = np.abs(np.concatenate([self.rotation_deg, self.translation_mm]))
        bounds = [max_rotation_deg] * 3 + [max_translation_mm] * 3
        return [n for n, v, b in zip(names, values, bounds) if v >= AT_BOUND * b]

    @classmethod
    def difference(cls, moved: ViewGeometry, view: ViewGeometry) -> Correction:
        """The correction that takes ``view`` to ``moved`` (``moved == correction.applied(
        view)``, both views of the same C-arm)."""
        turn = rotation_vector(moved.correction_rotation_deg) \
            @ rotation_vector(view.correction_rotation_deg).T
        shift = np.asarray(moved.correction_translation_mm) \
            - turn @ np.asarray(view.correction_translation_mm)
        return cls(rotation_vector_of(turn), shift)

    @classmethod
    def of_view(cls, view: ViewGeometry) -> Correction:
        """The correction a view carries (:meth:`ViewGeometry.moved`)."""
        return cls(np.asarray(view.correction_rotation_deg, float),
                   np.asarray(view.correction_translation_mm, float))

    def to_dict(self) -> dict[str, list[float]]:
        return {"rotation_deg": np.round(self.rotation_deg, 3).tolist(),
                "translation_mm": np.round(self.translation_mm, 3).tolist()}

    def describe(self) -> str:
        """One line: ``rotation (x, y, z) deg, shift (x, y, z) mm``."""
        def triple(values: np.ndarray) -> str:
            return "(" + ", ".join(f"{v:+.2f}" for v in values) + ")"

        return f"rotation {triple(self.rotation_deg)} deg, shift {triple(self.translation_mm)} mm"


@dataclass(frozen=True)
class ShiftBasis:
    """The shifts of view 2 that two views can tell apart (two directions across the
    baseline, source 1 to source 2) and the prior that sets the shift along the baseline
    from them, which no two-view method can see (it only scales the tree about source 1):
    ``head-feet`` makes the shift as close to head-feet as the seen part allows (breathing
    moves the heart 4.9 +- 1.9 mm head-feet between runs), ``smallest`` leaves it at 0."""

    across: np.ndarray  # (2, 3) orthonormal, perpendicular to the baseline
    along: np.ndarray  # (3,) unit baseline
    #: The baseline share per unit of each ``across`` coordinate (the prior, linear).
    share: np.ndarray  # (2,)

    @classmethod
    def of(cls, first: ViewGeometry, second: ViewGeometry, prior: str) -> ShiftBasis:
        """The basis of the views' baseline under ``prior``."""
        along = baseline(first, second)
        across = np.linalg.svd(along[None])[2][1:]
        share = np.zeros(2)
        lateral = np.array([1.0, 1.0, 0.0])  # the non-head-feet components
        if prior == "head-feet" and np.linalg.norm(lateral * along) > 1e-6:
            # Least squares: the lateral part of across @ c + alpha along is smallest.
            share = -(across * lateral) @ (lateral * along) / np.sum((lateral * along) ** 2)
        return cls(across, along, share)

    def shift(self, coordinates: np.ndarray) -> np.ndarray:
        """The 3D shift (mm) of identifiable ``coordinates`` ``(2,)``."""
        return coordinates @ self.across + (coordinates @ self.share) * self.along
