"""The outcome log ``batch.jsonl``: one JSON object per finished case, appended durably.

Each line is written in one call, flushed and fsync'ed before the batch moves on, so a
batch killed at any moment loses at most the case that was being recorded. The log is
locked while a batch runs, so two batches cannot write into the same folder at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any, TextIO

from sdfcar.errors import bad_input
from sdfcar.io.outputs import strict_json

log = logging.getLogger("sdfcar")


class OutcomeLog:
    """An open, locked ``batch.jsonl`` to append records to (``fresh`` empties it first)."""

    def __init__(self, path: str | Path, fresh: bool = False) -> None:
        self.path = Path(path)
        created = not self.path.exists()
        self._file: TextIO = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise bad_input(str(self.path), "another sdfcar batch is writing into this "
                                            "folder") from None
        if fresh:
            self._file.truncate(0)
        elif self._file.tell() > 0:
            self._file.seek(self._file.tell() - 1)
            if self._file.read(1) != "\n":  # a line cut short by a kill: close it
                self._write("\n")
        if created or fresh:
            _sync_folder(self.path.parent)

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line and make it durable."""
        self._write(json.dumps(strict_json(record), allow_nan=False, default=str) + "\n")

    def _write(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Release the lock and close the file."""
        self._file.close()

    def __enter__(self) -> OutcomeLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_outcomes(path: str | Path) -> dict[str, dict[str, Any]]:
    """The last record of each case in a log (empty when there is no log). Lines that are
    not JSON objects (a line cut short by a kill) are skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return {}
    latest: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("case"), str):
            log.warning("%s: line %d is not an outcome record; ignored", path, number)
            continue
        latest[record["case"]] = record
    return latest


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
