"""A child process whose output a GUI timer can poll without ever blocking.

Two reader threads copy the child's stdout and stderr lines into a queue; the GUI drains it
from a timer (:meth:`BackgroundProcess.read_lines`). :meth:`BackgroundProcess.cancel` really
stops the run: on POSIX the child leads its own session, and its whole process group is
terminated, then killed if it lingers; on Windows the child is killed (``sdfcar`` starts no
processes of its own).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path


class BackgroundProcess:
    """Start ``command`` now; poll :meth:`read_lines` and :attr:`returncode`."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.command = [str(part) for part in command]
        self.cancelled = False
        group = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP
                  | subprocess.CREATE_NO_WINDOW} if os.name == "nt"
                 else {"start_new_session": True})
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
            env=dict(env) if env is not None else None, cwd=cwd, **group)
        self._lines: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._readers = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                         for stream, name in ((self._process.stdout, "stdout"),
                                              (self._process.stderr, "stderr"))]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        """Process id of the child."""
        return self._process.pid

    def _read(self, stream, name: str) -> None:
        with stream:
            for line in stream:
                self._lines.put((name, line.rstrip("\r\n")))

    def read_lines(self) -> list[tuple[str, str]]:
        """Every ``(stream, line)`` received since the last call (never blocks)."""
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                return lines

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has ended and all its output was read, else None.

        Negative values are POSIX signals (e.g. -15 after :meth:`cancel`).
        """
        if self._process.poll() is None or any(r.is_alive() for r in self._readers):
            return None
        return self._process.returncode

    def cancel(self, grace_s: float = 3.0) -> None:
        """Terminate the child's process group; kill it if it is still there after
        ``grace_s`` seconds. Does nothing once the child has ended."""
        if self._process.poll() is not None:
            return
        self.cancelled = True
        self._signal_group(hard=False)
        try:
            self._process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self._signal_group(hard=True)
            self._process.wait()
        if os.name != "nt":  # children that outlived the leader would hold the pipes open
            self._signal_group(hard=True)

    def _signal_group(self, hard: bool) -> None:
        if os.name == "nt":
            self._process.kill()
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL if hard else signal.SIGTERM)
        except ProcessLookupError:  # the whole group has already gone
            pass
