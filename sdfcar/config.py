"""Reconstruction settings: typed config, JSON presets and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sdfcar.pipeline.connect import MODES as CONNECTIVITY_MODES
from sdfcar.errors import fail
from sdfcar.methods.field.network import FieldConfig

PRESETS = ("default", "neca", "sdfcar-paper", "tubes")
#: Target modes (``target``): what the views hold.
TARGETS = ("auto", "integral", "mask")
#: Reconstruction methods (``method``): a neural field pulled by a voxel prior, or traced tubes.
METHODS = ("field", "tubes")


@dataclass(frozen=True)
class TubeConfig:
    """Settings of the tube tracer (``method = "tubes"``, :mod:`sdfcar.methods.tubes.tracing`)."""

    #: Trees grown from this many seed tubes; the one leaving the least unexplained wins.
    seeds: int = 6
    #: Step along a vessel between fits (mm).
    step_mm: float = 0.8
    #: A vessel ends where either view's support (fitted scale of its integrals) drops below.
    min_support: float = 0.5
    #: ... or where its axis turns by more than this between steps (degrees).
    max_turn_deg: float = 40.0
    max_steps: int = 400
    #: A branch is tried where both smoothed residual views exceed this beyond the wall (mm).
    branch_threshold_mm: float = 0.5
    #: ... and kept when it can be followed this many steps.
    min_branch_steps: int = 4


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (0 disables a term)."""

    projection: float = 1.0
    sdf2d: float = 0.0
    eikonal: float = 0.0
    #: Pull of the field's occupancy towards the voxel prior (fast path, prior_iterations > 0).
    prior: float = 0.0


@dataclass(frozen=True)
class ReconstructionConfig:
    """Everything that defines a reconstruction run; presets fill it, the CLI overrides it."""

    preset: str = "default"
    #: "field": neural field pulled by a voxel prior; "tubes": traced centrelines and radii
    #: (only ``tubes``, ``target`` and ``device`` apply; the field settings are ignored).
    method: str = "field"
    tubes: TubeConfig = dataclasses.field(default_factory=TubeConfig)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    loss: LossWeights = dataclasses.field(default_factory=LossWeights)
    #: Occupancy sharpness: occupancy = sigmoid(-alpha * sdf), alpha in 1/mm.
    alpha: float = 4.0
    #: What the views are: "integral" (line integrals, mm; projection MSE), "mask" (binary
    #: silhouettes; the rendered 1 - exp(-silhouette_k p) is fitted by BCE), or "auto"
    #: ("mask" when every view holds only 0 and 1, else "integral").
    target: str = "auto"
    #: Sharpness of the rendered silhouette in mask mode (1/mm): a 1 mm chord of vessel
    #: renders 0.98, a 0.25 mm one (simulate --mask's threshold) 0.63; 0.5 at 0.17 mm.
    silhouette_k: float = 4.0
    #: 2D-SDF term: "boundary" (differentiable) or "thresholded" (the seed's, no gradient).
    sdf2d_mode: str = "boundary"
    iterations: int = 300
    #: Voxel prior (fast path only): iterations of box-constrained least squares of per-voxel
    #: occupancy inside the hull before the field is fitted (0: no prior), and its step scale.
    prior_iterations: int = 0
    prior_relaxation: float = 1.5
    optimizer: str = "adam"
    lr: float = 1e-3
    #: Learning rate of the hash-grid tables (None: same as ``lr``).
    lr_encoding: float | None = None
    weight_decay: float = 0.0
    #: Visual-hull fast path: "auto" (use it unless unsafe), "on" (fail if unsafe), "off".
    fast_path: str = "auto"
    #: A pixel is vessel in a view when its line integral exceeds this (mm) ...
    silhouette_threshold_mm: float = 0.05
    #: ... or, in a noisy view, this many noise standard deviations after smoothing.
    silhouette_noise_sigmas: float = 4.0
    hull_margin_px: int = 2
    #: Background rays kept around the silhouettes (pixels) so the fit sees their zeros.
    ray_margin_px: int = 6
    #: Hull larger than this fraction of the grid is treated as unsafe (noisy targets).
    max_hull_fraction: float = 0.25
    #: One tree from the label: "bridge" fragments to the largest 26-connected component
    #: along cheap paths through the occupancy (dropping specks and far pieces), keep the
    #: "largest" component only, or "none" (see :mod:`sdfcar.pipeline.connect`).
    connectivity: str = "bridge"
    #: Eikonal samples per iteration and finite-difference step (mm).
    eikonal_samples: int = 4096
    eikonal_step_mm: float = 0.4
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """Nested JSON-ready mapping."""
        return dataclasses.asdict(self)


def _from_mapping(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise fail(where or "config", f"expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise fail(path, f"unknown setting (known: {', '.join(fields)})")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            values[key] = _from_mapping(type(default), value, path)
        else:
            values[key] = _coerce(value, default, path)
    return cls(**values)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail(where, f"expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(where, f"expected a number, got {value!r}")
        if isinstance(default, int) and not float(value).is_integer():
            raise fail(where, f"expected an integer, got {value!r}")
        return type(default)(value)
    if not isinstance(value, type(default)):
        raise fail(where, f"expected {type(default).__name__}, got {value!r}")
    return value


def load_preset(name: str) -> dict[str, Any]:
    """The JSON mapping of a named preset."""
    if name not in PRESETS:
        raise fail("--preset", f"unknown preset {name!r} (expected one of {', '.join(PRESETS)})")
    text = resources.files("sdfcar.presets").joinpath(f"{name}.json").read_text()
    return {key: value for key, value in json.loads(text).items() if not key.startswith("_")}


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``"a.b=value"`` (value parsed as JSON, else kept as text) in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise fail("--set", f"expected KEY=VALUE, got {assignment!r}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    target = data
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise fail("--set", f"{key}: {part} is not a group of settings")
    target[parts[-1]] = value


def build_config(preset: str = "default", overrides: list[str] | tuple[str, ...] = (),
                 **settings: Any) -> ReconstructionConfig:
    """A validated config from a preset, ``--set`` style overrides and keyword settings
    (keywords whose value is None are ignored, so CLI options can pass through)."""
    data = load_preset(preset)
    data["preset"] = preset
    for assignment in overrides:
        apply_override(data, assignment)
    data.update({key: value for key, value in settings.items() if value is not None})
    config = _from_mapping(ReconstructionConfig, data, "")
    _check_choices(config)
    return config


def _check_choices(config: ReconstructionConfig) -> None:
    choices = {
        "field.mode": (config.field.mode, ("hybrid", "occupancy")),
        "field.activation": (config.field.activation, ("leaky_relu", "relu", "softplus")),
        "field.implementation": (config.field.implementation, ("auto", "torch", "tcnn")),
        "sdf2d_mode": (config.sdf2d_mode, ("boundary", "thresholded")),
        "optimizer": (config.optimizer, ("adam", "adamw")),
        "fast_path": (config.fast_path, ("auto", "on", "off")),
        "target": (config.target, TARGETS),
        "method": (config.method, METHODS),
        "connectivity": (config.connectivity, CONNECTIVITY_MODES),
    }
    for where, (value, allowed) in choices.items():
        if value not in allowed:
            raise fail(where, f"expected one of {', '.join(allowed)}, got {value!r}")
    positive = {"iterations": config.iterations, "alpha": config.alpha, "lr": config.lr,
                "silhouette_k": config.silhouette_k,
                "field.levels": config.field.levels,
                "field.hidden_width": config.field.hidden_width,
                "tubes.seeds": config.tubes.seeds, "tubes.step_mm": config.tubes.step_mm,
                "tubes.min_support": config.tubes.min_support,
                "tubes.max_turn_deg": config.tubes.max_turn_deg,
                "tubes.max_steps": config.tubes.max_steps,
                "tubes.min_branch_steps": config.tubes.min_branch_steps}
    for where, value in positive.items():
        if value <= 0:
            raise fail(where, f"expected a positive value, got {value}")
