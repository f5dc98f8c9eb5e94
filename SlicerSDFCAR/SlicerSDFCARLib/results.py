"""Import a reconstruction folder into an MRML scene.

Only the scene's own API is used (``AddNewNodeByClass``, storage nodes, ``ReadData``), so
the same function runs in 3D Slicer and against the MRML classes of the ``slicer-core``
package in the tests. The storage nodes convert LPS files to Slicer's RAS world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SEGMENTATION_NODE_NAME = "Coronary arteries"
SEGMENTATION_FILE = "segmentation.seg.nrrd"
SDF_FILE = "sdf.nii.gz"
LABEL_FILE = "label.nii.gz"
SURFACE_FILE = "mesh.vtk"
CENTRELINES_FILE = "centerlines.mrk.json"
QCA_FILE = "qca.csv"
RUN_FILE = "run.json"
#: VTK's type number of double columns (``VTK_DOUBLE`` of vtkType.h).
VTK_DOUBLE = 11
#: Units of the QCA table's columns, by the end of their names.
UNITS = {"_mm": "mm", "_pct": "%"}
#: The per-point measurement of the centreline curves, which colours them.
RADIUS = "Radius"


class ResultImportError(RuntimeError):
    """An output file is missing or unreadable (the message names the file)."""


@dataclass
class ImportedResults:
    """The nodes added to the scene (optional ones are None when not requested)."""

    segmentation: Any
    sdf_volume: Any = None
    label_volume: Any = None
    surface_model: Any = None
    #: One markups curve node per vessel (methods with centrelines: tubes, sdf-tree).
    centrelines: list[Any] = field(default_factory=list)
    #: ``run.json``'s ``qca`` section when it is available (QCA table, working views).
    qca: dict[str, Any] | None = None
    #: ``qca.csv`` as a table node (numbers as double columns, blank cells NaN).
    qca_table: Any = None


def import_results(scene: Any, out_dir: str | Path, sdf_volume: bool = False,
                   label_volume: bool = False, surface_model: bool = False,
                   name: str = SEGMENTATION_NODE_NAME) -> ImportedResults:
    """Load ``segmentation.seg.nrrd`` as a segmentation node ``name`` shown in 3D (closed
    surface created), plus the requested SDF volume, label map volume and surface model, and,
    where the folder has them, the centrelines as markups curves coloured by their
    ``Radius`` measurement with ``run.json``'s QCA section and ``qca.csv`` as a table node.

    All files are read before anything is displayed; if one fails, every node this call
    added is removed again and :class:`ResultImportError` names the file.
    """
    out_dir = Path(out_dir)
    added: list[Any] = []
    try:
        results = ImportedResults(_read(scene, out_dir / SEGMENTATION_FILE, name,
                                        "vtkMRMLSegmentationNode",
                                        "vtkMRMLSegmentationStorageNode", added))
        if sdf_volume:
            results.sdf_volume = _read(scene, out_dir / SDF_FILE, f"{name} SDF",
                                       "vtkMRMLScalarVolumeNode",
                                       "vtkMRMLVolumeArchetypeStorageNode", added)
        if label_volume:
            results.label_volume = _read(scene, out_dir / LABEL_FILE, f"{name} label",
                                         "vtkMRMLLabelMapVolumeNode",
                                         "vtkMRMLVolumeArchetypeStorageNode", added)
        if surface_model:
            results.surface_model = _read(scene, out_dir / SURFACE_FILE, f"{name} surface",
                                          "vtkMRMLModelNode", "vtkMRMLModelStorageNode", added)
        if (out_dir / CENTRELINES_FILE).is_file():
            results.centrelines = _read_curves(scene, out_dir / CENTRELINES_FILE, added)
            results.qca = read_qca(out_dir / RUN_FILE)
            if results.qca is not None:
                results.qca_table = _read_table(scene, out_dir / QCA_FILE, f"{name} QCA",
                                                added)
    except ResultImportError:
        _remove(scene, added)
        raise
    _display(results)
    return results


def import_xa_views(scene: Any, out_dir: str | Path,
                    references: tuple[Any, Any] = (None, None),
                    slices: tuple[int, int] = (0, 0)) -> list[tuple[Any, Any]]:
    """Load the engine's 2D step (``views/view{1,2}/mask.nii.gz`` and ``integral.nii.gz``)
    as a label map "View N vessel mask" (to inspect, or to edit with the Segment Editor and
    give back as a mask) and a scalar volume "View N line integral", per view.

    With a reference angiogram volume, both are placed on its slice ``slices[i]`` (the
    frame of a multi-frame volume; 0 for a sequence or a single frame), so they overlay it
    in the slice views. Returns ``[(mask, integral), (mask, integral)]``; a missing or
    unreadable file removes what this call added and raises :class:`ResultImportError`."""
    views = Path(out_dir) / "views"
    added: list[Any] = []
    loaded = []
    try:
        for index in (1, 2):
            folder = views / f"view{index}"
            mask = _read(scene, folder / "mask.nii.gz", f"View {index} vessel mask",
                         "vtkMRMLLabelMapVolumeNode", "vtkMRMLVolumeArchetypeStorageNode",
                         added)
            integral = _read(scene, folder / "integral.nii.gz", f"View {index} line integral",
                             "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode",
                             added)
            loaded.append((mask, integral))
    except ResultImportError:
        _remove(scene, added)
        raise
    for (mask, integral), reference, frame in zip(loaded, references, slices):
        for node in (mask, integral):
            if reference is not None:
                _place_on_slice(node, reference, frame)
            node.CreateDefaultDisplayNodes()
    return loaded


def _place_on_slice(node: Any, reference: Any, frame: int) -> None:
    """Give ``node`` (one slice) the geometry of slice ``frame`` of ``reference``."""
    node.CopyOrientation(reference)
    directions = np.zeros((3, 3))
    reference.GetIJKToRASDirections(directions)
    origin = np.array(reference.GetOrigin()) + frame * reference.GetSpacing()[2] * directions[:, 2]
    node.SetOrigin(*origin)


def _read(scene: Any, path: Path, name: str, node_class: str, storage_class: str,
          added: list[Any]) -> Any:
    if not path.is_file():
        raise ResultImportError(f"{path}: file not found")
    node = scene.AddNewNodeByClass(node_class, name)
    added.append(node)
    storage = scene.AddNewNodeByClass(storage_class)
    added.append(storage)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        raise ResultImportError(f"{path}: could not be read as {node_class}")
    return node


def _read_curves(scene: Any, path: Path, added: list[Any]) -> list[Any]:
    """One markups curve node per curve of the file, named as in the file."""
    storage = scene.AddNewNodeByClass("vtkMRMLMarkupsJsonStorageNode")
    added.append(storage)
    types: list[str] = []
    storage.GetMarkupsTypesInFile(str(path), types)
    curves = []
    for index in range(len(types)):
        node = storage.AddNewMarkupsNodeFromFile(str(path), "", index)
        if node is None or not node.IsA("vtkMRMLMarkupsCurveNode"):
            raise ResultImportError(f"{path}: markup {index} could not be read as a curve")
        added.append(node)
        if node.GetStorageNode() not in (None, storage):
            added.append(node.GetStorageNode())
        curves.append(node)
    if not curves:
        raise ResultImportError(f"{path}: no curve in the file")
    return curves


def _read_table(scene: Any, path: Path, name: str, added: list[Any]) -> Any:
    """``path`` (CSV) as a table node whose columns of numbers (every non-blank cell one)
    are double columns with NaN for blank cells and units from :data:`UNITS`."""
    table = _read(scene, path, name, "vtkMRMLTableNode", "vtkMRMLTableStorageNode", added)
    for column in range(table.GetNumberOfColumns()):
        title = table.GetColumnName(column)
        cells = [table.GetCellText(row, column) for row in range(table.GetNumberOfRows())]
        if not all(_is_number(cell) for cell in cells if cell):
            continue
        table.SetColumnProperty(title, "nullValue", "nan")
        table.SetColumnType(title, VTK_DOUBLE)
        for ending, unit in UNITS.items():
            if title.endswith(ending):
                table.SetColumnUnitLabel(title, unit)
    return table


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_qca(path: Path) -> dict[str, Any] | None:
    """The ``qca`` section of ``run.json`` when it is available, else None."""
    try:
        section = json.loads(path.read_text()).get("qca")
    except (OSError, ValueError, AttributeError) as error:
        raise ResultImportError(f"{path}: not a readable run record ({error})") from None
    return section if isinstance(section, dict) and section.get("available") else None


def qca_line(qca: dict[str, Any]) -> str:
    """One line for the module's status: the vessels measured, the worst stenosis and the
    best working view (``LAO 15 / CAU 5``)."""
    vessels = qca.get("vessels") or []
    views = qca.get("working_views") or {}
    parts = [f"QCA of {len(vessels)} vessel(s) in qca.csv"]
    stenoses = [v for v in vessels if v.get("diameter_stenosis_pct") is not None]
    if stenoses:
        worst = max(stenoses, key=lambda v: v["diameter_stenosis_pct"])
        parts.append(f"largest diameter stenosis {worst['diameter_stenosis_pct']:.0f} % in "
                     f"{worst['vessel']}")
    if views.get("best"):
        best = views["best"][0]
        primary, secondary = best["primary_deg"], best["secondary_deg"]
        parts.append(f"best working view for {views.get('vessel')}: "
                     f"{'LAO' if primary >= 0 else 'RAO'} {abs(primary):.0f} / "
                     f"{'CRA' if secondary >= 0 else 'CAU'} {abs(secondary):.0f} "
                     f"(foreshortening {max(100 * best['foreshortening'], 0.0):.0f} %)")
    return "; ".join(parts)


#: LPS -> RAS: the first two axes change sign.
LPS_TO_RAS = (-1.0, -1.0, 1.0)
#: Distance of the 3D view's camera from the target in a working view (mm).
CAMERA_DISTANCE_MM = 400.0


def working_view_camera(results: ImportedResults, rank: int = 0,
                        distance_mm: float = CAMERA_DISTANCE_MM
                        ) -> tuple[list[float], list[float], list[float]] | None:
    """Camera position, focal point and view-up (RAS) that show the tree as the ``rank``-th
    best working view's angiogram does: looking from the detector towards the source at the
    target vessel's centre, image up as view-up. None without QCA."""
    views = (results.qca or {}).get("working_views") or {}
    best = views.get("best") or []
    if rank >= len(best):
        return None
    curves = [c for c in results.centrelines if c.GetName() == views.get("vessel")]
    points = [curves[0].GetNthControlPointPositionWorld(i)
              for i in range(curves[0].GetNumberOfControlPoints())] if curves else [(0, 0, 0)]
    focal = [sum(p[axis] for p in points) / len(points) for axis in range(3)]
    beam = [LPS_TO_RAS[axis] * best[rank]["beam_lps"][axis] for axis in range(3)]
    up = [LPS_TO_RAS[axis] * best[rank]["image_up_lps"][axis] for axis in range(3)]
    return [f + distance_mm * b for f, b in zip(focal, beam)], focal, up


def _remove(scene: Any, nodes: list[Any]) -> None:
    """Remove ``nodes`` and the display nodes reading may have given them."""
    for node in reversed(nodes):
        count = node.GetNumberOfDisplayNodes() if node.IsA("vtkMRMLDisplayableNode") else 0
        for display in [node.GetNthDisplayNode(i) for i in range(count)]:
            scene.RemoveNode(display)
        scene.RemoveNode(node)


def _display(results: ImportedResults) -> None:
    segmentation = results.segmentation
    segmentation.CreateDefaultDisplayNodes()
    segmentation.CreateClosedSurfaceRepresentation()
    segmentation.GetDisplayNode().SetVisibility3D(True)
    for node in (results.sdf_volume, results.label_volume):
        if node is not None:
            node.CreateDefaultDisplayNodes()
    for curve in results.centrelines:
        display = curve.GetDisplayNode()
        if display is None:
            curve.CreateDefaultDisplayNodes()
            display = curve.GetDisplayNode()
        display.SetActiveScalarName(RADIUS)
        display.SetScalarVisibility(True)
    if results.surface_model is not None:
        model = results.surface_model
        model.CreateDefaultDisplayNodes()
        segments = segmentation.GetSegmentation()
        if segments.GetNumberOfSegments():
            model.GetDisplayNode().SetColor(segments.GetNthSegment(0).GetColor())
