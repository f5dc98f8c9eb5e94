"""A rigid correction of a view's C-arm (self-calibration): what it is, how it is applied,
reported and checked against its bounds."""

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

    @classmethod
    def of_vector(cls, x: np.ndarray) -> Correction:
        """The correction of six numbers: rotation vector (degrees), then shift (mm)."""
        x = np.asarray(x, float)
        return cls(x[:3], x[3:])

    @property
    def vector(self) -> np.ndarray:
        """Rotation vector (degrees) and shift (mm) as six numbers."""
        return np.concatenate([self.rotation_deg, self.translation_mm])

    def at_bound(self, bounds: np.ndarray) -> list[str]:
        """The components within :data:`AT_BOUND` of their ``bounds`` (six), by name."""
        names = [f"rotation_{a}" for a in "xyz"] + [f"translation_{a}" for a in "xyz"]
        return [n for n, v, b in zip(names, np.abs(self.vector), bounds) if v >= AT_BOUND * b]

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
