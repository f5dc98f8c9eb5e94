"""Raw XA runs in: the engine reads the two DICOM files itself.

When both views are XA DICOM files (volumes loaded through Slicer's DICOM module, or files
picked directly), the module does not write a case folder: it runs ``python -m sdfcar
reconstruct --view1 A.dcm --view2 B.dcm`` (:func:`xa_run_command`), so frame choice, vessel
extraction, geometry from the tags and the run record are the command line's. What the
user changed in the geometry fields (compared with what ``sdfcar xa-geometry`` read from the
tags) and the reconstruction grid, when the user sets one, go into
``case/geometry-overrides.json`` for ``--geometry``; nothing else is overridden. Without a
grid the engine places one on the vessels, as the command line does. The engine writes the 2D step (vessel mask and
line-integral proxy of each view) under ``reconstruction/views/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .command import EngineSettings, xa_reconstruct_command
from .geometry import ViewSettings
from .results import ResultImportError

OVERRIDES_FILE = "geometry-overrides.json"
#: Relative change below which an edited field counts as the tag's value (DS rounding).
TOLERANCE = 1e-9


def _same(value: Any, tag: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    tags = list(tag) if isinstance(tag, (list, tuple)) else [tag]
    return tag is not None and len(values) == len(tags) and all(
        abs(float(v) - float(t)) <= TOLERANCE * max(1.0, abs(float(t)))
        for v, t in zip(values, tags))


def edited_fields(view: ViewSettings, from_tags: Mapping[str, Any]) -> dict[str, Any]:
    """The contract fields of ``view`` that differ from the tag values (all of them for a
    field the tags did not give)."""
    return {name: value for name, value in view.to_contract((1, 1)).items()
            if name != "detector_shape" and not _same(value, from_tags.get(name))}


def write_overrides(case_dir: str | Path, views: Sequence[Mapping[str, Any]],
                    volume: Mapping[str, Any] | None) -> Path:
    """``case_dir/geometry-overrides.json``: per-view fields and the volume (None: the
    engine places the grid on the vessels), as ``sdfcar reconstruct --geometry`` reads
    them."""
    case_dir = Path(case_dir)
    case_dir.mkdir(parents=True, exist_ok=True)
    path = case_dir / OVERRIDES_FILE
    overrides: dict[str, Any] = {"views": [dict(v) for v in views]}
    if volume is not None:
        overrides["volume"] = dict(volume)
    path.write_text(json.dumps(overrides, indent=2) + "\n")
    return path


def xa_run_command(python: str, files: tuple[str | Path, str | Path],
                   frames: tuple[int, int] | None, case_dir: str | Path, out_dir: str | Path,
                   edits: Sequence[Mapping[str, Any]], volume: Mapping[str, Any] | None,
                   settings: EngineSettings = EngineSettings()) -> list[str]:
    """Write the overrides file and return the command that reconstructs the two runs.

    ``frames``: the module's 0-based frames, or None for the engine's automatic choice;
    ``edits``: per view, the fields to override (:func:`edited_fields`)."""
    geometry = write_overrides(case_dir, edits, volume)
    return xa_reconstruct_command(python, files, frames, out_dir, settings, geometry)


def chosen_frames(out_dir: str | Path) -> tuple[int, int]:
    """The 0-based frames the engine used for each view (``views/viewN/report.json``)."""
    frames = []
    for index in (1, 2):
        path = Path(out_dir) / "views" / f"view{index}" / "report.json"
        try:
            frames.append(int(json.loads(path.read_text())["frame"]["number"]) - 1)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ResultImportError(f"{path}: no frame number ({error})") from None
    return frames[0], frames[1]
