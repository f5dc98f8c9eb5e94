"""All-or-nothing outputs: write under a temporary name next to the target, then rename.

A run that fails or is killed leaves no half-written file or folder behind under the
final name, and existing results are only replaced when the caller asks for it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from sdfcar.errors import fail


def _suffixes(path: Path) -> str:
    """Multi-part extension such as ``.nii.gz`` (kept so writers pick the right format)."""
    suffixes = [s for s in path.suffixes if len(s) <= 5]
    return "".join(suffixes[-2:])


def _temporary_sibling(path: Path) -> Path:
    suffix = _suffixes(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.partial-{os.getpid()}-{secrets.token_hex(3)}{suffix}")


def check_target(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing target unless ``overwrite``; check its folder can be written."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise fail(str(path), "already exists (use --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise fail(str(path), f"cannot write into {existing}")
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed."""
    path = check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it becomes ``path`` (replacing an
    existing one only when ``overwrite``), on error it is deleted."""
    path = check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(path)
    temporary.mkdir()
    try:
        yield temporary
        if path.exists():
            retired = _temporary_sibling(path)
            os.replace(path, retired)
            os.replace(temporary, path)
            _remove(retired)
        else:
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            _remove(temporary)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
