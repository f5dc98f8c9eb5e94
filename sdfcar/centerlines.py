"""Ground-truth centrelines with radii: the JSON file format and length-weighted samples.

File format (``--centerlines`` of ``sdfcar evaluate``; UTF-8 JSON)::

    {"vessels": [{"name": "LAD", "parent": "LM",
                  "points": [[x, y, z], ...],   # patient LPS mm, in order along the vessel
                  "radii": [r, ...]}, ...]}     # mm, one per point (lumen-equivalent radius)

``name`` and ``parent`` are optional (informative only); every vessel needs at least two
points and as many positive radii as points. A vessel is the polyline through its points.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdfcar.errors import bad_input

#: Polylines are resampled this finely (mm) before they are matched, so distances to the
#: point set are within this of distances to the curve.
DENSE_STEP_MM = 0.2


@dataclass(frozen=True)
class Centerlines:
    """Centreline samples: points ``(N, 3)`` (LPS mm), local radii ``(N,)`` (mm) and the
    length each sample stands for ``(N,)`` (mm; their sum is the total length)."""

    points: np.ndarray
    radii: np.ndarray
    weights: np.ndarray

    @property
    def length_mm(self) -> float:
        """Total centreline length (mm)."""
        return float(self.weights.sum())


def resample_polyline(points: np.ndarray, radii: np.ndarray, step: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform resampling of one polyline at most ``step`` apart: points, radii, weights
    (half of each adjacent piece's length)."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    s = np.linspace(0.0, arc[-1], max(int(np.ceil(arc[-1] / step)), 1) + 1)
    dense = np.stack([np.interp(s, arc, points[:, d]) for d in range(3)], axis=1)
    pieces = np.diff(s)
    weights = np.zeros(len(s))
    weights[:-1] += pieces / 2
    weights[1:] += pieces / 2
    return dense, np.interp(s, arc, radii), weights


def from_polylines(vessels: Iterable[tuple[np.ndarray, np.ndarray]],
                   step: float = DENSE_STEP_MM) -> Centerlines:
    """Length-weighted samples of polylines ``(points (K, 3), radii (K,))``."""
    parts = [resample_polyline(np.asarray(p, float), np.asarray(r, float), step)
             for p, r in vessels]
    if not parts:
        return Centerlines(np.zeros((0, 3)), np.zeros(0), np.zeros(0))
    return Centerlines(*(np.concatenate(column) for column in zip(*parts)))


def to_json(vessels: Sequence[tuple[str, str | None, np.ndarray, np.ndarray]]) -> dict:
    """The file format's object for ``(name, parent, points, radii)`` vessels."""
    return {"vessels": [{"name": name, "parent": parent,
                         "points": np.round(np.asarray(points, float), 4).tolist(),
                         "radii": np.round(np.asarray(radii, float), 4).tolist()}
                        for name, parent, points, radii in vessels]}


def _vessel(entry: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(entry, dict) or "points" not in entry or "radii" not in entry:
        raise bad_input(where, "expected an object with 'points' and 'radii'")
    try:
        points = np.asarray(entry["points"], dtype=float)
        radii = np.asarray(entry["radii"], dtype=float)
    except (TypeError, ValueError):
        raise bad_input(where, "points and radii must be numbers") from None
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
        raise bad_input(f"{where}.points", f"expected at least two [x, y, z] points, got shape "
                                      f"{points.shape}")
    if radii.shape != (len(points),) or not np.all(np.isfinite(points)) \
            or not np.all(np.isfinite(radii) & (radii > 0)):
        raise bad_input(f"{where}.radii", "expected one finite positive radius per finite point")
    return points, radii


def parse(data: Any, where: str = "centerlines") -> list[tuple[np.ndarray, np.ndarray]]:
    """Validated ``(points, radii)`` per vessel of a file-format object."""
    if not isinstance(data, dict) or not isinstance(data.get("vessels"), list) \
            or not data["vessels"]:
        raise bad_input(where, "expected {\"vessels\": [...]} with at least one vessel")
    return [_vessel(entry, f"{where}.vessels[{n}]") for n, entry in enumerate(data["vessels"])]


def load(path: str | Path) -> Centerlines:
    """Read a centreline file (one-line error naming the file when it is not valid)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = f"not a readable JSON centreline file ({error.__class__.__name__})"
        raise bad_input(str(path), reason) from None
    return from_polylines(parse(data, str(path)))


def segments_json(segments: Iterable[Any]) -> dict:
    """The file format's object for vessels with ``name``, ``parent``, ``points`` and
    ``radii`` attributes (:class:`sdfcar.geometry.tubes.Segment`)."""
    return to_json([(s.name, s.parent, s.points, s.radii) for s in segments])
