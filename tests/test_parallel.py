"""The forked map: a plain loop's results, in order, whatever the number of processes."""

import os
import time

import pytest

from sdfcar.parallel import can_fork, forked_map

pytestmark = pytest.mark.skipif(not can_fork(), reason="the platform cannot fork")


def test_results_come_in_index_order_from_several_processes():
    state = {"offset": 100}  # inherited by the forked children, not pickled

    def call(index):
        time.sleep(0.05 * (5 - index))  # the first calls finish last
        return index + state["offset"], os.getpid()

    results = list(forked_map(call, 5, workers=3))
    assert [value for value, _ in results] == [100, 101, 102, 103, 104]
    assert os.getpid() not in {pid for _, pid in results}
    assert len({pid for _, pid in results}) > 1
    assert list(forked_map(lambda i: i * i, 4, workers=1)) == [0, 1, 4, 9]  # in process
    assert list(forked_map(lambda i: i, 0, workers=2)) == []


def test_an_error_in_a_child_is_raised_here():
    def call(index):
        if index == 2:
            raise ValueError("call 2 failed")
        return index

    with pytest.raises(ValueError, match="call 2 failed"):
        list(forked_map(call, 4, workers=2))


def test_a_child_that_dies_is_an_error_not_a_hang():
    def call(index):
        if index == 1:
            os._exit(3)
        return index

    with pytest.raises(RuntimeError, match="ended without the result of call 1"):
        list(forked_map(call, 3, workers=2))


def test_closing_early_stops_the_children():
    def call(index):
        time.sleep(0.01 if index == 0 else 30)
        return os.getpid()

    results = forked_map(call, 6, workers=2)
    first = next(results)
    results.close()
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
