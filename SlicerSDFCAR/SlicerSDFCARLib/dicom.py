"""C-arm geometry of an X-ray angiogram, read by the engine.

Slicer's DICOM plugin keeps the instance UIDs of a loaded series in the volume's
``DICOM.instanceUIDs`` attribute and its database gives the file of an instance. The module
runs ``python -m sdfcar xa-geometry FILE --frame N`` on that file with the configured Python:
the same reader, tag table and per-frame angles as ``sdfcar reconstruct --view1 --view2``.
:func:`read_geometry` turns the answer into the values that pre-fill the editable fields and
notes (the engine's warnings, or its one-line reason when it cannot read the geometry).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Every field :func:`read_geometry` can fill (contract names).
FIELDS = ("primary_angle_deg", "secondary_angle_deg", "source_to_detector_mm",
          "source_to_isocenter_mm", "detector_spacing_mm")
#: Seconds the engine may take to read a file (it verifies the whole pixel data).
TIMEOUT_S = 120.0


@dataclass
class TagGeometry:
    """The fields found (contract names; ``detector_spacing_mm`` is ``(row, col)``) and notes
    about replaced tags or why nothing could be read."""

    values: dict[str, float | tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every geometry field came from the file."""
        return all(name in self.values for name in FIELDS)


def geometry_command(python: str, path: str | Path, frame: int = 0) -> list[str]:
    """``python -m sdfcar xa-geometry FILE --frame N``; ``frame`` is the module's 0-based
    index, the command line counts from 1."""
    if frame < 0:
        raise ValueError(f"frame: expected a 0-based index, got {frame}")
    return [python, "-m", "sdfcar", "xa-geometry", str(path), "--frame", str(frame + 1)]


def parse_geometry(returncode: int, stdout: str, stderr: str) -> TagGeometry:
    """The geometry of an ``xa-geometry`` run from its exit status and output."""
    if returncode == 0:
        try:
            answer = json.loads(stdout)
            view = answer["view"]
            values: dict[str, Any] = {name: float(view[name]) for name in FIELDS[:-1]}
            row, column = (float(v) for v in view["detector_spacing_mm"])
        except (ValueError, KeyError, TypeError) as error:
            return TagGeometry(notes=[f"unexpected answer from sdfcar xa-geometry ({error})"])
        values["detector_spacing_mm"] = (row, column)
        return TagGeometry(values, [str(note) for note in answer.get("warnings", [])])
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return TagGeometry(notes=[_reason(lines, returncode)])


def read_geometry(python: str, path: str | Path, frame: int = 0,
                  run: Callable[..., subprocess.CompletedProcess] = subprocess.run
                  ) -> TagGeometry:
    """Run :func:`geometry_command` and parse its answer; a Python that cannot start or a
    run past :data:`TIMEOUT_S` is a note, not an exception."""
    try:
        done = run(geometry_command(python, path, frame), capture_output=True, text=True,
                   timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return TagGeometry(notes=[f"sdfcar xa-geometry did not run ({error})"])
    return parse_geometry(done.returncode, done.stdout, done.stderr)


def _reason(lines: list[str], returncode: int) -> str:
    """The message of the engine's error line, else the last line (e.g. ``No module named
    'sdfcar'`` before the engine is installed), else the exit status."""
    try:
        from sdfcar.errors import parse_error_line
    except ImportError:
        parse_error_line = None
    for line in reversed(lines if parse_error_line else []):
        message = parse_error_line(line)
        if message:
            return message
    return lines[-1] if lines else f"sdfcar xa-geometry exited with status {returncode}"
