"""The ``sdfcar reconstruct`` command line the module runs in a background process."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

#: Presets and devices the command line accepts (the module offers them before ``sdfcar``
#: is installed; the tests check they match ``sdfcar.config.PRESETS`` and the CLI).
PRESETS = ("default", "neca", "sdfcar-paper", "tubes")
DEVICES = ("auto", "cpu", "cuda")


def reconstruct_command(python: str, case_dir: str | Path, out_dir: str | Path,
                        preset: str = "default", device: str = "auto", iterations: int = 0,
                        seed: int = 0, overrides: Sequence[str] = ()) -> list[str]:
    """``python -m sdfcar.apps.cli reconstruct CASE --out OUT ... --progress lines``.

    ``iterations`` 0 keeps the preset's count; ``overrides`` are ``KEY=VALUE`` settings
    passed as ``--set``. Progress comes back as ``PROGRESS done total loss`` on stderr.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
    if iterations < 0:
        raise ValueError(f"iterations: expected 0 (preset default) or more, got {iterations}")
    command = [python, "-m", "sdfcar.apps.cli", "reconstruct", str(case_dir), "--out", str(out_dir),
               "--preset", preset, "--device", device, "--seed", str(int(seed)),
               "--progress", "lines"]
    if iterations:
        command += ["--iterations", str(int(iterations))]
    for assignment in overrides:
        command += ["--set", assignment]
    return command


def parse_overrides(text: str) -> list[str]:
    """Split ``"field.levels=12 loss.eikonal=0.1"`` into ``KEY=VALUE`` items (shell quoting
    allowed); a malformed item raises ``ValueError`` naming it."""
    try:
        items = shlex.split(text)
    except ValueError as error:
        raise ValueError(f"extra settings: {error}") from None
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise ValueError(f"extra settings: expected KEY=VALUE, got {item!r}")
    return items
