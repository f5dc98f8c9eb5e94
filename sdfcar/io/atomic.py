"""All-or-nothing outputs: write under a temporary name next to the target, then rename.

A run that fails or is killed leaves no half-written file or folder behind under the
final name, and existing results are only replaced when the caller asks for it. A writer
killed outright (SIGKILL, power loss) cannot remove its staging copy; the next write of the
same target removes the copies of writers that are no longer running. No output
may be, contain or lie inside one of the caller's ``inputs``, and an existing folder is
replaced only when sdfcar wrote it (:mod:`sdfcar.io.guard`): every folder written here
carries the marker file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from sdfcar.errors import bad_input
from sdfcar.io.guard import PathLike, check_not_input, write_marker, written_by_sdfcar


def _suffixes(path: Path) -> str:
    """Multi-part extension such as ``.nii.gz`` (kept so writers pick the right format)."""
    suffixes = [s for s in path.suffixes if len(s) <= 5]
    return "".join(suffixes[-2:])


def _staging_prefix(path: Path) -> tuple[str, str]:
    """The start and end of the names of ``path``'s staging copies."""
    suffix = _suffixes(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return f".{stem}.partial-", suffix


def _temporary_sibling(path: Path) -> Path:
    prefix, suffix = _staging_prefix(path)
    return path.with_name(f"{prefix}{os.getpid()}-{secrets.token_hex(3)}{suffix}")


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(path: Path) -> list[Path]:
    """Remove the staging copies of ``path`` left by writers that no longer run (their
    process id is in the name); returns what was removed."""
    prefix, suffix = _staging_prefix(path)
    stale = []
    if not path.parent.is_dir():
        return stale
    for sibling in path.parent.iterdir():
        name = sibling.name
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        writer = re.fullmatch(r"(\d+)-[0-9a-f]{6}", name[len(prefix): len(name) - len(suffix)])
        if writer and not _running(int(writer.group(1))):
            _remove(sibling)
            stale.append(sibling)
    return stale


def check_target(path: str | Path, overwrite: bool, inputs: Iterable[PathLike | None] = (),
                 folder: bool = False) -> Path:
    """Refuse a target that is, contains or lies inside one of ``inputs``, an existing
    target unless ``overwrite``, and with it an existing ``folder`` target that sdfcar did
    not write (or a folder where a file goes); check its parent can be written."""
    path = Path(path)
    check_not_input(path, inputs)
    if path.exists():
        if not overwrite:
            raise bad_input(str(path), "already exists (use --overwrite to replace it)")
        if folder and not written_by_sdfcar(path):
            raise bad_input(str(path), "not written by sdfcar: refusing to replace it; remove it "
                                       "yourself or choose another --out")
        if not folder and path.is_dir():
            raise bad_input(str(path), "is a folder; expected a file name")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise bad_input(str(path), f"cannot write into {existing}")
    try:  # a real write: permissions alone do not tell root or a read-only file system
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise bad_input(str(path), f"cannot write into {existing} ({error.strerror})") from None
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path, overwrite: bool = False,
                inputs: Iterable[PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed
    (:func:`check_target` first)."""
    path = check_target(path, overwrite, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    temporary = _temporary_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False,
                     inputs: Iterable[PathLike | None] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it gets the marker file and becomes
    ``path`` (replacing an existing one only when ``overwrite`` and sdfcar wrote it, see
    :func:`check_target`), on error it is deleted."""
    path = check_target(path, overwrite, inputs, folder=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    temporary = _temporary_sibling(path)
    temporary.mkdir()
    try:
        yield temporary
        write_marker(temporary)
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
