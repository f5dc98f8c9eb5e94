"""Geometry given by hand: contract fields that replace or fill the XA geometry tags."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdfcar.errors import bad_input
from sdfcar.geometry import CORRECTION_KEYS, VIEW_KEYS, VolumeGrid

#: Contract fields a geometry override may set (the detector shape comes from the image),
#: the C-arm correction included (e.g. view 2's shift when the table moved between runs).
OVERRIDE_KEYS = tuple(k for k in VIEW_KEYS if k != "detector_shape") + CORRECTION_KEYS

def checked_overrides(overrides: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """A copy of ``overrides`` whose keys are all :data:`OVERRIDE_KEYS`."""
    overrides = dict(overrides or {})
    for key in overrides:
        if key == "detector_shape":
            raise bad_input(f"{where} detector_shape",
                            "comes from the image (Rows, Columns) and cannot be overridden")
        if key not in OVERRIDE_KEYS:
            raise bad_input(f"{where} {key}",
                            f"unknown field (allowed: {', '.join(OVERRIDE_KEYS)})")
    return overrides


@dataclass(frozen=True)
class GeometryOverrides:
    """Geometry given by hand for a pair of runs: contract fields per view, and the volume."""

    views: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    volume: VolumeGrid | None = None


def parse_geometry_overrides(data: Any, where: str = "--geometry") -> GeometryOverrides:
    """Validate a geometry-override object.

    Contract view fields at the top level apply to both views; ``"views": [{...}, {...}]``
    gives per-view fields (they win); ``"volume"`` is the reconstruction grid as in
    ``geometry.json``. Example: ``{"source_to_isocenter_mm": 760, "views": [{},
    {"primary_angle_deg": -30}]}``."""
    if not isinstance(data, Mapping):
        raise bad_input(where, f"expected a JSON object, got {type(data).__name__}")
    shared = {k: v for k, v in data.items() if k not in ("views", "volume")}
    shared = checked_overrides(shared, where)
    views = data.get("views", [{}, {}])
    if not (isinstance(views, list) and len(views) == 2
            and all(isinstance(v, Mapping) for v in views)):
        raise bad_input(f"{where}.views", "expected a list of two objects")
    first, second = ({**shared, **checked_overrides(v, f"{where}.views[{i}]")}
                     for i, v in enumerate(views))
    volume = None
    if "volume" in data:
        volume = VolumeGrid.from_dict(data["volume"], f"{where}.volume")
    return GeometryOverrides((first, second), volume)


def load_geometry_overrides(path: str | Path) -> GeometryOverrides:
    """Read a geometry-override JSON file (see :func:`parse_geometry_overrides`)."""
    return parse_geometry_overrides(_read_json(path), str(path))


def _read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise bad_input(str(path), "file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_input(str(path), f"not valid JSON ({error})") from None


def load_view_overrides(path: str | Path) -> dict[str, Any]:
    """Read a JSON object of contract fields for a single view (``extract-vessels``)."""
    data = _read_json(path)
    if not isinstance(data, Mapping):
        raise bad_input(str(path), f"expected a JSON object, got {type(data).__name__}")
    return checked_overrides(data, str(path))
