"""The centreline files: VTK XML polylines read back by VTK, markups JSON, the QCA table."""

import csv
import json

import numpy as np
import pytest

from sdfcar.analysis.summary import analyse
from sdfcar.geometry import REFERENCE_VIEWS
from sdfcar.io.centrelines import (MARKUPS_FILE, QCA_FILE, VTP_FILE, WORKING_VIEWS_FILE,
                                   write_analysis)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    s = np.linspace(0.0, 1.0, 61)[:, None]
    records = [{"name": "trunk", "parent": None,
                "points": (np.array([-15.0, 2, 1]) + s * [30, 0, 0]).tolist(),
                "radii": np.linspace(1.5, 1.2, 61).tolist()},
               {"name": "side", "parent": "trunk",
                "points": (np.array([0.0, 2, 1]) + s * [0, 10, 10]).tolist(),
                "radii": [0.8] * 61}]
    analysis = analyse(records, REFERENCE_VIEWS)
    folder = tmp_path_factory.mktemp("qca")
    write_analysis(folder, analysis)
    return folder, analysis


def test_vtp_reads_back_with_vtk(written):
    vtk = pytest.importorskip("vtk")
    from vtk.util.numpy_support import vtk_to_numpy

    folder, analysis = written
    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(folder / VTP_FILE))
    reader.Update()
    polydata = reader.GetOutput()
    vessels = analysis.tree.vessels
    assert polydata.GetNumberOfLines() == len(vessels)
    points = vtk_to_numpy(polydata.GetPoints().GetData())
    radius = vtk_to_numpy(polydata.GetPointData().GetArray("Radius"))
    assert polydata.GetPointData().GetScalars().GetName() == "Radius"
    assert polydata.GetFieldData().GetAbstractArray("SPACE").GetValue(0) == "LPS"
    assert points == pytest.approx(np.concatenate([v.points for v in vessels]), abs=1e-4)
    assert radius == pytest.approx(np.concatenate([v.radii for v in vessels]), abs=1e-5)
    lines = polydata.GetLines()
    ids = vtk.vtkIdList()
    lines.InitTraversal()
    start = 0
    for vessel in vessels:
        assert lines.GetNextCell(ids)
        assert [ids.GetId(i) for i in range(ids.GetNumberOfIds())] == list(
            range(start, start + len(vessel.points)))
        start += len(vessel.points)


def test_markups_follow_the_schema_fields(written):
    folder, analysis = written
    document = json.loads((folder / MARKUPS_FILE).read_text())
    assert document["@schema"].endswith("markups-schema-v1.0.3.json#")
    curves = document["markups"]
    assert [c["name"] for c in curves] == ["vessel 1", "branch 1"]
    for curve, vessel in zip(curves, analysis.tree.vessels):
        assert curve["type"] == "Curve" and curve["coordinateSystem"] == "LPS"
        assert len(curve["controlPoints"]) == len(vessel.points)
        (radius,) = curve["measurements"]
        assert radius["name"] == "Radius" and radius["units"] == "mm"
        assert radius["controlPointValues"] == pytest.approx(vessel.radii, abs=1e-4)
        steps = np.diff([p["position"] for p in curve["controlPoints"]], axis=0)
        assert np.linalg.norm(steps, axis=1).max() <= 0.5 + 1e-3


def test_qca_table_has_a_row_per_vessel(written):
    folder, analysis = written
    with (folder / QCA_FILE).open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(analysis.columns)
    assert [r["vessel"] for r in rows] == ["vessel 1", "branch 1"]
    assert float(rows[0]["length_mm"]) == pytest.approx(30.0, rel=1e-3)
    assert float(rows[1]["length_mm"]) == pytest.approx(10 * np.sqrt(2), rel=1e-3)
    assert rows[0]["parent"] == "" and rows[1]["parent"] == "vessel 1"
    assert rows[0]["lesion_start_mm"] == ""  # None: no lesion
    assert (folder / WORKING_VIEWS_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vtp_loads_as_a_slicer_model_in_patient_space(written):
    slicer = pytest.importorskip("slicer")
    folder, analysis = written
    scene = slicer.vtkMRMLScene()
    model = slicer.vtkMRMLModelNode()
    scene.AddNode(model)
    storage = slicer.vtkMRMLModelStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(folder / VTP_FILE))
    assert storage.ReadData(model)
    point = np.array(model.GetPolyData().GetPoint(0))
    assert point == pytest.approx([-1, -1, 1] * analysis.tree.vessels[0].points[0], abs=1e-4)
