"""The hostile-input suite (tests/hostile_cases.py) through ``python -m sdfcar`` and the
MONAI Label request handler (``tests/hostile_request.py``): every case exits with its documented code (2 for bad input, 130 for SIGINT), prints one line on stderr
and no traceback, leaves no staging folder, and leaves its inputs byte-identical."""

import pytest

from hostile_cases import CASES, make_materials, run_case

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
    _, outcome = run_case(case, materials, tmp_path / "work")
    assert outcome.code == case.code, outcome.stderr
    assert len(outcome.stderr) == 1, outcome.stderr
    assert "Traceback" not in outcome.first_line
    assert outcome.first_line.startswith("sdfcar ")
    assert case.expect in outcome.first_line
    assert ": :" not in outcome.first_line  # no empty field in "file: field: message"
    assert outcome.inputs_unchanged
    assert outcome.leftovers == ()
    if case.interrupt:
        assert outcome.first_line.endswith(": interrupted")
        assert not (tmp_path / "work" / "rec").exists()
