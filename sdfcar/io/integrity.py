"""Full-read checks of image files before SimpleITK reads them.

SimpleITK reads a truncated NIfTI file, gzip-compressed or not, without complaint (the
missing voxels come out as zeros or garbage). Here a ``.gz`` file is decompressed in full
(gzip checks its CRC and length), and a NIfTI file must hold every byte its header
describes. NRRD, MetaImage, PNG and TIFF readers already refuse short data.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import nibabel

from sdfcar.errors import bad_input

_CHUNK = 1 << 20


def verify_image_file(path: Path) -> None:
    """Raise a one-line :class:`~sdfcar.errors.InputError` naming ``path`` when its gzip
    stream is corrupt or truncated, or when a NIfTI file is shorter than its header says."""
    name = path.name.lower()
    size = gzip_length(path) if name.endswith(".gz") else path.stat().st_size
    if name.endswith((".nii", ".nii.gz")):
        needed = nifti_bytes(path)
        if needed is not None and size < needed:
            raise bad_input(str(path), f"truncated: {size} bytes of NIfTI data where its header "
                                       f"describes {needed}")


def gzip_length(path: Path) -> int:
    """Decompressed length of a gzip file, read to the end (CRC and length checked)."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise bad_input(str(path), f"corrupt or truncated gzip data ({error})") from None
    return total


def nifti_bytes(path: Path) -> int | None:
    """Bytes (header, extensions and voxels) a NIfTI file's header describes, or None when
    nibabel cannot parse the header (SimpleITK then says why it cannot read the file)."""
    try:
        data = nibabel.load(path).dataobj  # its offset: the header's, or 352 when that is 0
        return int(data.offset) + math.prod(int(n) for n in data.shape) * data.dtype.itemsize
    except Exception:  # nibabel raises many types on damaged or foreign headers
        return None
