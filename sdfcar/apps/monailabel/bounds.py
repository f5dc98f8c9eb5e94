"""Bounds on what one request may ask of a shared server.

A command-line user may run 10^9 iterations on their own machine; a request comes from a
client of a server that others share, so its settings are held to bounds: the types of the
request's own parameters, the iterations of every method, the seed, and the settings that
size memory (hash tables, network width, eikonal samples, the output grid) or work (trees,
steps). A value out of bounds is an :class:`~sdfcar.errors.InputError` naming the field,
raised before anything is read or allocated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sdfcar.config import ReconstructionConfig
from sdfcar.errors import bad_input

#: Most iterations of any method in one request.
MAX_ITERATIONS = 20_000
#: Largest seed (the RNGs take 32-bit seeds everywhere).
MAX_SEED = 2**32 - 1
#: Most ``overrides`` entries in one request.
MAX_OVERRIDES = 64
#: Finest output grid a request may ask for (``output_spacing_mm``, mm): a 0.8 mm grid
#: refined 4 times holds 64 times its voxels.
MIN_OUTPUT_SPACING_MM = 0.2
#: Largest value of the settings that size memory or work, beyond the iterations.
MAX_SETTINGS: dict[str, int] = {
    "seed": MAX_SEED,
    "tubes.trees": 64,
    "tubes.max_steps": 5_000,
    "tubes.min_branch_steps": 1_000,
    "tree.rounds": 10,
    "tree.supersample": 4,
    "field.eikonal_samples": 1 << 20,
    "field.network.levels": 32,
    "field.network.features_per_level": 8,
    "field.network.log2_hashmap_size": 24,
    "field.network.base_resolution": 4_096,
    "field.network.finest_resolution": 65_536,
    "field.network.hidden_layers": 16,
    "field.network.hidden_width": 1_024,
}


def integer_param(value: Any, field: str, maximum: int, minimum: int = 0) -> int | None:
    """A request parameter that must be an integer in ``[minimum, maximum]`` (None: not
    given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_input(field, f"expected an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise bad_input(field, f"expected an integer from {minimum} to {maximum} in a request, "
                               f"got {value}")
    return value


def text_param(value: Any, field: str) -> str:
    """A request parameter that must be a non-empty string."""
    if not isinstance(value, str) or not value:
        raise bad_input(field, f"expected a name, got {value!r}")
    return value


def overrides_param(value: Any) -> list[str]:
    """The ``overrides`` parameter: at most :data:`MAX_OVERRIDES` ``"key=value"`` strings."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_input("overrides", "expected a list of \"key=value\" strings")
    if len(value) > MAX_OVERRIDES:
        raise bad_input("overrides", f"at most {MAX_OVERRIDES} entries in a request, "
                                     f"got {len(value)}")
    return value


def check_config(config: ReconstructionConfig) -> None:
    """Refuse a config (after overrides) whose iterations, seed or sizes exceed the bounds."""
    for key, value in _integers(config.to_dict()):
        # Every "...iterations" setting (tree.refine.coarse_iterations too); the tree
        # method's tracer section has the tubes method's bounds.
        limit = MAX_ITERATIONS if key.rsplit(".", 1)[-1].endswith("iterations") else \
            MAX_SETTINGS.get(key.replace("tree.tracing.", "tubes.", 1))
        if limit is not None and value > limit:
            raise bad_input(key, f"at most {limit} in a request, got {value}")
    if config.seed < 0:
        raise bad_input("seed", f"expected an integer from 0 to {MAX_SEED}, got {config.seed}")
    if config.output_spacing_mm is not None and config.output_spacing_mm < MIN_OUTPUT_SPACING_MM:
        raise bad_input("output_spacing_mm", f"at least {MIN_OUTPUT_SPACING_MM} mm in a "
                                             f"request, got {config.output_spacing_mm}")


def _integers(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, int]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _integers(value, f"{prefix}{key}.")
        elif isinstance(value, int) and not isinstance(value, bool):
            yield f"{prefix}{key}", value
