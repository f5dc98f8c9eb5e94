"""Quantitative coronary analysis of one vessel's diameter profile, and bifurcation angles.

Definitions (``docs/qca.md`` has them with the reasons), over a vessel's samples at most
0.5 mm apart, arc length ``s`` from its proximal end, diameter ``d = 2 r``:

* **length**: the centreline's arc length; **tortuosity**: length / chord (first to last
  point; 1 = straight).
* **proximal / distal radius**: mean radius over the first / last :data:`END_SEGMENT_MM`;
  **mean radius**: the length-weighted mean; **min radius**: the smallest radius anywhere.
* **analysed range**: the vessel without :data:`END_MARGIN_MM` at each end (the model's end
  caps and the junction); the whole vessel when it is shorter than 4 margins.
* **MLD** (minimal lumen diameter): the smallest diameter in the analysed range, and its
  arc position.
* **reference diameter**: a robust straight-line fit ``d_ref(s) = a + b s`` of the healthy
  taper over the analysed range: Theil-Sen start, then iteratively reweighted least squares
  with Tukey's biweight (c = 4.685 robust scales; the scale is 1.4826 MAD of the residuals,
  at least :data:`MIN_SCALE_MM`), so the lesion's samples get weight 0. The reference
  diameter is ``d_ref`` at the MLD's position.
* **percent diameter stenosis**: ``100 (1 - MLD / d_ref(s_MLD))``.
* **lesion length**: the length of the contiguous stretch around the MLD where
  ``d(s) < 0.7 d_ref(s)`` (more than 30 % diameter stenosis), its ends interpolated between
  samples; **severe lesion length** the same with ``0.5`` (more than 50 %). 0 when the MLD
  is not below the threshold.
* **bifurcation angles**: per branch, the angle between the branch's direction (its first
  point to the point :data:`ARM_MM` along it) and the parent's direction from the junction
  :data:`ARM_MM` distally (``angle_distal_deg``, 0 = straight on) and proximally
  (``angle_proximal_deg``, 180 = straight on); None where less than :data:`MIN_ARM_MM` of
  the parent lies on that side; ``angle_sibling_deg``: per other branch leaving the same
  parent within :data:`SIBLING_MM` of the junction (a trifurcation), the angle between the
  two branches' directions (empty when there is none).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import theilslopes

from sdfcar.analysis.tree import CentrelineTree, Junction, Vessel

#: Length (mm) at each end over which the proximal / distal radius is averaged.
END_SEGMENT_MM = 2.0
#: Length (mm) left out at each end when looking for the MLD and fitting the reference.
END_MARGIN_MM = 1.0
#: Tukey biweight tuning constant (95 % efficiency at the normal distribution).
TUKEY_C = 4.685
#: Floor of the robust residual scale (mm of diameter): a perfectly straight taper would
#: otherwise give every point off the line weight 0.
MIN_SCALE_MM = 0.05
REWEIGHTING_STEPS = 30
#: Diameter fractions of the reference that bound a lesion (lesion, severe lesion).
LESION_FRACTION = 0.7
SEVERE_FRACTION = 0.5
#: Length (mm) of the direction arms of bifurcation angles, and the shortest usable arm.
ARM_MM = 5.0
MIN_ARM_MM = 1.0
#: Branches leaving one parent at most this far apart along it (mm) share a junction.
SIBLING_MM = 2.0

#: The per-vessel columns of the QCA table, in order (``qca.csv``).
COLUMNS = ("vessel", "parent", "source_name", "length_mm", "tortuosity",
           "radius_proximal_mm", "radius_distal_mm", "radius_mean_mm", "radius_min_mm",
           "mld_mm", "mld_position_mm", "reference_diameter_mm", "diameter_stenosis_pct",
           "lesion_length_mm", "lesion_start_mm", "lesion_end_mm", "severe_lesion_length_mm")


def reference_fit(arc: np.ndarray, diameter: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the robust reference line ``d_ref(s) = a + b s`` (module docstring)."""
    arc, diameter = np.asarray(arc, float), np.asarray(diameter, float)
    if len(arc) < 3 or np.ptp(arc) <= 0:
        return float(np.median(diameter)), 0.0
    slope, intercept = theilslopes(diameter, arc)[:2]
    for _ in range(REWEIGHTING_STEPS):
        residual = diameter - (intercept + slope * arc)
        scale = max(1.4826 * float(np.median(np.abs(residual - np.median(residual)))),
                    MIN_SCALE_MM)
        u = residual / (TUKEY_C * scale)
        weight = np.where(np.abs(u) < 1.0, (1.0 - u ** 2) ** 2, 0.0)
        if np.count_nonzero(weight) < 2 or np.ptp(arc[weight > 0]) <= 0:
            break
        new_slope, new_intercept = np.polyfit(arc, diameter, 1, w=np.sqrt(weight))
        converged = abs(new_slope - slope) * np.ptp(arc) + abs(new_intercept - intercept) < 1e-6
        slope, intercept = new_slope, new_intercept
        if converged:
            break
    return float(intercept), float(slope)


def lesion_extent(arc: np.ndarray, diameter: np.ndarray, reference: np.ndarray,
                  fraction: float, centre: int) -> tuple[float, float] | None:
    """Start and end (arc, mm) of the contiguous stretch around sample ``centre`` where
    ``diameter < fraction * reference``, ends interpolated; None when ``centre`` is not in
    it or the stretch reaches the first or last sample."""
    excess = diameter / reference - fraction  # negative inside the lesion
    if excess[centre] >= 0:
        return None
    first, last = centre, centre
    while first > 0 and excess[first - 1] < 0:
        first -= 1
    while last < len(excess) - 1 and excess[last + 1] < 0:
        last += 1
    if first == 0 or last == len(excess) - 1:
        return None  # runs into the end of the range: a taper, not a bounded lesion
    return _crossing(arc, excess, first - 1, first), _crossing(arc, excess, last + 1, last)


def _crossing(arc: np.ndarray, excess: np.ndarray, outside: int, inside: int) -> float:
    """Where ``excess`` crosses 0 between samples ``outside`` (>= 0) and ``inside`` (< 0)."""
    t = excess[outside] / (excess[outside] - excess[inside])
    return float(arc[outside] + t * (arc[inside] - arc[outside]))


def analysed_range(arc: np.ndarray) -> np.ndarray:
    """Indices of the samples of the analysed range (module docstring)."""
    length = arc[-1]
    if length < 4 * END_MARGIN_MM:
        return np.arange(len(arc))
    return np.flatnonzero((arc >= END_MARGIN_MM) & (arc <= length - END_MARGIN_MM))


def vessel_qca(vessel: Vessel) -> dict[str, Any]:
    """The QCA table row of ``vessel`` (:data:`COLUMNS`; lengths and positions in mm)."""
    arc, radii = vessel.arc, vessel.radii
    length = float(arc[-1])
    chord = float(np.linalg.norm(vessel.points[-1] - vessel.points[0]))
    inside = analysed_range(arc)
    s, d = arc[inside], 2.0 * radii[inside]
    intercept, slope = reference_fit(s, d)
    reference = np.maximum(intercept + slope * s, 1e-6)
    centre = int(np.argmin(d))
    lesion = lesion_extent(s, d, reference, LESION_FRACTION, centre)
    severe = lesion_extent(s, d, reference, SEVERE_FRACTION, centre)
    return {
        "vessel": vessel.name, "parent": vessel.parent, "source_name": vessel.source_name,
        "length_mm": length,
        "tortuosity": length / chord if chord > 0 else None,
        "radius_proximal_mm": float(radii[arc <= min(END_SEGMENT_MM, length)].mean()),
        "radius_distal_mm": float(radii[arc >= max(length - END_SEGMENT_MM, 0.0)].mean()),
        "radius_mean_mm": _mean(arc, radii),
        "radius_min_mm": float(radii.min()),
        "mld_mm": float(d[centre]),
        "mld_position_mm": float(s[centre]),
        "reference_diameter_mm": float(reference[centre]),
        "diameter_stenosis_pct": float(100.0 * (1.0 - d[centre] / reference[centre])),
        "lesion_length_mm": lesion[1] - lesion[0] if lesion else 0.0,
        "lesion_start_mm": lesion[0] if lesion else None,
        "lesion_end_mm": lesion[1] if lesion else None,
        "severe_lesion_length_mm": severe[1] - severe[0] if severe else 0.0,
    }


def _mean(arc: np.ndarray, values: np.ndarray) -> float:
    """Length-weighted mean of ``values`` along ``arc`` (the plain mean when it has no
    length)."""
    if arc[-1] <= 0:
        return float(values.mean())
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(arc)) / arc[-1])


def bifurcation_angles(tree: CentrelineTree, junction: Junction) -> dict[str, Any]:
    """Angles (degrees) between a branch and its parent at their junction (module docstring)."""
    child, parent = tree.vessel(junction.child, "junction"), tree.vessel(junction.parent,
                                                                         "junction")
    branch = _direction(child, 0.0, ARM_MM)
    siblings = {other.child: _angle(branch, _direction(tree.vessel(other.child, "junction"),
                                                       0.0, ARM_MM))
                for other in tree.children(parent.name)
                if other.child != child.name and abs(other.arc_mm - junction.arc_mm) <= SIBLING_MM}
    return {"parent": parent.name, "branch": child.name,
            "junction_arc_mm": junction.arc_mm,
            "angle_distal_deg": _angle(branch, _direction(parent, junction.arc_mm,
                                                          junction.arc_mm + ARM_MM)),
            "angle_proximal_deg": _angle(branch, _direction(parent, junction.arc_mm,
                                                            junction.arc_mm - ARM_MM)),
            "angle_sibling_deg": siblings}


def _direction(vessel: Vessel, start_mm: float, end_mm: float) -> np.ndarray | None:
    """Unit vector from the point at ``start_mm`` to the point at ``end_mm`` (clipped to
    the vessel); None when less than :data:`MIN_ARM_MM` of it lies between them."""
    end_mm = float(np.clip(end_mm, 0.0, vessel.length_mm))
    if abs(end_mm - start_mm) < MIN_ARM_MM:
        return None
    step = vessel.point_at(end_mm) - vessel.point_at(start_mm)
    norm = float(np.linalg.norm(step))
    return step / norm if norm > 0 else None


def _angle(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    return math.degrees(math.acos(float(np.clip(a @ b, -1.0, 1.0))))
