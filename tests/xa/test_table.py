"""The patient table's move between two runs (sdfcar.xa.table): GE's private table
positions are read, and view 2's C-arm follows the move for a head-first supine patient
(overrides win; other patient positions are reported, not applied)."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from sdfcar.xa import prepare_xa_pair
from sdfcar.xa.overrides import load_geometry_overrides
from sdfcar.xa.table import GE_CREATOR, read_table_position, table_motion

from conftest import xa_pair

#: (lateral, vertical, longitudinal) table positions of the two runs (mm).
TABLES = ((9.2, 66.3, 503.9), (7.7, 55.1, 470.2))


def _with_table(dataset: Dataset, table: tuple[float, float, float],
                position: str = "HFS") -> Dataset:
    block = dataset.private_block(0x0019, GE_CREATOR, create=True)
    for element, value in zip((0x23, 0x21, 0x22), table):
        block.add_new(element, "DS", f"{value:.1f}")
    dataset.PatientPosition = position
    return dataset


def test_the_ge_table_position_is_read_from_its_private_block():
    table = read_table_position(_with_table(Dataset(), TABLES[0]))
    assert (table.lateral_mm, table.vertical_mm, table.longitudinal_mm) == TABLES[0]
    assert table.patient_position == "HFS" and GE_CREATOR in table.source
    assert read_table_position(Dataset()) is None
    broken = Dataset()
    block = broken.private_block(0x0019, GE_CREATOR, create=True)
    for element, value in ((0x21, "high"), (0x22, "503.9"), (0x23, "9.2")):
        block.add_new(element, "LO", value)
    assert read_table_position(broken) is None


def test_view_2_moves_against_the_table_for_head_first_supine_only():
    first, second = (read_table_position(_with_table(Dataset(), t)) for t in TABLES)
    motion = table_motion(first, second)
    assert motion.moved
    np.testing.assert_allclose(motion.shift_mm, [1.5, 11.2, 33.7], atol=1e-9)
    assert "shifted by (+1.5, +11.2, +33.7) mm" in motion.note()
    feet_first = read_table_position(_with_table(Dataset(), TABLES[1], "FFS"))
    unknown = table_motion(first, feet_first)
    assert unknown.shift_mm is None and "not applied" in unknown.note()
    assert not table_motion(first, first).moved
    assert table_motion(first, None) is None


@pytest.fixture
def pair_files(tmp_path, arc_case):
    _, paths, geometry = xa_pair(tmp_path, arc_case, 12)
    for path, table in zip(paths, TABLES):
        _with_table(pydicom.dcmread(path), table).save_as(path)
    return paths, geometry


def test_the_pair_shifts_view_2_records_the_move_and_overrides_win(pair_files, tmp_path):
    (view1, view2), geometry = pair_files
    overrides = load_geometry_overrides(geometry)
    pair = prepare_xa_pair(view1, view2, overrides=overrides)
    first, second = pair.case.geometry.views
    assert first.correction_translation_mm == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(second.correction_translation_mm, [1.5, 11.2, 33.7])
    assert pair.report["table"]["applied_shift_mm"] == [1.5, 11.2, 33.7]
    assert pair.report["views"][1]["geometry"]["correction_translation_mm"] == \
        pytest.approx([1.5, 11.2, 33.7])
    assert pair.report["views"][1]["table"]["vertical_mm"] == 55.1

    given = tmp_path / "given.json"
    given.write_text('{"views": [{}, {"correction_translation_mm": [0, 0, 5]}]}')
    kept = prepare_xa_pair(view1, view2, overrides=load_geometry_overrides(given))
    assert kept.case.geometry.views[1].correction_translation_mm == (0.0, 0.0, 5.0)
    assert kept.report["table"]["applied_shift_mm"] is None
    assert "was given" in kept.report["table"]["note"]


def test_a_pair_without_table_positions_is_left_alone(tmp_path, arc_case):
    _, (view1, view2), geometry = xa_pair(tmp_path, arc_case, 12)
    pair = prepare_xa_pair(view1, view2, overrides=load_geometry_overrides(geometry))
    assert pair.report["table"] is None
    assert pair.case.geometry.views[1].correction_translation_mm == (0.0, 0.0, 0.0)
