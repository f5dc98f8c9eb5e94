"""Reading a reconstruction process's output: progress lines, the log and the error line.

``sdfcar reconstruct --progress lines`` writes ``PROGRESS done total loss`` to stderr; bad
input ends it with ``sdfcar reconstruct: error: <one line>`` and exit status 2, and an
unexpected failure with a Python traceback whose last line names the exception.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

_PROGRESS = re.compile(r"^PROGRESS (\d+) (\d+) (\S+)$")
_CLI_ERROR = re.compile(r"^sdfcar [\w-]+: error: (.+)$")


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` iterations, with the loss of the last one."""

    done: int
    total: int
    loss: float

    @property
    def percent(self) -> int:
        """Whole percent done (0-100)."""
        return min(100, (100 * self.done) // self.total)


def parse_progress(line: str) -> Progress | None:
    """The progress a ``PROGRESS done total loss`` line reports, or None for other lines."""
    match = _PROGRESS.match(line.strip())
    if not match:
        return None
    done, total = int(match[1]), int(match[2])
    try:
        loss = float(match[3])
    except ValueError:
        return None
    if total <= 0 or not 0 <= done <= total:
        return None
    return Progress(done, total, loss)


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
        for line in reversed(lines):
            match = _CLI_ERROR.match(line)
            if match:
                return match[1]
        if returncode < 0:
            return f"The reconstruction process was stopped by signal {-returncode}."
        if lines:
            return lines[-1]
        return f"The reconstruction process exited with status {returncode}."
