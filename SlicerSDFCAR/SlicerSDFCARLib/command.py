"""The ``sdfcar reconstruct`` command line the module runs in a background process."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

#: Presets and devices the command line accepts (the module offers them before ``sdfcar``
#: is installed; the tests check they match ``sdfcar.config.PRESETS`` and the CLI).
PRESETS = ("sdf-tree", "tubes", "field", "voxel", "neca", "sdfcar-paper")
DEVICES = ("auto", "cpu", "cuda")
#: The module's own preset choice: no ``--preset``, so the engine picks the preset of the
#: input as the command line does (``sdf-tree``; ``field`` for a case of binary silhouettes).
AUTOMATIC_PRESET = "automatic"
PRESET_CHOICES = (AUTOMATIC_PRESET, *PRESETS)


def engine_preset(choice: str) -> str | None:
    """The ``--preset`` of the module's preset ``choice``; None for :data:`AUTOMATIC_PRESET`."""
    return None if choice == AUTOMATIC_PRESET else choice


@dataclass(frozen=True)
class EngineSettings:
    """The reconstruction settings the module passes on, as the command line takes them:
    ``preset`` None for the engine's default for the input, ``iterations`` 0 for the
    preset's count, ``overrides`` ``KEY=VALUE`` items passed as ``--set``,
    ``output_spacing`` (mm) 0 for outputs on the fit's grid, else ``--output-spacing``."""

    preset: str | None = None
    device: str = "auto"
    iterations: int = 0
    seed: int = 0
    overrides: tuple[str, ...] = ()
    output_spacing: float = 0.0

    def options(self) -> list[str]:
        """The command-line options; a bad value raises ``ValueError`` naming it."""
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, "
                             f"got {self.preset!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device: expected one of {', '.join(DEVICES)}, "
                             f"got {self.device!r}")
        if self.iterations < 0:
            raise ValueError(f"iterations: expected 0 (preset default) or more, "
                             f"got {self.iterations}")
        if self.output_spacing < 0:
            raise ValueError(f"output spacing: expected 0 (the fit's grid) or a spacing in "
                             f"mm, got {self.output_spacing}")
        options = [] if self.preset is None else ["--preset", self.preset]
        options += ["--device", self.device, "--seed", str(int(self.seed)),
                    "--progress", "lines"]
        if self.iterations:
            options += ["--iterations", str(int(self.iterations))]
        if self.output_spacing:
            options += ["--output-spacing", f"{self.output_spacing:g}"]
        for assignment in self.overrides:
            options += ["--set", assignment]
        return options


def reconstruct_command(python: str, case_dir: str | Path, out_dir: str | Path,
                        settings: EngineSettings = EngineSettings()) -> list[str]:
    """``python -m sdfcar reconstruct CASE --out OUT ... --progress lines``: progress comes
    back as ``sdfcar.progress`` lines on stderr."""
    return [python, "-m", "sdfcar", "reconstruct", str(case_dir), "--out", str(out_dir),
            *settings.options()]


def xa_reconstruct_command(python: str, views: tuple[str | Path, str | Path],
                           frames: tuple[int, int] | None, out_dir: str | Path,
                           settings: EngineSettings = EngineSettings(),
                           geometry: str | Path | None = None) -> list[str]:
    """``python -m sdfcar reconstruct --view1 A.dcm --view2 B.dcm --frame N M ...``: two XA
    DICOM runs read by the engine itself (geometry from the tags, vessel extraction), as the
    command line reads them. ``frames`` are the module's 0-based frame indices (the command
    line counts from 1), None for the engine's automatic choice; ``geometry`` is a
    ``--geometry`` overrides file."""
    if frames is not None and min(frames) < 0:
        raise ValueError(f"frames: expected 0-based indices, got {frames}")
    command = [python, "-m", "sdfcar", "reconstruct", "--view1", str(views[0]),
               "--view2", str(views[1])]
    if frames is not None:
        command += ["--frame", str(frames[0] + 1), str(frames[1] + 1)]
    if geometry is not None:
        command += ["--geometry", str(geometry)]
    return [*command, "--out", str(out_dir), *settings.options()]


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
