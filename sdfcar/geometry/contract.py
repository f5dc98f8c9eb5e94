"""C-arm view geometry and volume grids in patient LPS millimetres.

The conventions are the project's geometry contract (``DESIGN.md``): isocenter at the
origin, x to the patient's left, y posterior, z superior. For one view

    R   = Rz(primary) @ Rx(-secondary)
    src = R @ (0, SOD, 0)            det = R @ (0, SOD - SID, 0)
    u   = R @ (1, 0, 0)  (columns)   v   = R @ (0, 0, -1)  (rows)

and pixel ``(r, c)`` has its centre at
``det + (c - (cols-1)/2 + off_c/dc) dc u + (r - (rows-1)/2 + off_r/dr) dr v``.
Angles are exact: there is no half-angle partition as in the NeCA/ODL code.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from sdfcar.errors import InputError, bad_input
from sdfcar.geometry.rotations import (rotation_vector, rotation_vector_of, rotation_x,
                                       rotation_z)

VIEW_KEYS = (
    "primary_angle_deg",
    "secondary_angle_deg",
    "source_to_detector_mm",
    "source_to_isocenter_mm",
    "detector_shape",
    "detector_spacing_mm",
    "detector_offset_mm",
)
#: Optional fields of a view: a rigid motion of the whole C-arm about the isocenter, found by
#: self-calibration (or injected by a benchmark); absent or zero for a view as acquired.
CORRECTION_KEYS = ("correction_rotation_deg", "correction_translation_mm")
VOLUME_KEYS = ("shape", "spacing_mm", "center_mm", "direction")
CASE_KEYS = ("views", "volume")
NUM_VIEWS = 2
#: Views closer than this (degrees between the beams) are reported as poorly separated.
MIN_VIEW_SEPARATION_DEG = 20.0


# ----------------------------------------------------------------------------- validation


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise bad_input(where, f"expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise bad_input(where, f"expected a finite number, got {value}")
    return value


def _positive(value: Any, where: str) -> float:
    value = _number(value, where)
    if value <= 0:
        raise bad_input(where, f"expected a positive number, got {value:g}")
    return value


def _angle(value: Any, where: str) -> float:
    value = _number(value, where)
    if not -180.0 <= value <= 180.0:
        raise bad_input(where, f"expected an angle in [-180, 180] degrees, got {value:g}")
    return value


def _vector(value: Any, length: int, where: str, item=_number) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise bad_input(where, f"expected a list of {length} numbers, got {value!r}")
    if len(value) != length:
        raise bad_input(where, f"expected {length} values, got {len(value)}")
    return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))


def _count(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise bad_input(where, f"expected an integer, got {value!r}")
    if value < minimum:
        raise bad_input(where, f"expected an integer >= {minimum}, got {value}")
    return int(value)


def _check_keys(data: Any, allowed: Sequence[str], required: Sequence[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise bad_input(where, f"expected an object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise bad_input(f"{where}.{unknown[0]}" if where else unknown[0],
                        f"unknown key (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in data:
            raise bad_input(f"{where}.{key}" if where else key, "missing required field")


# ----------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ViewGeometry:
    """One C-arm view: gantry angles, distances and the flat-panel detector.

    Attributes follow the DICOM XA tags: ``primary_angle_deg`` (LAO +, RAO -; 0018,1510),
    ``secondary_angle_deg`` (CRA +, CAU -; 0018,1511), ``source_to_detector_mm`` (SID;
    0018,1110), ``source_to_isocenter_mm`` (SOD; 0018,1111), ``detector_shape`` (rows, cols),
    ``detector_spacing_mm`` (row, col; ImagerPixelSpacing 0018,1164) and
    ``detector_offset_mm`` (row, col principal-point shift).

    ``correction_rotation_deg`` (a rotation vector, degrees) and
    ``correction_translation_mm`` move the whole C-arm (source and detector) rigidly: first
    rotated about the isocenter, then shifted. Self-calibration finds them; a view as acquired
    has none. Moving the C-arm by ``(Q, q)`` images the tree as the nominal view would image it
    moved by the inverse, ``x -> Q^T (x - q)``.
    """

    primary_angle_deg: float
    secondary_angle_deg: float
    source_to_detector_mm: float
    source_to_isocenter_mm: float
    detector_shape: tuple[int, int]
    detector_spacing_mm: tuple[float, float]
    detector_offset_mm: tuple[float, float] = (0.0, 0.0)
    correction_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    correction_translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        validated = ViewGeometry._validated(self.__dict__, "view")
        for key, value in validated.items():
            object.__setattr__(self, key, value)

    @staticmethod
    def _validated(data: Mapping[str, Any], where: str) -> dict[str, Any]:
        out = {
            "primary_angle_deg": _angle(data["primary_angle_deg"], f"{where}.primary_angle_deg"),
            "secondary_angle_deg": _angle(
                data["secondary_angle_deg"], f"{where}.secondary_angle_deg"
            ),
            "source_to_detector_mm": _positive(
                data["source_to_detector_mm"], f"{where}.source_to_detector_mm"
            ),
            "source_to_isocenter_mm": _positive(
                data["source_to_isocenter_mm"], f"{where}.source_to_isocenter_mm"
            ),
            "detector_shape": _vector(
                data["detector_shape"], 2, f"{where}.detector_shape", _count
            ),
            "detector_spacing_mm": _vector(
                data["detector_spacing_mm"], 2, f"{where}.detector_spacing_mm", _positive
            ),
            "detector_offset_mm": _vector(
                data.get("detector_offset_mm", (0.0, 0.0)), 2, f"{where}.detector_offset_mm"
            ),
            **{key: _vector(data.get(key, (0.0, 0.0, 0.0)), 3, f"{where}.{key}")
               for key in CORRECTION_KEYS},
        }
        if out["source_to_isocenter_mm"] >= out["source_to_detector_mm"]:
            raise bad_input(
                f"{where}.source_to_isocenter_mm",
                "must be less than source_to_detector_mm "
                f"(got {out['source_to_isocenter_mm']:g} >= {out['source_to_detector_mm']:g})",
            )
        return out

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, where: str = "view") -> ViewGeometry:
        """Validate a JSON object; errors name the field, e.g. ``views[1].detector_shape``."""
        required = [k for k in VIEW_KEYS if k != "detector_offset_mm"]
        _check_keys(data, VIEW_KEYS + CORRECTION_KEYS, required, where)
        return cls(**cls._validated(data, where))

    @classmethod
    def from_dicom_tags(cls, tags: Mapping[str, Any], where: str = "DICOM",
                        overrides: Mapping[str, Any] | None = None) -> ViewGeometry:
        """Build a view from XA tag values keyed by DICOM keyword or ``"gggg,eeee"``.

        Reads PositionerPrimaryAngle, PositionerSecondaryAngle, DistanceSourceToDetector,
        DistanceSourceToPatient (DistanceSourceToIsocenter, 0018,9402, of Enhanced XA when
        it is absent), Rows, Columns and ImagerPixelSpacing (PixelSpacing is used, with a
        warning, when ImagerPixelSpacing is absent: it may be calibrated to the isocenter
        rather than the detector). ``overrides`` maps contract fields (``primary_angle_deg``,
        ..., ``detector_offset_mm``) to values that replace the tags or stand in for missing
        ones; a missing tag without an override is an error naming the tag and the field.
        """
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(VIEW_KEYS))
        if unknown:
            raise bad_input(f"{where}: geometry override {unknown[0]}",
                            f"unknown field (allowed: {', '.join(VIEW_KEYS)})")
        lookup = _DicomLookup(tags, where)

        def value(name: str, *keywords: str) -> Any:
            if name in overrides:
                return overrides[name]
            for keyword in keywords:
                found = lookup.get(keyword, required=False)
                if found is not None:
                    return found
            tag = _DicomLookup.TAGS[keywords[0]]
            raise bad_input(f"{where}: {keywords[0]} ({tag[:4]},{tag[4:]})",
                            f"missing tag (give {name} as a geometry override)")

        spacing = overrides.get("detector_spacing_mm")
        if spacing is None:
            spacing = lookup.get("ImagerPixelSpacing", required=False)
        if spacing is None:
            spacing = value("detector_spacing_mm", "ImagerPixelSpacing", "PixelSpacing")
            warnings.warn(
                f"{where}: ImagerPixelSpacing (0018,1164) missing; using PixelSpacing "
                "(0028,0030), which may be calibrated at the isocenter",
                stacklevel=2,
            )
        data = {
            "primary_angle_deg": value("primary_angle_deg", "PositionerPrimaryAngle"),
            "secondary_angle_deg": value("secondary_angle_deg", "PositionerSecondaryAngle"),
            "source_to_detector_mm": value("source_to_detector_mm", "DistanceSourceToDetector"),
            "source_to_isocenter_mm": value("source_to_isocenter_mm", "DistanceSourceToPatient",
                                            "DistanceSourceToIsocenter"),
            "detector_shape": overrides.get("detector_shape") or [
                value("detector_shape", "Rows"), value("detector_shape", "Columns")],
            "detector_spacing_mm": spacing,
        }
        if "detector_offset_mm" in overrides:
            data["detector_offset_mm"] = overrides["detector_offset_mm"]
        return cls.from_dict(data, where)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (inverse of :meth:`from_dict`)."""
        return {
            "primary_angle_deg": self.primary_angle_deg,
            "secondary_angle_deg": self.secondary_angle_deg,
            "source_to_detector_mm": self.source_to_detector_mm,
            "source_to_isocenter_mm": self.source_to_isocenter_mm,
            "detector_shape": list(self.detector_shape),
            "detector_spacing_mm": list(self.detector_spacing_mm),
            "detector_offset_mm": list(self.detector_offset_mm),
            **{key: list(getattr(self, key)) for key in CORRECTION_KEYS if self.is_corrected},
        }

    @property
    def is_corrected(self) -> bool:
        """Whether the view carries a rigid correction (see the class docstring)."""
        return any(self.correction_rotation_deg) or any(self.correction_translation_mm)

    def moved(self, rotation_deg: Sequence[float], translation_mm: Sequence[float]
              ) -> ViewGeometry:
        """This view with its C-arm moved once more: rotated by the rotation vector
        ``rotation_deg`` about the isocenter, then shifted by ``translation_mm``."""
        turn = rotation_vector(rotation_deg)
        rotation = turn @ rotation_vector(self.correction_rotation_deg)
        shift = turn @ np.asarray(self.correction_translation_mm) + np.asarray(translation_mm)
        return replace(self, correction_rotation_deg=tuple(rotation_vector_of(rotation)),
                       correction_translation_mm=tuple(shift))

    # -- derived geometry ----------------------------------------------------------------

    @property
    def rotation(self) -> np.ndarray:
        """Gantry rotation ``Rz(primary) @ Rx(-secondary)`` (3x3), after the correction's."""
        gantry = rotation_z(self.primary_angle_deg) @ rotation_x(-self.secondary_angle_deg)
        if not any(self.correction_rotation_deg):
            return gantry
        return rotation_vector(self.correction_rotation_deg) @ gantry

    @property
    def source(self) -> np.ndarray:
        """X-ray source position (LPS mm)."""
        return self.rotation @ np.array([0.0, self.source_to_isocenter_mm, 0.0]) \
            + np.asarray(self.correction_translation_mm)

    @property
    def detector_center(self) -> np.ndarray:
        """Centre of the detector panel, before the principal-point offset (LPS mm)."""
        sod, sid = self.source_to_isocenter_mm, self.source_to_detector_mm
        return self.rotation @ np.array([0.0, sod - sid, 0.0]) \
            + np.asarray(self.correction_translation_mm)

    @property
    def column_direction(self) -> np.ndarray:
        """Unit vector ``u`` along increasing column index."""
        return self.rotation @ np.array([1.0, 0.0, 0.0])

    @property
    def row_direction(self) -> np.ndarray:
        """Unit vector ``v`` along increasing row index."""
        return self.rotation @ np.array([0.0, 0.0, -1.0])

    @property
    def beam_direction(self) -> np.ndarray:
        """Unit vector from the source to the detector centre."""
        return self.rotation @ np.array([0.0, -1.0, 0.0])

    def pixel_points(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """LPS positions ``(N, 3)`` of the detector points ``(rows[n], cols[n])`` (pixel
        indices, fractional allowed; integers are pixel centres)."""
        n_rows, n_cols = self.detector_shape
        dr, dc = self.detector_spacing_mm
        off_r, off_c = self.detector_offset_mm
        a_v = (np.asarray(rows, float) - (n_rows - 1) / 2.0) * dr + off_r
        a_u = (np.asarray(cols, float) - (n_cols - 1) / 2.0) * dc + off_c
        return (self.detector_center + a_v[:, None] * self.row_direction
                + a_u[:, None] * self.column_direction)

    def pixel_centers(self) -> np.ndarray:
        """LPS positions of every pixel centre, shape ``(rows, cols, 3)``."""
        rows, cols = np.indices(self.detector_shape)
        return self.pixel_points(rows.ravel(), cols.ravel()).reshape(*self.detector_shape, 3)

    def ray_directions(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Unit directions ``(N, 3)`` from the source through the detector points
        ``(rows[n], cols[n])``: the one ray model of the projector and the tube integrals."""
        rays = self.pixel_points(rows, cols) - self.source
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    def pixel_rays(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """:meth:`ray_directions` through the centres of pixels ``(rows, cols)`` (integer
        indices), looked up in a table of every pixel's ray computed once per view: the
        tube tracer and the tube tree's renderer ask for the same pixels thousands of
        times."""
        return self._pixel_rays[rows, cols]

    @cached_property
    def _pixel_rays(self) -> np.ndarray:
        rows, cols = np.indices(self.detector_shape)
        return self.ray_directions(rows.ravel(), cols.ravel()).reshape(*self.detector_shape, 3)

    @property
    def projection_matrix(self) -> np.ndarray:
        """3x4 matrix ``P`` with ``P @ (x, y, z, 1) ~ (col, row, 1)`` in pixel units."""
        return self._projection.copy()

    @cached_property
    def _projection(self) -> np.ndarray:
        """:attr:`projection_matrix`, computed once: the tube tracer projects points some
        10^5 times, and rebuilding the matrix took most of that time."""
        n_rows, n_cols = self.detector_shape
        dr, dc = self.detector_spacing_mm
        off_r, off_c = self.detector_offset_mm
        sid = self.source_to_detector_mm
        camera = np.stack([self.column_direction, self.row_direction, self.beam_direction])
        extrinsic = np.concatenate([camera, -(camera @ self.source)[:, None]], axis=1)
        intrinsic = np.array(
            [
                [sid / dc, 0.0, (n_cols - 1) / 2.0 - off_c / dc],
                [0.0, sid / dr, (n_rows - 1) / 2.0 - off_r / dr],
                [0.0, 0.0, 1.0],
            ]
        )
        return intrinsic @ extrinsic

    def project_points(self, points: np.ndarray) -> np.ndarray:
        """Pinhole projection of LPS points ``(..., 3)`` to ``(..., 2)`` as (row, col)."""
        points = np.asarray(points, dtype=float)
        homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
        projected = homogeneous @ self._projection.T
        col = projected[..., 0] / projected[..., 2]
        row = projected[..., 1] / projected[..., 2]
        return np.stack([row, col], axis=-1)

    def angle_between(self, other: ViewGeometry) -> float:
        """Angle in degrees between the two beam directions."""
        cos = float(np.clip(self.beam_direction @ other.beam_direction, -1.0, 1.0))
        return math.degrees(math.acos(cos))


class _DicomLookup:
    """Reads tag values by keyword or by ``"gggg,eeee"`` / ``"(gggg,eeee)"`` / ``"ggggeeee"``."""

    TAGS = {
        "PositionerPrimaryAngle": "00181510",
        "PositionerSecondaryAngle": "00181511",
        "DistanceSourceToDetector": "00181110",
        "DistanceSourceToPatient": "00181111",
        "DistanceSourceToIsocenter": "00189402",
        "ImagerPixelSpacing": "00181164",
        "PixelSpacing": "00280030",
        "Rows": "00280010",
        "Columns": "00280011",
    }

    def __init__(self, tags: Mapping[str, Any], where: str) -> None:
        self.where = where
        self.values: dict[str, Any] = {}
        for key, value in tags.items():
            normal = str(key).strip().strip("()").replace(",", "").replace(" ", "").upper()
            self.values[normal] = value
            self.values[str(key)] = value

    def get(self, keyword: str, required: bool = True) -> Any:
        tag = self.TAGS[keyword]
        for key in (keyword, tag):
            value = self.values.get(key)
            if value is not None and value != "":
                return self._numeric(value, f"{self.where}: {keyword} ({tag[:4]},{tag[4:]})")
        if required:
            raise bad_input(f"{self.where}: {keyword} ({tag[:4]},{tag[4:]})", "missing tag")
        return None

    @staticmethod
    def _numeric(value: Any, where: str) -> Any:
        """DICOM DS/IS values arrive as strings, numbers or multi-valued sequences."""
        if isinstance(value, str) and "\\" in value:
            value = value.split("\\")
        if isinstance(value, (list, tuple)):
            return [_DicomLookup._numeric(v, where) for v in value]
        try:
            return float(value) if isinstance(value, str) else value
        except ValueError:
            raise bad_input(where, f"expected a number, got {value!r}") from None


# ----------------------------------------------------------------------------- volume grid


@dataclass(frozen=True)
class VolumeGrid:
    """A regular voxel grid in LPS: array index ``(i, j, k)`` maps to
    ``origin + direction @ (spacing * (i, j, k))``; ``center_mm`` is the grid's middle.

    ``direction`` columns are the LPS unit vectors of the i, j, k axes (identity: i runs to
    the left, j posterior, k superior).
    """

    shape: tuple[int, int, int] = (128, 128, 128)
    spacing_mm: tuple[float, float, float] = (0.8, 0.8, 0.8)
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        validated = VolumeGrid._validated(self.__dict__, "volume")
        for key, value in validated.items():
            object.__setattr__(self, key, value)

    @staticmethod
    def _validated(data: Mapping[str, Any], where: str) -> dict[str, Any]:
        out = {
            "shape": _vector(data["shape"], 3, f"{where}.shape", lambda v, w: _count(v, w, 2)),
            "spacing_mm": _vector(data["spacing_mm"], 3, f"{where}.spacing_mm", _positive),
            "center_mm": _vector(data["center_mm"], 3, f"{where}.center_mm"),
            "direction": _vector(np.ravel(data["direction"]).tolist(), 9, f"{where}.direction"),
        }
        matrix = np.array(out["direction"]).reshape(3, 3)
        if not np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-4):
            raise bad_input(f"{where}.direction", "expected an orthonormal 3x3 matrix (row-major)")
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "volume") -> VolumeGrid:
        """Validate a JSON object; missing keys take the defaults (128^3, 0.8 mm, origin)."""
        _check_keys(data, VOLUME_KEYS, (), where)
        defaults = cls()
        merged = {key: data.get(key, getattr(defaults, key)) for key in VOLUME_KEYS}
        return cls(**cls._validated(merged, where))

    @classmethod
    def from_origin(cls, shape: Sequence[int], spacing_mm: Sequence[float],
                    origin_mm: Sequence[float], direction: Sequence[float] | None = None
                    ) -> VolumeGrid:
        """Build a grid from its first voxel's centre (ITK/NIfTI style origin)."""
        direction = np.eye(3).ravel() if direction is None else np.ravel(direction)
        matrix = np.asarray(direction, float).reshape(3, 3)
        half = (np.asarray(shape, float) - 1.0) / 2.0 * np.asarray(spacing_mm, float)
        center = np.asarray(origin_mm, float) + matrix @ half
        return cls(tuple(int(s) for s in shape), tuple(float(s) for s in spacing_mm),
                   tuple(float(c) for c in center), tuple(float(d) for d in matrix.ravel()))

    def refined(self, factor: int) -> VolumeGrid:
        """The same field of view with ``factor`` times as many voxels along each axis."""
        return VolumeGrid(tuple(n * factor for n in self.shape),
                          tuple(h / factor for h in self.spacing_mm), self.center_mm,
                          self.direction)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping; ``direction`` only when it is not the identity."""
        out: dict[str, Any] = {
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "center_mm": list(self.center_mm),
        }
        if not np.allclose(self.direction_matrix, np.eye(3)):
            out["direction"] = list(self.direction)
        return out

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines as a 3x3 matrix (columns are the i, j, k axes in LPS)."""
        return np.asarray(self.direction, float).reshape(3, 3)

    @property
    def index_to_lps(self) -> np.ndarray:
        """Linear part of the index -> LPS map (direction scaled by spacing)."""
        return self.direction_matrix * np.asarray(self.spacing_mm, float)[None, :]

    @property
    def origin_mm(self) -> np.ndarray:
        """LPS centre of voxel (0, 0, 0)."""
        half = (np.asarray(self.shape, float) - 1.0) / 2.0
        return np.asarray(self.center_mm, float) - self.index_to_lps @ half

    @property
    def affine(self) -> np.ndarray:
        """4x4 homogeneous index -> LPS matrix."""
        out = np.eye(4)
        out[:3, :3] = self.index_to_lps
        out[:3, 3] = self.origin_mm
        return out

    def lps_to_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous voxel indices of LPS points ``(..., 3)``."""
        inverse = np.linalg.inv(self.index_to_lps)
        return (np.asarray(points, float) - self.origin_mm) @ inverse.T

    def voxel_centers(self) -> np.ndarray:
        """LPS centres of all voxels, shape ``shape + (3,)``."""
        axes = [np.arange(n, dtype=float) for n in self.shape]
        index = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        return index @ self.index_to_lps.T + self.origin_mm


# ----------------------------------------------------------------------------- case files


@dataclass(frozen=True)
class CaseGeometry:
    """The contents of a case's ``geometry.json``: two views and the reconstruction grid."""

    views: tuple[ViewGeometry, ...]
    volume: VolumeGrid = field(default_factory=VolumeGrid)

    @classmethod
    def from_dict(cls, data: Any, where: str = "geometry") -> CaseGeometry:
        """Validate ``{"views": [view, view], "volume": {...}}`` (volume optional)."""
        prefix = f"{where}: " if where else ""
        try:
            _check_keys(data, CASE_KEYS, ("views",), "")
            views = data["views"]
            if not isinstance(views, list) or len(views) != NUM_VIEWS:
                raise bad_input("views", f"expected a list of {NUM_VIEWS} views")
            parsed = tuple(ViewGeometry.from_dict(v, f"views[{i}]") for i, v in enumerate(views))
            volume = VolumeGrid.from_dict(data.get("volume", {}), "volume")
        except InputError as error:
            raise InputError(prefix + str(error)) from None
        return cls(parsed, volume)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (inverse of :meth:`from_dict`)."""
        return {"views": [v.to_dict() for v in self.views], "volume": self.volume.to_dict()}

    @classmethod
    def load(cls, path: str | Path) -> CaseGeometry:
        """Read and validate a ``geometry.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise bad_input(str(path), "file not found")
        try:
            data = json.loads(path.read_text(), parse_constant=_reject_constant)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise bad_input(str(path), f"not valid JSON ({error})") from None
        except ValueError as error:
            raise bad_input(str(path), str(error)) from None
        return cls.from_dict(data, str(path))

    def to_json(self) -> str:
        """Pretty-printed JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


#: The reference clinical geometry of DESIGN.md (the seed's two views, 512^2 at 0.278 mm).
REFERENCE_VIEWS = (
    ViewGeometry(29.7, 0.1, 993.0, 757.06, (512, 512), (0.278, 0.278)),
    ViewGeometry(2.0, 29.0, 1055.0, 756.99, (512, 512), (0.278, 0.278)),
)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed (expected finite numbers)")
