"""Pixel data of XA files: decoding the frames and the Pixel Intensity Relationship.

**Decoding.** pydicom decodes uncompressed and RLE Lossless data itself; JPEG (baseline,
extended, lossless) needs ``pylibjpeg`` + ``pylibjpeg-libjpeg``, JPEG 2000 ``pylibjpeg-openjpeg``
and JPEG-LS ``pyjpegls`` (all dependencies of sdfcar; they work with pydicom 2.4 and 3).
When pydicom cannot decode compressed data, SimpleITK's GDCM is tried; when both fail the
error names the file, the transfer syntax and the package to install.

**Intensity relationship** (0028,1040), what :meth:`IntensityModel.attenuation` does with it
(vessel extraction needs ``-ln I`` up to an additive constant and a monotone rescaling,
vessels bright; only the line-integral proxy's scale depends on the exact coding):

* ``LIN``: values proportional to the X-ray intensity: ``-ln(value)``.
* ``LOG``: values proportional to ``ln I``: linear in the value, the stored range taken
  to span :data:`LOG_NEPERS_FULL_RANGE` nepers (DICOM does not record the scale).
* ``DISP``: values already processed for display (roughly logarithmic): treated as LOG.
* ``DRM`` (GE's *Dynamic Range Management*, not a DICOM defined term; the GE phantom
  runs IM5/IM6 carry it, IM1 of the same system says DISP): a display-processed image,
  treated as DISP, with a note.
* missing or another term: taken as LIN, with a note.

The sign (0028,1041) flips the values first (MONOCHROME1 means -1 when it is absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import UID

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut
except ImportError:  # pydicom 2.x (the MONAI Label environment pins it)
    from pydicom.pixel_data_handlers.util import apply_modality_lut

from sdfcar.errors import bad_input

#: Convention for LOG (and DISP) pixel data, whose scale DICOM does not record: the stored
#: range 0 .. 2^BitsStored - 1 spans this many nepers (e^8, about 3000:1) of X-ray
#: intensity. Only the line-integral proxy's scale depends on it (calibrate with --mu).
LOG_NEPERS_FULL_RANGE = 8.0
#: Relationships taken as logarithmic display data, and the one they are treated as.
DISPLAY_RELATIONSHIPS = {"LOG": "LOG", "DISP": "DISP", "DRM": "DISP"}

_JPEG = "pylibjpeg pylibjpeg-libjpeg"
_J2K = "pylibjpeg pylibjpeg-openjpeg"
#: Package(s) that let pydicom decode each compressed transfer syntax (by UID keyword).
DECODER_PACKAGES = {
    "JPEGBaseline8Bit": _JPEG, "JPEGExtended12Bit": _JPEG, "JPEGLossless": _JPEG,
    "JPEGLosslessSV1": _JPEG, "JPEG2000Lossless": _J2K, "JPEG2000": _J2K,
    "HTJ2KLossless": _J2K, "HTJ2KLosslessRPCL": _J2K, "HTJ2K": _J2K,
    "JPEGLSLossless": "pyjpegls", "JPEGLSNearLossless": "pyjpegls",
    "RLELossless": "pylibjpeg-rle (pydicom's own decoder needs numpy only)",
}


def reason(error: BaseException) -> str:
    """The first line of an exception's message with its type, at most ~120 characters."""
    text = str(error).strip().splitlines()
    if not text:
        return type(error).__name__
    first = text[0] if len(text[0]) <= 120 else text[0][:117] + "..."
    return f"{type(error).__name__}: {first}"


def _check_length(dataset: Dataset, path: Path) -> None:
    """Uncompressed pixel data must hold Rows x Columns x frames x samples x bits."""
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is not None and UID(syntax).is_compressed:
        return  # encapsulated: the decoder must decode every frame
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    bits = int(dataset.get("BitsAllocated", 0) or 0)
    pixels = (int(dataset.get("Rows", 0) or 0) * int(dataset.get("Columns", 0) or 0) * frames
              * int(dataset.get("SamplesPerPixel", 1) or 1))
    needed = (pixels * bits + 7) // 8
    have = len(dataset.PixelData)
    if have < needed:
        raise bad_input(str(path), f"pixel data truncated: {have} bytes where Rows x Columns x "
                                   f"{frames} frame(s) x {bits} bits need {needed}")


def _pydicom_array(dataset: Dataset) -> np.ndarray:
    return dataset.pixel_array


def _gdcm_array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _decoded(dataset: Dataset, path: Path) -> np.ndarray:
    try:
        return _pydicom_array(dataset)
    except Exception as error:  # decoders raise many types; retry compressed data with GDCM
        syntax = dataset.file_meta.get("TransferSyntaxUID")
        if syntax is None or not UID(syntax).is_compressed:
            raise bad_input(str(path), f"cannot read the pixel data ({reason(error)})") from None
        try:
            return _gdcm_array(path)
        except RuntimeError:
            package = DECODER_PACKAGES.get(UID(syntax).keyword)
            hint = (f"; install a decoder: pip install {package}" if package
                    else "; no known decoder")
            raise bad_input(str(path), f"cannot decode the pixel data, transfer syntax "
                                       f"{UID(syntax).name} ({syntax}){hint}") from None


def decode_frames(dataset: Dataset, path: Path) -> np.ndarray:
    """The frames ``(frames, rows, cols)`` after the modality LUT (float32 when one applies)."""
    _check_length(dataset, path)
    array = np.asarray(_decoded(dataset, path))
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] != frames:
        raise bad_input(str(path), f"pixel data has shape {array.shape}, expected {frames} "
                                   "grayscale frame(s)")
    if "RescaleSlope" in dataset or "ModalityLUTSequence" in dataset:
        array = apply_modality_lut(array, dataset).astype(np.float32)
    return array


@dataclass(frozen=True)
class IntensityModel:
    """How stored pixel values relate to X-ray intensity (see the module doc)."""

    relationship: str  # LIN, LOG or DISP: how the values are used
    sign: int  # +1: higher values mean more X-ray intensity (vessels dark)
    bits_stored: int
    stored_as: str = ""  # the file's term when it differs (DRM, missing, ...)

    def attenuation(self, stored: np.ndarray) -> np.ndarray:
        """``-ln(I)`` up to an additive constant (vessels bright), float64.

        LIN: ``-ln(value)``; LOG and DISP: linear in the value with the scale of
        :data:`LOG_NEPERS_FULL_RANGE`; a sign of -1 flips the values first."""
        top = float(2**self.bits_stored - 1)
        values = np.asarray(stored, dtype=np.float64)
        if self.sign < 0:
            values = top - values
        if self.relationship == "LIN":
            return -np.log(np.maximum(values, 0.5))
        return -values * (LOG_NEPERS_FULL_RANGE / top)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping for reports."""
        found = {"relationship": self.relationship, "sign": self.sign,
                 "bits_stored": self.bits_stored}
        return {**found, "stored_as": self.stored_as} if self.stored_as else found


def intensity_model(relationship: Any, sign: Any, photometric: str, bits: int,
                    notes: list[str]) -> IntensityModel:
    """The :class:`IntensityModel` of the tag values; appends what was assumed to ``notes``."""
    stored = str(relationship or "").upper()
    used = "LIN" if stored == "LIN" else DISPLAY_RELATIONSHIPS.get(stored, "LIN")
    if used == "LIN" and stored != "LIN":
        notes.append(f"Pixel Intensity Relationship (0028,1040) is "
                     f"{stored or 'missing'}; pixel values taken as linear")
    elif stored not in ("LIN", used):
        notes.append(f"Pixel Intensity Relationship (0028,1040) is {stored} (vendor "
                     f"display processing); taken as {used}")
    if sign not in (1, -1):
        sign = -1 if photometric.upper() == "MONOCHROME1" else 1
    if used != "LIN":
        notes.append(f"{used} pixel data: no recorded scale; the line-integral proxy is "
                     "scaled so that it equals the vessels' widths along their centrelines "
                     "(give --mu to set it, or use mask targets)")
    return IntensityModel(used, int(sign), bits, "" if stored == used else stored or "missing")
