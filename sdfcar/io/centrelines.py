"""The files of a reconstruction's centreline analysis.

* ``centerlines.mrk.json``: 3D Slicer markups (schema :data:`MARKUPS_SCHEMA`), one ``Curve``
  per vessel in LPS mm, its samples as control points (at most 0.5 mm apart) and a
  per-point measurement ``Radius`` (mm).
* ``centerlines.vtp``: VTK XML PolyData (ASCII), one polyline per vessel in LPS mm, point
  data ``Radius`` (mm) and ``VesselId`` (the vessel's index in the markups file and in
  ``run.json``'s ``qca.topology``), cell data ``VesselId``, field data ``SPACE`` = ``LPS``
  (what 3D Slicer's model reader looks for).
* ``qca.csv``: the QCA table, one row per vessel (``docs/qca.md``).
* ``working_views.png``: the working-view map (:mod:`sdfcar.io.working_views`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sdfcar.io.working_views import write_working_views

if TYPE_CHECKING:
    from sdfcar.analysis.summary import Analysis
    from sdfcar.analysis.tree import CentrelineTree

MARKUPS_FILE = "centerlines.mrk.json"
VTP_FILE = "centerlines.vtp"
QCA_FILE = "qca.csv"
WORKING_VIEWS_FILE = "working_views.png"
MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/"
                  "Markups/Resources/Schema/markups-schema-v1.0.3.json#")
RADIUS = "Radius"
#: The field 3D Slicer reads a model's coordinate system from (the bytes of "LPS", then 0).
SPACE_LPS = ('<FieldData><Array type="String" Name="SPACE" NumberOfTuples="1" format="ascii">'
             '76 80 83 0</Array></FieldData>')


def write_analysis(folder: Path, analysis: Analysis) -> None:
    """Write the four files of ``analysis`` into ``folder``."""
    write_markups(folder / MARKUPS_FILE, analysis.tree)
    write_vtp(folder / VTP_FILE, analysis.tree)
    write_qca_csv(folder / QCA_FILE, analysis)
    write_working_views(folder / WORKING_VIEWS_FILE, analysis)


def markups(tree: CentrelineTree) -> dict:
    """The markups document of ``tree`` (module docstring)."""
    curves = []
    for vessel in tree.vessels:
        points = [{"id": str(n + 1), "label": f"{vessel.name}-{n + 1}",
                   "position": np.round(p, 3).tolist(), "positionStatus": "defined"}
                  for n, p in enumerate(vessel.points)]
        curves.append({
            "type": "Curve", "name": vessel.name, "coordinateSystem": "LPS",
            "coordinateUnits": "mm", "locked": True, "labelFormat": f"{vessel.name}-%d",
            "controlPoints": points,
            "measurements": [{"name": RADIUS, "enabled": True, "units": "mm",
                              "printFormat": "%5.3f %s",
                              "controlPointValues": np.round(vessel.radii, 4).tolist()}],
            "display": {"pointLabelsVisibility": False, "glyphScale": 1.0,
                        "textScale": 0.0}})
    return {"@schema": MARKUPS_SCHEMA, "markups": curves}


def write_markups(path: str | Path, tree: CentrelineTree) -> Path:
    """Write ``centerlines.mrk.json``."""
    path = Path(path)
    path.write_text(json.dumps(markups(tree), indent=1) + "\n")
    return path


def write_vtp(path: str | Path, tree: CentrelineTree) -> Path:
    """Write ``centerlines.vtp`` (module docstring)."""
    points = np.concatenate([v.points for v in tree.vessels])
    radii = np.concatenate([v.radii for v in tree.vessels])
    ids = np.concatenate([np.full(len(v.points), n) for n, v in enumerate(tree.vessels)])
    offsets = np.cumsum([len(v.points) for v in tree.vessels])

    def array(name: str, kind: str, values: np.ndarray, components: int = 1) -> str:
        text = " ".join(f"{x:.6g}" if kind.startswith("Float") else str(int(x))
                        for x in np.ravel(values))
        return (f'<DataArray type="{kind}" Name="{name}" NumberOfComponents="{components}" '
                f'format="ascii">{text}</DataArray>')

    piece = (f'<Piece NumberOfPoints="{len(points)}" NumberOfVerts="0" '
             f'NumberOfLines="{len(tree.vessels)}" NumberOfStrips="0" NumberOfPolys="0">\n'
             f'<PointData Scalars="{RADIUS}">\n{array(RADIUS, "Float32", radii)}\n'
             f'{array("VesselId", "Int32", ids)}\n</PointData>\n'
             f'<CellData>\n{array("VesselId", "Int32", np.arange(len(tree.vessels)))}\n'
             f'</CellData>\n<Points>\n{array("Points", "Float32", points, 3)}\n</Points>\n'
             f'<Lines>\n{array("connectivity", "Int64", np.arange(len(points)))}\n'
             f'{array("offsets", "Int64", offsets)}\n</Lines>\n</Piece>')
    path = Path(path)
    path.write_text('<?xml version="1.0"?>\n<!-- sdfcar centrelines, LPS mm -->\n'
                    '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" '
                    f'header_type="UInt64">\n<PolyData>\n{SPACE_LPS}\n{piece}\n</PolyData>\n'
                    '</VTKFile>\n')
    return path


def write_qca_csv(path: str | Path, analysis: Analysis) -> Path:
    """Write ``qca.csv``: the columns of :attr:`Analysis.columns`, empty cells for None."""
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, analysis.columns, extrasaction="ignore")
        writer.writeheader()
        for row in analysis.rows:
            writer.writerow({key: "" if value is None else
                             f"{value:.4g}" if isinstance(value, float) else value
                             for key, value in row.items()})
    return path
