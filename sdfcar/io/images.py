"""Reading and writing volumes and 2D views with their physical geometry (SimpleITK).

Volumes are numpy arrays indexed ``(i, j, k)`` with the LPS geometry of a
:class:`~sdfcar.geometry.contract.VolumeGrid`; files keep their true origin, spacing and direction,
so NIfTI/MHA/NRRD outputs open in place in 3D Slicer. Views are ``(rows, cols)`` arrays.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sdfcar.io.atomic import atomic_file
from sdfcar.errors import bad_input
from sdfcar.geometry import VolumeGrid
from sdfcar.io.integrity import verify_image_file
from sdfcar.io.limits import check_bytes

#: Bytes an image takes per value once read: the file's array and a float copy.
BYTES_PER_VALUE = 8
VIEW_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".png", ".tif", ".tiff", ".dcm")


def _read(path: str | Path) -> sitk.Image:
    path = Path(path)
    if not path.is_file():
        raise bad_input(str(path), "file not found")
    verify_image_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        size = list(reader.GetSize())
        check_bytes(BYTES_PER_VALUE * math.prod(size) * reader.GetNumberOfComponents(),
                    str(path), f"an image of size {size}")
        return reader.Execute()
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown"
        raise bad_input(str(path), f"cannot read image ({reason[:160]})") from None


def _finite(array: np.ndarray, path: str | Path) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise bad_input(str(path), "contains NaN or infinite values")
    return array


def read_volume(path: str | Path) -> tuple[np.ndarray, VolumeGrid]:
    """Read a 3D scalar image; returns the ``(i, j, k)`` array and its grid."""
    image = _read(path)
    size = image.GetSize()
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise bad_input(str(path), f"expected a 3D scalar volume, got {image.GetDimension()}D "
                                   f"with {image.GetNumberOfComponentsPerPixel()} component(s)")
    if min(size) < 2:
        raise bad_input(str(path), f"expected at least 2 voxels along each axis, got size {size}")
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    grid = VolumeGrid.from_origin(size, image.GetSpacing(), image.GetOrigin(),
                                  image.GetDirection())
    return _finite(array, path), grid


def write_volume(path: str | Path, array: np.ndarray, grid: VolumeGrid,
                 overwrite: bool = False) -> Path:
    """Write an ``(i, j, k)`` array with the LPS geometry of ``grid`` (atomic)."""
    if tuple(array.shape) != grid.shape:
        raise ValueError(f"array shape {array.shape} does not match grid {grid.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    image.SetSpacing(grid.spacing_mm)
    image.SetOrigin(tuple(float(v) for v in grid.origin_mm))
    image.SetDirection(grid.direction)
    with atomic_file(path, overwrite) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=True)
    return Path(path)


def read_view(path: str | Path) -> np.ndarray:
    """Read a 2D view as float32 ``(rows, cols)``; a 3D file must have one slice."""
    image = _read(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise bad_input(str(path), "expected a grayscale image, got "
                                   f"{image.GetNumberOfComponentsPerPixel()} components (RGB?)")
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise bad_input(str(path), f"expected a 2D image [rows, cols], got shape {array.shape}")
    return _finite(array.astype(np.float32), path)


def write_view(path: str | Path, array: np.ndarray, spacing_mm: tuple[float, float],
               overwrite: bool = False) -> Path:
    """Write a ``(rows, cols)`` float32 view with its (row, col) pixel spacing (atomic)."""
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.SetSpacing((float(spacing_mm[1]), float(spacing_mm[0])))
    with atomic_file(path, overwrite) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=True)
    return Path(path)


def find_view_file(case_dir: str | Path, index: int) -> Path:
    """The ``view{index}.*`` file of a case folder (one of :data:`VIEW_SUFFIXES`)."""
    case_dir = Path(case_dir)
    found = [case_dir / f"view{index}{s}" for s in VIEW_SUFFIXES
             if (case_dir / f"view{index}{s}").is_file()]
    if not found:
        raise bad_input(str(case_dir / f"view{index}.*"),
                        f"missing view file (expected one of {', '.join(VIEW_SUFFIXES)})")
    if len(found) > 1:
        raise bad_input(str(case_dir), f"several files for view {index}: "
                                       f"{', '.join(p.name for p in found)}")
    return found[0]
