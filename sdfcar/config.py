"""Reconstruction settings: one typed config, JSON presets and ``key=value`` overrides.

The config holds the settings every method shares (what the views are, silhouettes, the
visual hull, self-calibration, one tree, seed, device) and one typed section per method,
next to the method's code: ``voxel`` (:class:`~sdfcar.methods.voxel.VoxelSettings`), ``field``
(:class:`~sdfcar.methods.field.method.FieldSettings`), ``tubes``
(:class:`~sdfcar.methods.tubes.tracing.TubeSettings`) and ``tree``
(:class:`~sdfcar.methods.tree.method.TreeSettings`). ``method`` names the method that
runs and ``prior`` the one whose result it starts from or is pulled towards (``none``).
A preset is a JSON file of such settings. Bad settings raise a one-line
:class:`~sdfcar.errors.InputError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar

import numpy as np

from sdfcar.errors import bad_input
from sdfcar.methods.catalogue import METHODS
from sdfcar.methods.field.method import FieldSettings
from sdfcar.methods.tree.method import TreeSettings
from sdfcar.methods.tubes.tracing import TubeSettings
from sdfcar.methods.voxel import VoxelSettings
from sdfcar.pipeline.connect import MODES as CONNECTIVITY_MODES

PRESETS = ("sdf-tree", "tubes", "field", "voxel", "neca", "sdfcar-paper")
#: The preset when the user names none: the hybrid SDF tube tree, which leads every kind of
#: the realistic suite (docs/benchmarks.md) ...
DEFAULT_PRESET = "sdf-tree"
#: ... except for binary silhouettes, which the tracer cannot fit: the voxel-prior field.
MASK_PRESET = "field"
#: Target modes (``target``): what the views hold.
TARGETS = ("auto", "integral", "mask")
#: Methods (``method``, ``prior``) and the priors each accepts.
METHOD_PRIORS = {name: cls.priors for name, cls in METHODS.items()}


@dataclass(frozen=True)
class SilhouetteSettings:
    """How vessel silhouettes are found in line-integral views and rendered in mask mode."""

    #: A pixel is vessel when its line integral exceeds this (mm) ...
    threshold_mm: float = 0.05
    #: ... or, in a noisy view, this many noise standard deviations after smoothing.
    noise_sigmas: float = 4.0
    #: Sharpness of the rendered silhouette ``1 - exp(-k p)`` in mask mode (1/mm): a 1 mm
    #: chord renders 0.98, a 0.25 mm one (simulate --mask's threshold) 0.63; 0.5 at 0.17 mm.
    k: float = 4.0

    POSITIVE: ClassVar[tuple[str, ...]] = ("threshold_mm", "noise_sigmas", "k")


@dataclass(frozen=True)
class HullSettings:
    """The two-view visual hull that restricts the voxel and field methods' unknowns."""

    #: "auto" (use it unless unsafe), "on" (fail if unsafe), "off" (every voxel, dense).
    mode: str = "auto"
    #: Silhouettes are dilated by this many pixels before the hull is carved.
    margin_px: int = 2
    #: Background rays kept around the silhouettes (pixels) so the fit sees their zeros.
    ray_margin_px: int = 6
    #: A hull larger than this fraction of the grid is treated as unsafe (noisy targets).
    max_fraction: float = 0.25

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"mode": ("auto", "on", "off")}
    POSITIVE: ClassVar[tuple[str, ...]] = ("max_fraction",)


#: ``calibration.mode`` values.
CALIBRATION_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class CalibrationSettings:
    """C-arm self-calibration of view 2 (:mod:`sdfcar.pipeline.calibration`)."""

    #: ``on``, ``off``, or ``auto``: on for line-integral views whose epipolar inconsistency
    #: at the given geometry exceeds ``auto_inconsistency`` (exact geometry: 5e-5 to 1.4e-3,
    #: lca0 noise-free, 5 % noise, synthetic XA; 1 degree or 1 mm of error: 1e-3 to 4e-2).
    mode: str = "auto"
    #: Bounds of view 2's correction, per rotation (degrees) and shift component (mm).
    max_rotation_deg: float = 5.0
    max_translation_mm: float = 10.0
    #: The prior that chooses among the corrections the views cannot tell apart: standard
    #: deviations of the angle error (degrees), of a lateral / anterior-posterior shift
    #: (isocenter, table; mm) and of a head-feet shift (breathing: 4.9 +- 1.9 mm between
    #: runs, up to 8). A wide head-feet prior against a narrow lateral one puts an unseen
    #: shift head-feet: on a small Y tree a 4 mm breathing shift then leaves 0.04 mm of 3D
    #: error (0.17 with a 1.5 degree turn), against 1.1-1.3 mm with (1 degree, 2 mm, 5 mm);
    #: a lateral isocenter error along the baseline is lost either way (3.7-4.2 mm).
    prior_rotation_deg: float = 1.0
    prior_shift_mm: float = 1.0
    prior_head_feet_mm: float = 10.0
    auto_inconsistency: float = 2e-3
    #: Methods that refine the pose with their model (the tree method), along the directions
    #: the views determine only: steps of the pose alone on the binned views first, and
    #: Adam's step size (degrees or mm).
    pose_iterations: int = 60
    learning_rate: float = 0.02

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"mode": CALIBRATION_MODES}
    POSITIVE: ClassVar[tuple[str, ...]] = (
        "max_rotation_deg", "max_translation_mm", "prior_rotation_deg", "prior_shift_mm",
        "prior_head_feet_mm", "auto_inconsistency", "pose_iterations", "learning_rate")

    @property
    def prior_scale(self) -> np.ndarray:
        """Standard deviations of the six correction components (3 degrees, 3 mm)."""
        return np.array([self.prior_rotation_deg] * 3
                        + [self.prior_shift_mm] * 2 + [self.prior_head_feet_mm])

    @property
    def bounds(self) -> np.ndarray:
        """Bounds of the six correction components."""
        return np.array([self.max_rotation_deg] * 3 + [self.max_translation_mm] * 3)


@dataclass(frozen=True)
class ReconstructionConfig:
    """Everything that defines a reconstruction run; presets fill it, the CLI overrides it."""

    #: The preset it was built from (:func:`build_config` sets it; "none" when built bare).
    preset: str = "none"
    #: The method that runs (see :data:`METHOD_PRIORS`) ...
    method: str = "field"
    #: ... and the method whose result it is pulled towards ("none": no prior).
    prior: str = "none"
    #: What the views are: "integral" (line integrals, mm), "mask" (binary silhouettes), or
    #: "auto" ("mask" when every view holds only 0 and 1, else "integral").
    target: str = "auto"
    silhouette: SilhouetteSettings = dataclasses.field(default_factory=SilhouetteSettings)
    hull: HullSettings = dataclasses.field(default_factory=HullSettings)
    calibration: CalibrationSettings = dataclasses.field(default_factory=CalibrationSettings)
    #: One tree from the label: "bridge" fragments to the largest 26-connected component
    #: along cheap paths through the occupancy (dropping specks and far pieces), keep the
    #: "largest" component only, or "none" (see :mod:`sdfcar.pipeline.connect`).
    connectivity: str = "bridge"
    seed: int = 0
    device: str = "auto"
    #: Write label, SDF, occupancy and mesh on a finer grid of this spacing (mm; the fit
    #: grid's divided by a whole number, e.g. 0.4 for 0.8): a method with a continuous model
    #: (the tree method) is evaluated there, other methods' occupancy is interpolated. None:
    #: the fit's grid. Every front end passes it (``--output-spacing``, ``--set``, the
    #: bundle's and MONAI Label's ``output_spacing_mm``, the Slicer module's field).
    output_spacing_mm: float | None = None
    voxel: VoxelSettings = dataclasses.field(default_factory=VoxelSettings)
    field: FieldSettings = dataclasses.field(default_factory=FieldSettings)
    tubes: TubeSettings = dataclasses.field(default_factory=TubeSettings)
    tree: TreeSettings = dataclasses.field(default_factory=TreeSettings)

    #: Settings that are None by default but numbers when given.
    NUMBERS: ClassVar[tuple[str, ...]] = ("output_spacing_mm",)
    POSITIVE: ClassVar[tuple[str, ...]] = ("output_spacing_mm",)
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "method": tuple(METHOD_PRIORS), "prior": ("none", *METHOD_PRIORS), "target": TARGETS,
        "connectivity": CONNECTIVITY_MODES}

    def settings_of(self, method: str) -> Any:
        """The settings section of ``method``."""
        return getattr(self, method)

    @property
    def dense(self) -> bool:
        """Whether the run keeps an unknown for every voxel of the grid (the voxel or field
        method with the hull off): what :func:`sdfcar.io.limits.check_memory` sizes."""
        return self.method in ("voxel", "field") and self.hull.mode == "off"

    def to_dict(self) -> dict[str, Any]:
        """Nested JSON-ready mapping."""
        return dataclasses.asdict(self)


def _from_mapping(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise bad_input(where or "config", f"expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise bad_input(path, f"unknown setting (known: {', '.join(fields)})")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            values[key] = _from_mapping(type(default), value, path)
        elif key in getattr(cls, "NUMBERS", ()):
            values[key] = None if value is None else _coerce(value, 0.0, path)
        else:
            values[key] = _coerce(value, default, path)
    return cls(**values)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad_input(where, f"expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_input(where, f"expected a number, got {value!r}")
        if isinstance(default, int) and not float(value).is_integer():
            raise bad_input(where, f"expected an integer, got {value!r}")
        return type(default)(value)
    if not isinstance(value, type(default)):
        raise bad_input(where, f"expected {type(default).__name__}, got {value!r}")
    return value


def _check(settings: Any, where: str = "") -> None:
    """Check ``settings`` and its nested sections against their ``CHOICES`` and
    ``POSITIVE`` declarations."""
    for name, allowed in getattr(settings, "CHOICES", {}).items():
        value = getattr(settings, name)
        if value not in allowed:
            raise bad_input(f"{where}{name}",
                            f"expected one of {', '.join(allowed)}, got {value!r}")
    for name in getattr(settings, "POSITIVE", ()):
        value = getattr(settings, name)
        if value is not None and value <= 0:
            raise bad_input(f"{where}{name}", f"expected a positive value, got {value}")
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if dataclasses.is_dataclass(value):
            _check(value, f"{where}{item.name}.")


def load_preset(name: str) -> dict[str, Any]:
    """The JSON mapping of a named preset."""
    if name not in PRESETS:
        former = " ('default' is now 'sdf-tree'; the former default is 'field')" \
            if name == "default" else ""
        raise bad_input("--preset", f"unknown preset {name!r} (expected one of "
                                    f"{', '.join(PRESETS)}){former}")
    text = resources.files("sdfcar.presets").joinpath(f"{name}.json").read_text()
    return {key: value for key, value in json.loads(text).items() if not key.startswith("_")}


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``"a.b=value"`` (value parsed as JSON, else kept as text) in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise bad_input("--set", f"expected KEY=VALUE, got {assignment!r}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    target = data
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise bad_input("--set", f"{key}: {part} is not a group of settings")
    target[parts[-1]] = value


def build_config(preset: str = DEFAULT_PRESET, overrides: list[str] | tuple[str, ...] = (),
                 iterations: int | None = None, **settings: Any) -> ReconstructionConfig:
    """A validated config from a preset, ``--set`` style overrides and top-level keyword
    settings (keywords whose value is None are ignored, so CLI options can pass through).
    ``iterations`` sets the running method's ``iterations`` (``--iterations``)."""
    data = load_preset(preset)
    data["preset"] = preset
    for assignment in overrides:
        apply_override(data, assignment)
    data.update({key: value for key, value in settings.items() if value is not None})
    method = data.get("method", ReconstructionConfig.method)
    if iterations is not None and method in METHOD_PRIORS:  # an unknown method fails below
        if not hasattr(ReconstructionConfig().settings_of(method), "iterations"):
            raise bad_input("--iterations", f"the {method} method has no iterations (preset "
                                            f"{preset}; see its settings in sdfcar/config.py)")
        data.setdefault(method, {})["iterations"] = iterations
    config = _from_mapping(ReconstructionConfig, data, "")
    _check(config)
    if config.prior not in METHOD_PRIORS[config.method]:
        raise bad_input("prior", f"the {config.method} method takes a prior from one of "
                                 f"{', '.join(METHOD_PRIORS[config.method])}, got {config.prior!r}")
    return config


@dataclass(frozen=True)
class ConfigRequest:
    """What a front end asks for before it knows its input: a preset (None: the input's
    default, :func:`sdfcar.pipeline.inputs.default_preset`), ``--set`` overrides,
    ``--iterations`` and top-level settings such as ``seed``, ``device`` and ``target``."""

    preset: str | None = None
    overrides: tuple[str, ...] = ()
    iterations: int | None = None
    settings: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, preset: str | None = None, overrides: Any = (), iterations: int | None = None,
           **settings: Any) -> ConfigRequest:
        """A request from keyword arguments (None values are dropped)."""
        return cls(preset, tuple(overrides or ()), iterations,
                   tuple((k, v) for k, v in sorted(settings.items()) if v is not None))

    def build(self, default_preset: str) -> ReconstructionConfig:
        """The config for an input whose default preset is ``default_preset``."""
        return build_config(self.preset or default_preset, list(self.overrides),
                            self.iterations, **dict(self.settings))
