"""Where the patient table stood during a run, and what its motion between two runs does to
the pair's geometry.

The positioner angles and distances of an XA file place the C-arm about the isocenter; they
say nothing of the table. When the table moves between two runs (the operator pans to keep
the vessels in the field), the patient moves against the isocenter, which to the two views
is view 2's C-arm moved rigidly the other way: exactly the shift of
:attr:`~sdfcar.geometry.ViewGeometry.correction_translation_mm`.

Where it is read: GE's private block ``DLX_SERIE_01`` in group 0019 (elements xx21 Table
Vertical Position, xx22 Table Longitudinal Position, xx23 Table Lateral Position, mm; names
from pydicom's private dictionary). The standard XA attributes have no table position. Its
axes and signs for a head-first supine patient were measured, not taken from a manual: on
the three GE runs of ``shared/real-xa`` every pair's epipolar inconsistency
(:mod:`sdfcar.physics.epipolar`) is lowest, of the eight sign choices, when view 2's C-arm
moves by ``-(table2 - table1)`` along (lateral, vertical, longitudinal) = LPS (x, y, z):
IM5 + IM6 0.48 -> 0.027 (the next sign choice 0.041, then 0.24 and above), IM1 + IM6 0.045
-> 0.012, IM1 + IM5 0.068 -> 0.034 (only the vertical position differs there). Other
patient positions are reported and not applied (their axes are not known here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

#: GE's private creator of the table positions, and the elements (low byte) per axis.
GE_CREATOR = "DLX_SERIE_01"
GE_ELEMENTS = {"lateral_mm": 0x23, "vertical_mm": 0x21, "longitudinal_mm": 0x22}
#: Patient positions whose table axes are known (see the module docstring).
KNOWN_POSITIONS = ("HFS",)
#: Table moves smaller than this (mm, any axis) are taken as none.
STILL_MM = 0.05


@dataclass(frozen=True)
class TablePosition:
    """The table's position during a run (mm, the vendor's axes) and the patient position."""

    lateral_mm: float
    vertical_mm: float
    longitudinal_mm: float
    source: str
    patient_position: str

    @property
    def vector(self) -> np.ndarray:
        """(lateral, vertical, longitudinal) in mm."""
        return np.array([self.lateral_mm, self.vertical_mm, self.longitudinal_mm])

    def to_dict(self) -> dict[str, object]:
        return {"lateral_mm": self.lateral_mm, "vertical_mm": self.vertical_mm,
                "longitudinal_mm": self.longitudinal_mm, "source": self.source,
                "patient_position": self.patient_position}


def read_table_position(dataset: Dataset) -> TablePosition | None:
    """The table position a run records (GE's private block), or None."""
    try:
        block = dataset.private_block(0x0019, GE_CREATOR)
    except KeyError:
        return None
    values = {}
    for axis, element in GE_ELEMENTS.items():
        if element not in block:
            return None
        try:
            values[axis] = float(block[element].value)
        except (TypeError, ValueError):
            return None
    if not all(np.isfinite(list(values.values()))):
        return None
    source = f"{GE_CREATOR} (0019,{block.block_start >> 8:02X}21-23)"
    return TablePosition(**values, source=source,
                         patient_position=str(dataset.get("PatientPosition", "") or ""))


@dataclass(frozen=True)
class TableMotion:
    """The table's move between two runs and the shift it gives view 2's C-arm (LPS mm;
    None when the patient position's axes are not known)."""

    first: TablePosition
    second: TablePosition
    shift_mm: np.ndarray | None

    @property
    def moved(self) -> bool:
        return bool(np.any(np.abs(self.second.vector - self.first.vector) > STILL_MM))

    def note(self) -> str:
        """One line for the log and the report."""
        move = self.second.vector - self.first.vector
        text = ("the table moved between the runs by (lateral, vertical, longitudinal) = ("
                + ", ".join(f"{v:+.1f}" for v in move) + f") mm ({self.second.source})")
        if self.shift_mm is None:
            positions = sorted({self.first.patient_position, self.second.patient_position})
            return (text + f"; not applied: the table axes are known for "
                    f"{', '.join(KNOWN_POSITIONS)} only, the runs say "
                    f"{', '.join(p or '(none)' for p in positions)} (give view 2's "
                    "correction_translation_mm with --geometry)")
        return text + "; view 2's C-arm is shifted by (" + ", ".join(
            f"{v:+.1f}" for v in self.shift_mm) + ") mm (LPS) to match"

    def to_dict(self) -> dict[str, object]:
        return {"view1": self.first.to_dict(), "view2": self.second.to_dict(),
                "applied_shift_mm": None if self.shift_mm is None
                else np.round(self.shift_mm, 3).tolist()}


def table_motion(first: TablePosition | None, second: TablePosition | None
                 ) -> TableMotion | None:
    """The table's move from run 1 to run 2, or None when either run does not record it."""
    if first is None or second is None:
        return None
    known = {first.patient_position, second.patient_position} <= set(KNOWN_POSITIONS)
    shift = -(second.vector - first.vector) if known else None
    return TableMotion(first, second, shift)
