"""Detection of optional accelerated back-ends (TIGRE, tiny-cuda-nn)."""

from __future__ import annotations

import functools
import importlib


@functools.lru_cache(maxsize=None)
def importable(module: str) -> bool:
    """True when ``import module`` works (cached). Any failure counts as absent: a missing
    package, or a CUDA extension whose runtime fails at import."""
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def tigre_available() -> bool:
    """True when TIGRE (``import tigre``) can be used."""
    return importable("tigre")


def tcnn_available() -> bool:
    """True when tiny-cuda-nn (``import tinycudann``) can be used."""
    return importable("tinycudann")
