"""Import a reconstruction folder into an MRML scene.

Only the scene's own API is used (``AddNewNodeByClass``, storage nodes, ``ReadData``), so
the same function runs in 3D Slicer and against the MRML classes of the ``slicer-core``
package in the tests. The storage nodes convert LPS files to Slicer's RAS world.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEGMENTATION_NODE_NAME = "Coronary arteries"
SEGMENTATION_FILE = "segmentation.seg.nrrd"
SDF_FILE = "sdf.nii.gz"
LABEL_FILE = "label.nii.gz"
SURFACE_FILE = "mesh.vtk"


class ResultImportError(RuntimeError):
    """An output file is missing or unreadable (the message names the file)."""


@dataclass
class ImportedResults:
    """The nodes added to the scene (optional ones are None when not requested)."""

    segmentation: Any
    sdf_volume: Any = None
    label_volume: Any = None
    surface_model: Any = None


def import_results(scene: Any, out_dir: str | Path, sdf_volume: bool = False,
                   label_volume: bool = False, surface_model: bool = False,
                   name: str = SEGMENTATION_NODE_NAME) -> ImportedResults:
    """Load ``segmentation.seg.nrrd`` as a segmentation node ``name`` shown in 3D (closed
    surface created), plus the requested SDF volume, label map volume and surface model.

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
    if results.surface_model is not None:
        model = results.surface_model
        model.CreateDefaultDisplayNodes()
        segments = segmentation.GetSegmentation()
        if segments.GetNumberOfSegments():
            model.GetDisplayNode().SetColor(segments.GetNthSegment(0).GetColor())
