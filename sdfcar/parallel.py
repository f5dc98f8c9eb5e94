"""A deterministic parallel map over forked processes: the results of a plain loop, in order.

The tube tracer grows several trial trees from the same state and keeps the best; each trial
is independent, so they can run side by side. Forked children inherit that state without
pickling it; each returns its result through a pipe, and the results come back in index
order, so the choice made from them (and the tree) does not depend on how many processes
ran or how loaded the machine was. Where the platform cannot fork (Windows, or one worker),
the same calls run in this process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

T = TypeVar("T")

#: prctl's PR_SET_PDEATHSIG (Linux): the signal a child gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def can_fork() -> bool:
    """Whether :func:`forked_map` can use more than this process here."""
    return "fork" in multiprocessing.get_all_start_methods()


def forked_map(function: Callable[[int], T], count: int, workers: int) -> Iterator[T]:
    """``function(0), ..., function(count - 1)`` in that order, computed in up to ``workers``
    forked processes (each takes the next index when it is free). An exception raised by
    ``function`` is raised here; a child that dies without its result is a RuntimeError.
    Closing the iterator early (or an interrupt) stops the children."""
    workers = min(workers, count)
    if workers <= 1 or not can_fork():
        yield from (function(index) for index in range(count))
        return
    context = multiprocessing.get_context("fork")
    counter = context.Value("i", 0)
    children, pipes = [], []
    try:
        for _ in range(workers):
            receiving, sending = context.Pipe(duplex=False)
            child = context.Process(target=_serve, args=(function, count, counter, sending))
            child.start()
            sending.close()
            children.append(child)
            pipes.append(receiving)
        yield from _in_order(pipes, count)
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join()
        for pipe in pipes:
            pipe.close()


def _in_order(pipes: list[Connection], count: int) -> Iterator[Any]:
    """The children's results from ``pipes``, yielded by index as soon as each is next."""
    results: dict[int, Any] = {}
    following = 0
    open_pipes = list(pipes)
    while following < count:
        if not open_pipes:
            raise RuntimeError(f"a worker process ended without the result of call {following}")
        for pipe in wait(open_pipes):
            try:
                index, failed, value = pipe.recv()
            except EOFError:
                open_pipes.remove(pipe)
                continue
            if failed:
                raise value
            results[index] = value
        while following in results:
            yield results.pop(following)
            following += 1


def _serve(function: Callable[[int], Any], count: int, counter: Any,
           sending: Connection) -> None:
    """A child: take indices from ``counter`` until none is left, send each result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent reports an interrupt, once
    if sys.platform.startswith("linux"):  # and a killed parent leaves no child running
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    while True:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        if index >= count:
            break
        try:
            sending.send((index, False, function(index)))
        except Exception as error:  # noqa: BLE001 - raised again in the parent
            sending.send((index, True, error))
            break
    sending.close()
