"""The hostile-input suite (tests/hostile_cases.py) through ``python -m sdfcar`` and the
MONAI Label request handler (``tests/hostile_request.py``): every case exits with its
documented code (2 for bad input, 130 for SIGINT, 0 for a rerun after SIGKILL), prints one
line on stderr (none after a successful rerun) and no traceback, leaves no staging folder,
and leaves its inputs byte-identical (:func:`hostile_cases.problems`)."""

import pytest

from hostile_cases import CASES, make_materials, problems, run_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def materials(tmp_path_factory):
    return make_materials(tmp_path_factory.mktemp("hostile_materials"))


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({(case.group, case.name) for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.name}" for c in CASES])
def test_hostile_input(case, materials, tmp_path):
    if case.needs is not None and not case.needs.is_dir():
        pytest.skip(f"{case.needs} not present")
    work = tmp_path / "work"
    _, outcome = run_case(case, materials, work)
    assert not problems(case, outcome, work)
