"""Two-view reconstruction requests resolved against a flat studies folder.

MONAI Label's local datastore is one folder of images whose ids are the file names
without extension. A two-view case lives there as::

    <studies>/<case>_view1.nii.gz      view 1, the image id sent as ``image``
    <studies>/<case>_view2.nii.gz      view 2
    <studies>/<case>_geometry.json     the case's geometry.json (views + volume)

(any view format of :data:`sdfcar.io.images.VIEW_SUFFIXES`). A request may instead name
view 2 (``view2``: an image id) and give the geometry inline (``geometry``: the
geometry.json object). Reconstruction settings: ``preset``, ``iterations``, ``seed``,
``device``, ``overrides`` (a list of ``"key=value"`` like ``sdfcar reconstruct --set``) and
``output_spacing_mm`` (``--output-spacing``).

Every problem with a request raises :class:`RequestError` (status 404 for an unknown image
id, 400 otherwise) before anything is computed or written: ids that are not plain file
names, files that resolve outside the studies folder, parameters of the wrong type or
beyond the bounds of :mod:`sdfcar.apps.monailabel.bounds`, and geometries whose arrays
would not fit in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdfcar.apps.monailabel import bounds
from sdfcar.config import DEFAULT_PRESET, ReconstructionConfig, build_config
from sdfcar.device import resolve_device
from sdfcar.errors import InputError
from sdfcar.geometry import CaseGeometry
from sdfcar.io.images import VIEW_SUFFIXES, read_view
from sdfcar.io.limits import check_memory
from sdfcar.pipeline.inputs import from_arrays
from sdfcar.pipeline.problem import validate_views

#: Request key under which an app keeps the image id as the client sent it (MONAI Label
#: replaces ``image`` with a file path before the task sees the request).
IMAGE_ID_KEY = "sdfcar_image_id"
VIEW1_SUFFIX = "_view1"
VIEW2_SUFFIX = "_view2"
GEOMETRY_SUFFIX = "_geometry.json"
#: Reconstruction settings a request may carry, with the values used when it does not.
DEFAULT_SETTINGS: dict[str, Any] = {"preset": None, "iterations": None, "seed": None,
                                    "device": "auto", "overrides": [],
                                    "output_spacing_mm": None}


class RequestError(InputError):
    """A request to refuse; ``status`` is the HTTP status a server should answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TwoViewJob:
    """A validated request: the two views, their geometry and the settings to run with."""

    case: str
    view_ids: tuple[str, str]
    views: tuple[np.ndarray, np.ndarray]
    geometry: CaseGeometry
    geometry_source: str
    config: ReconstructionConfig


def resolve_request(request: Mapping[str, Any], studies_dir: str | Path) -> TwoViewJob:
    """Check a request against ``studies_dir`` and load what it names.

    Raises :class:`RequestError` for a missing, unknown or unsafe image id, a missing
    second view, bad geometry, views that do not match it, or bad settings."""
    studies = Path(studies_dir)
    view1 = check_image_id(request.get(IMAGE_ID_KEY, request.get("image")), "image")
    case = view1[: -len(VIEW1_SUFFIX)] if view1.endswith(VIEW1_SUFFIX) else view1
    view2 = _second_view(request.get("view2"), view1, case)
    paths = (find_image(studies, view1, "image"), find_image(studies, view2, "view2"))
    geometry, source = _geometry(request.get("geometry"), studies, case)
    config = _config(request, DEFAULT_PRESET)  # bad settings fail before the views are read
    try:
        check_memory(geometry, "geometry", dense=config.dense)
        views = validate_views([read_view(path) for path in paths], geometry)
        resolve_device(config.device)
    except RequestError:
        raise
    except InputError as error:
        raise RequestError(str(error)) from None
    preset = from_arrays(views, geometry).default_preset  # binary views: the mask preset
    if request.get("preset") is None and preset != config.preset:
        config = _config(request, preset)
    return TwoViewJob(case, (view1, view2), (views[0], views[1]), geometry, source, config)


def check_image_id(value: Any, field: str) -> str:
    """An image id must be a plain file name without extension (no folders, no ``..``, no
    control characters)."""
    if value is None or value == "":
        raise RequestError(f"{field}: missing image id")
    if not isinstance(value, str):
        raise RequestError(f"{field}: expected an image id (a file name), got "
                           f"{type(value).__name__}")
    if ("/" in value or "\\" in value or value.startswith(".") or len(value) > 255
            or any(ord(character) < 32 for character in value)):
        raise RequestError(f"{field}: {value!r} is not an image id (expected a file name "
                           "in the studies folder, without extension or folders)")
    return value


def find_image(studies: Path, image_id: str, field: str) -> Path:
    """The one file ``<studies>/<image_id><suffix>`` (404 when there is none)."""
    found = [studies / f"{image_id}{suffix}" for suffix in VIEW_SUFFIXES
             if (studies / f"{image_id}{suffix}").is_file()]
    if not found:
        raise RequestError(f"{field}: unknown image id {image_id!r} (no such image in the "
                           "studies folder)", status=404)
    if len(found) > 1:
        raise RequestError(f"{field}: image id {image_id!r} is ambiguous "
                           f"({', '.join(p.name for p in found)})")
    return inside(studies, found[0], field)


def inside(studies: Path, path: Path, field: str) -> Path:
    """``path`` itself, when it resolves (symbolic links followed) inside ``studies``."""
    if not path.resolve().is_relative_to(studies.resolve()):
        raise RequestError(f"{field}: {path.name} resolves outside the studies folder "
                           "(a symbolic link?); refusing to read it")
    return path


def _second_view(value: Any, view1: str, case: str) -> str:
    if value is None or value == "":
        if not view1.endswith(VIEW1_SUFFIX):
            raise RequestError(f"view2: missing second view (name the images "
                               f"<case>{VIEW1_SUFFIX} and <case>{VIEW2_SUFFIX}, or pass "
                               "the second image id as params.view2)")
        return case + VIEW2_SUFFIX
    view2 = check_image_id(value, "view2")
    if view2 == view1:
        raise RequestError(f"view2: {view2!r} is view 1 itself (two different views needed)")
    return view2


def _geometry(value: Any, studies: Path, case: str) -> tuple[CaseGeometry, str]:
    try:
        if value is not None:
            if not isinstance(value, dict):
                raise RequestError(f"geometry: expected a geometry.json object, got "
                                   f"{type(value).__name__}")
            return CaseGeometry.from_dict(value, "geometry"), "request"
        path = studies / f"{case}{GEOMETRY_SUFFIX}"
        if not path.is_file():
            raise RequestError(f"geometry: none given (pass params.geometry or put "
                               f"{path.name} in the studies folder)")
        return CaseGeometry.load(inside(studies, path, "geometry")), path.name
    except RequestError:
        raise
    except InputError as error:
        raise RequestError(str(error)) from None


def _config(request: Mapping[str, Any], default_preset: str) -> ReconstructionConfig:
    """The request's settings; ``default_preset`` when it names no preset."""
    settings = {key: request.get(key, default) for key, default in DEFAULT_SETTINGS.items()}
    preset = settings["preset"]
    try:
        config = build_config(
            default_preset if preset is None else bounds.text_param(preset, "preset"),
            bounds.overrides_param(settings["overrides"]),
            bounds.integer_param(settings["iterations"], "iterations", bounds.MAX_ITERATIONS,
                                 minimum=1),
            seed=bounds.integer_param(settings["seed"], "seed", bounds.MAX_SEED),
            device=bounds.text_param(settings["device"], "device"),
            output_spacing_mm=settings["output_spacing_mm"])
        bounds.check_config(config)
    except InputError as error:
        raise RequestError(str(error)) from None
    return config
