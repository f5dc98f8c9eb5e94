"""The batch manifest: which cases to reconstruct, where their inputs are, and their names.

A manifest is a CSV file with a header row or a JSON list of objects, with the keys
``case`` (the output folder name), then either ``case_dir`` (a case folder) or ``view1`` and
``view2`` (two DICOM XA files), and optionally ``gt`` (a ground-truth label volume, scored
with :func:`sdfcar.metrics.evaluate`). Relative paths are relative to the manifest's
folder. Every row is checked before anything runs: one bad row is one line naming the
manifest, the row and the field.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdfcar.errors import bad_input
from sdfcar.pipeline.inputs import Inputs, from_case_dir, from_xa_pair

KEYS = ("case", "case_dir", "view1", "view2", "gt")
#: Name of the outcome log inside the output folder; no case may take it.
LOG_NAME = "batch.jsonl"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class BatchCase:
    """One manifest row, validated: ``case_dir`` or ``views`` (exactly one) and ``gt``."""

    name: str
    case_dir: Path | None = None
    views: tuple[Path, Path] | None = None
    gt: Path | None = None

    def source(self) -> dict[str, Any]:
        """The input files, as recorded in ``run.json``."""
        paths = {"case_dir": self.case_dir, "view1": self.views and self.views[0],
                 "view2": self.views and self.views[1], "gt": self.gt}
        return {key: str(path) for key, path in paths.items() if path}


def batch_inputs(entry: BatchCase) -> Inputs:
    """The pipeline inputs of one manifest row: a case folder, or a DICOM XA pair read as
    ``sdfcar reconstruct --view1 --view2`` reads it (automatic frames, extracted masks)."""
    if entry.case_dir is not None:
        return from_case_dir(entry.case_dir)
    return from_xa_pair(*entry.views)


def read_manifest(manifest: str | Path | Iterable[Mapping[str, Any]]) -> list[BatchCase]:
    """Validated cases of a ``.csv`` or ``.json`` manifest file, or of a list of mappings
    with the same keys (paths then relative to the working folder)."""
    if not isinstance(manifest, (str, Path)):
        return _validated(_numbered(manifest), "manifest", Path.cwd())
    shown = str(manifest)
    path = Path(manifest).expanduser().absolute()
    if not path.is_file():
        raise bad_input(shown, "manifest not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _validated(_csv_rows(path, shown), shown, path.parent)
    if suffix == ".json":
        return _validated(_numbered(_json_rows(path, shown)), shown, path.parent)
    raise bad_input(shown, "expected a .csv or .json manifest")


def _numbered(rows: Iterable[Any]) -> list[tuple[str, Any]]:
    return [(f"item {number}", row) for number, row in enumerate(rows, start=1)]


def _csv_rows(path: Path, shown: str) -> list[tuple[str, Any]]:
    """``(line N, row)`` pairs of the non-blank data rows."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            columns = [name.strip() for name in reader.fieldnames or []]
            _check_columns(columns, shown)
            reader.fieldnames = columns
            rows = [(f"line {reader.line_num}", row) for row in reader
                    if None in row or any((value or "").strip() for value in row.values())]
    except (csv.Error, UnicodeDecodeError) as error:
        raise bad_input(shown, f"not a readable CSV file ({error})") from None
    return rows


def _check_columns(columns: list[str], where: str) -> None:
    if not columns:
        raise bad_input(where, "empty file (expected a header row: case,case_dir[,gt])")
    unknown = [name for name in columns if name not in KEYS]
    if unknown:
        raise bad_input(where, f"unknown column {unknown[0]!r} (known: {', '.join(KEYS)})")
    if len(set(columns)) != len(columns):
        raise bad_input(where, "a column name repeats in the header")
    if "case" not in columns:
        raise bad_input(where, "missing column 'case'")
    if "case_dir" not in columns and not {"view1", "view2"} <= set(columns):
        raise bad_input(where, "missing column 'case_dir' (or the pair 'view1', 'view2')")


def _json_rows(path: Path, shown: str) -> list[Any]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_input(shown, f"not valid JSON ({error})") from None
    if not isinstance(rows, list):
        raise bad_input(shown, f"expected a list of objects, got {type(rows).__name__}")
    return rows


def _validated(rows: list[tuple[str, Any]], source: str, base: Path) -> list[BatchCase]:
    if not rows:
        raise bad_input(source, "no cases")
    cases: list[BatchCase] = []
    seen: dict[str, str] = {}
    for label, row in rows:
        where = f"{source}: {label}"
        entry = _entry(row, where, base)
        key = entry.name.lower()
        if key in seen:
            raise bad_input(f"{where}, case", f"{entry.name!r} repeats the name of {seen[key]} "
                                              "(case names must be unique, ignoring case)")
        seen[key] = label
        cases.append(entry)
    return cases


def _entry(row: Any, where: str, base: Path) -> BatchCase:
    if not isinstance(row, Mapping):
        raise bad_input(where, f"expected an object with keys {', '.join(KEYS)}")
    if None in row:
        raise bad_input(where, "more values than columns")
    unknown = [key for key in row if key not in KEYS]
    if unknown:
        raise bad_input(f"{where}, {unknown[0]}", f"unknown key (known: {', '.join(KEYS)})")
    values = {key: _text(row.get(key), f"{where}, {key}") for key in KEYS}
    name = values["case"]
    if not name:
        raise bad_input(f"{where}, case", "missing case name")
    if not _NAME.fullmatch(name) or name.lower() == LOG_NAME:
        raise bad_input(f"{where}, case", f"{name!r} is not a valid case name (1-128 letters, "
                                          "digits, '.', '_' or '-', starting with a letter or "
                                          f"digit, not {LOG_NAME!r})")
    pair = (values["view1"], values["view2"])
    if values["case_dir"] and any(pair):
        raise bad_input(where, "give either case_dir or view1/view2, not both")
    if not values["case_dir"] and not all(pair):
        missing = "case_dir" if not any(pair) else ("view2" if pair[0] else "view1")
        raise bad_input(f"{where}, {missing}", "missing (each case needs case_dir, or view1 "
                                               "and view2)")
    if values["case_dir"]:
        case_dir, views = _existing(values["case_dir"], base, f"{where}, case_dir", True), None
    else:
        case_dir = None
        views = (_existing(pair[0], base, f"{where}, view1", False),
                 _existing(pair[1], base, f"{where}, view2", False))
    gt = _existing(values["gt"], base, f"{where}, gt", False) if values["gt"] else None
    return BatchCase(name, case_dir, views, gt)


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_input(where, f"expected text, got {value!r}")
    return value.strip()


def _existing(text: str, base: Path, where: str, folder: bool) -> Path:
    path = Path(text).expanduser()
    path = path if path.is_absolute() else (base / path).absolute()
    if folder and not path.is_dir():
        raise bad_input(where, f"{path}: folder not found")
    if not folder and not path.is_file():
        raise bad_input(where, f"{path}: file not found")
    return path

