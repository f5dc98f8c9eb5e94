"""A case folder: ``geometry.json`` plus ``view1.*`` and ``view2.*`` images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdfcar.io.atomic import atomic_directory
from sdfcar.errors import bad_input
from sdfcar.geometry import CaseGeometry
from sdfcar.io.images import find_view_file, read_view, write_view
from sdfcar.io.limits import check_memory

GEOMETRY_FILE = "geometry.json"


@dataclass(frozen=True)
class Case:
    """Two views ``(rows, cols)`` float32 and the geometry they were acquired with."""

    geometry: CaseGeometry
    views: tuple[np.ndarray, ...]


def load_case(case_dir: str | Path) -> Case:
    """Read and validate a case folder (view sizes must match the geometry's detectors)."""
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        raise bad_input(str(case_dir), "case folder not found")
    geometry = CaseGeometry.load(case_dir / GEOMETRY_FILE)
    check_memory(geometry, str(case_dir / GEOMETRY_FILE), dense=False)
    views = []
    for index, view in enumerate(geometry.views, start=1):
        path = find_view_file(case_dir, index)
        image = read_view(path)
        if tuple(image.shape) != view.detector_shape:
            raise bad_input(str(path), f"image is {image.shape[0]}x{image.shape[1]} but "
                                       f"views[{index - 1}].detector_shape is "
                                       f"{view.detector_shape[0]}x{view.detector_shape[1]}")
        views.append(image)
    return Case(geometry, tuple(views))


def write_case(case_dir: str | Path, case: Case, overwrite: bool = False) -> Path:
    """Write ``geometry.json`` and ``view{1,2}.nii.gz`` atomically into ``case_dir``."""
    with atomic_directory(case_dir, overwrite) as staging:
        (staging / GEOMETRY_FILE).write_text(case.geometry.to_json())
        for index, (view, image) in enumerate(zip(case.geometry.views, case.views), start=1):
            write_view(staging / f"view{index}.nii.gz", image, view.detector_spacing_mm)
    return Path(case_dir)
