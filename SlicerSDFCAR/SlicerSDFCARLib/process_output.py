"""Reading a reconstruction process's output: progress lines, the log and the error line.

``sdfcar reconstruct --progress lines`` writes the engine's progress lines
(:func:`sdfcar.progress.format_line`) to stderr; bad input ends it with the engine's error
line (:func:`sdfcar.errors.error_line`) and exit status 2, and an unexpected failure with a
Python traceback whose last line names the exception. Both formats are parsed with the
engine's own functions (imported when a run's output is read: ``sdfcar`` is installed by
then).
"""

from __future__ import annotations

from collections import deque
from typing import Any

Progress = Any
"""A :class:`sdfcar.progress.Step`: ``stage``, ``done``, ``total``, ``unit``, ``loss``,
``percent`` and ``describe()``."""


def parse_progress(line: str) -> Progress | None:
    """The step a progress line reports, or None for other lines."""
    from sdfcar.progress import parse_line

    return parse_line(line)


class OutputMonitor:
    """Sorts a run's ``(stream, line)`` pairs into progress and log, and keeps the last
    ``tail`` stderr lines to explain a failure."""

    def __init__(self, tail: int = 200) -> None:
        self.progress: Progress | None = None
        self.log: list[str] = []
        self._stderr: deque[str] = deque(maxlen=tail)

    def feed(self, stream: str, line: str) -> Progress | None:
        """Record one line; returns the progress when the line was a progress line."""
        progress = parse_progress(line) if stream == "stderr" else None
        if progress is not None:
            self.progress = progress
            return progress
        self.log.append(line)
        if stream == "stderr":
            self._stderr.append(line)
        return None

    def failure_message(self, returncode: int, cancelled: bool = False) -> str:
        """One line saying why the run ended without success."""
        if cancelled:
            return "Cancelled: the reconstruction process was stopped."
        lines = [line.strip() for line in self._stderr if line.strip()]
        from sdfcar.errors import parse_error_line

        for line in reversed(lines):
            message = parse_error_line(line)
            if message:
                return message
        if returncode < 0:
            return f"The reconstruction process was stopped by signal {-returncode}."
        if lines:
            return lines[-1]
        return f"The reconstruction process exited with status {returncode}."
