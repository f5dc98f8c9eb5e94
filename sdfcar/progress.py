"""Progress of a run: one protocol for every method, and the ways front ends show it.

A method reports :class:`Step` values (what runs, how far, in which unit) to a
:data:`Progress` callable. Front ends pick how to show them: a tqdm bar on a terminal, a short
log line every few per cent when the output is a file or a pipe (:class:`PercentLines`),
machine-readable ``PROGRESS`` lines for GUIs (:class:`MachineLines`, parsed back by
:func:`parse_line`), or nothing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from tqdm.auto import tqdm

log = logging.getLogger("sdfcar")

#: First word of a machine-readable progress line.
LINE_PREFIX = "PROGRESS"
#: How a front end may show progress (``--progress``); ``auto`` is a bar on a terminal and
#: percent lines otherwise.
MODES = ("auto", "bar", "lines", "percent", "none")
#: :class:`PercentLines` logs a line at every this many per cent of a stage.
PERCENT_STEP = 10


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` ``unit`` s of the ``stage`` that is running, and its loss."""

    stage: str  # e.g. "voxel prior", "field", "tracing"
    done: int
    total: int
    unit: str = "iteration"  # what is counted: "iteration", "seed", ...
    loss: float | None = None

    @property
    def percent(self) -> int:
        """Whole per cent of the stage done (0-100)."""
        return min(100, (100 * self.done) // max(self.total, 1))

    def describe(self) -> str:
        """``field: iteration 30/300, loss 0.0123`` (for logs)."""
        text = f"{self.stage}: {self.unit} {self.done}/{self.total}"
        return text if self.loss is None else f"{text}, loss {self.loss:.4g}"


Progress = Callable[[Step], None]
"""Receives every :class:`Step` of a run."""


def silent(step: Step) -> None:
    """A :data:`Progress` that shows nothing."""


def crosses(step: Step, parts: int) -> bool:
    """Whether ``step`` is the first of one of ``parts`` equal parts of its stage (or its
    last step): where a throttled reporter should speak."""
    if step.done >= step.total:
        return True
    return (parts * step.done) // step.total != (parts * (step.done - 1)) // step.total


def format_line(step: Step) -> str:
    """``PROGRESS done total unit loss stage`` (loss ``-`` when unknown; the stage last, it
    may hold spaces)."""
    loss = "-" if step.loss is None else f"{step.loss:.6g}"
    return f"{LINE_PREFIX} {step.done} {step.total} {step.unit} {loss} {step.stage}"


def parse_line(line: str) -> Step | None:
    """The :class:`Step` of a :func:`format_line` line, or None for any other line."""
    parts = line.strip().split(" ", 5)
    if len(parts) != 6 or parts[0] != LINE_PREFIX:
        return None
    try:
        done, total = int(parts[1]), int(parts[2])
        loss = None if parts[4] == "-" else float(parts[4])
    except ValueError:
        return None
    if total <= 0 or not 0 <= done <= total:
        return None
    return Step(parts[5], done, total, parts[3], loss)


class MachineLines:
    """Writes a :func:`format_line` line at every whole per cent of each stage."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, step: Step) -> None:
        if crosses(step, 100):
            # One write with its newline: print() writes the newline separately, and an
            # interrupt between the two would glue the next line (the CLI's "interrupted")
            # onto this one.
            stream = self.stream or sys.stderr
            stream.write(format_line(step) + "\n")
            stream.flush()


class PercentLines:
    """Logs :meth:`Step.describe` every :data:`PERCENT_STEP` per cent of each stage: a few
    short lines for a log file or a pipe instead of thousands of bar redraws."""

    def __call__(self, step: Step) -> None:
        if crosses(step, 100 // PERCENT_STEP):
            log.info("%s (%d %%)", step.describe(), step.percent)


class Bar:
    """A tqdm bar per stage, on stderr."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None
        self._stage: str | None = None

    def __call__(self, step: Step) -> None:
        if self._bar is None or step.stage != self._stage:
            self.close()
            self._stage = step.stage
            self._bar = tqdm(total=step.total, desc=f"sdfcar {step.stage}", unit=step.unit,
                             dynamic_ncols=True)
        self._bar.update(step.done - self._bar.n)
        if step.loss is not None:
            self._bar.set_postfix(loss=f"{step.loss:.4g}", refresh=False)
        if step.done >= step.total:
            self.close()

    def close(self) -> None:
        """Finish the current stage's bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def reporter(mode: str = "auto", stream: TextIO | None = None) -> Progress:
    """The :data:`Progress` of a front end's ``--progress`` choice (see :data:`MODES`)."""
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "bar" if stream.isatty() else "percent"
    return {"bar": Bar, "lines": lambda: MachineLines(stream), "percent": PercentLines,
            "none": lambda: silent}[mode]()
