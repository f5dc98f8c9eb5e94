"""Inputs are sacred: no output may equal, contain or lie inside an input, and an existing
folder is only ever replaced when sdfcar itself wrote it (its marker file says so).

Paths are compared after resolving ``~``, relative parts, ``..`` and symbolic links, so a
symlinked output that points at an input is refused like the input itself.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from sdfcar import __version__
from sdfcar.errors import bad_input

#: Marker file in every folder written through :func:`sdfcar.io.atomic.atomic_directory`.
MARKER = ".sdfcar-output"
#: Files that identify a folder written by sdfcar before markers existed (run records of a
#: reconstruction folder and of a demo folder).
LEGACY_RECORDS = ("run.json", "reconstruction/run.json")

PathLike = str | os.PathLike


def _resolved(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _same(first: Path, second: Path) -> bool:
    """Same path, or the same existing file reached another way (hard link, bind mount)."""
    return first == second or (first.exists() and second.exists()
                               and os.path.samefile(first, second))


def check_not_input(target: PathLike, inputs: Iterable[PathLike | None]) -> None:
    """Refuse (:class:`~sdfcar.errors.InputError`) a ``target`` that is, contains or lies
    inside one of ``inputs`` (None and empty entries are skipped)."""
    resolved = _resolved(target)
    for item in inputs:
        if item is None or str(item) == "":
            continue
        source = _resolved(item)
        if _same(resolved, source):
            problem = f"is the input {item}"
        elif source.is_relative_to(resolved):
            problem = f"contains the input {item}"
        elif resolved.is_relative_to(source):
            problem = f"lies inside the input {item}"
        else:
            continue
        raise bad_input(str(target), f"{problem}: inputs are never written over; choose another "
                                     "output path")


def written_by_sdfcar(folder: PathLike) -> bool:
    """Whether ``folder`` is one sdfcar wrote (marker or legacy run record) or is empty, so
    that replacing it loses nothing of the user's."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return (folder / MARKER).is_file() or any((folder / name).is_file()
                                               for name in LEGACY_RECORDS) \
        or not any(folder.iterdir())


def write_marker(folder: PathLike) -> Path:
    """Write the marker file (one JSON line: tool, version, time) into ``folder``."""
    marker = Path(folder) / MARKER
    record = {"tool": "sdfcar", "version": __version__,
              "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    marker.write_text(json.dumps(record) + "\n")
    return marker
