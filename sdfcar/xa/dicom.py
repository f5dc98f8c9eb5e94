"""X-ray angiography (XA) DICOM files: cine runs, their frames and per-frame geometry.

:func:`read_xa` reads a single- or multi-frame X-Ray Angiographic (or Enhanced XA) file
with pydicom: the frames (:mod:`sdfcar.xa.pixels`: decoders, intensity relationship), the
C-arm geometry of every frame (:meth:`sdfcar.geometry.contract.ViewGeometry.from_dicom_tags`;
per-frame angles from the Positioner Angle Increments or the per-frame functional groups; the
detector spacing from the fallback chain of :mod:`sdfcar.xa.spacing`), the frame times and
the R-wave frames of an ECG trigger.

The stored image is taken as the detector, centred on the central ray (no principal-point
offset unless ``detector_offset_mm`` is given): non-square images and spacings are used as
they are, but a cropped image whose field of view is not centred on the detector shifts the
principal point by an amount the legacy XA tags do not give (Field of View Origin counts
detector elements, whose size and count they do not record). The field-of-view, detector,
shutter and collimator tags are kept in :attr:`XARun.detector_tags` for the report, and a
note says when the image may be such a crop. Geometry overrides (contract fields,
e.g. from a ``--geometry`` JSON file) replace tags or stand in for missing ones.

Files that are not XA acquisitions (other SOP classes or modalities, colour secondary
captures), damaged files and files whose geometry is incomplete raise a one-line
:class:`~sdfcar.errors.InputError` naming the file and, where it applies, the tag.
"""

from __future__ import annotations

import datetime
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import DT

from sdfcar.errors import InputError, bad_input
from sdfcar.geometry import CORRECTION_KEYS, ViewGeometry
from sdfcar.xa.overrides import checked_overrides
from sdfcar.xa.pixels import IntensityModel, decode_frames, intensity_model, reason
from sdfcar.xa.spacing import Spacing, detector_spacing
from sdfcar.xa.tags import numbers
from sdfcar.xa.table import TablePosition, read_table_position

XA_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.12.1"
ENHANCED_XA_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.12.1.1"
ACCEPTED_SOP_CLASSES = (XA_SOP_CLASS, ENHANCED_XA_SOP_CLASS)
_GEOMETRY_KEYWORDS = ("PositionerPrimaryAngle", "PositionerSecondaryAngle",
                      "DistanceSourceToDetector", "DistanceSourceToPatient",
                      "DistanceSourceToIsocenter", "Rows", "Columns")
_INCREMENTS = {"PositionerPrimaryAngle": "PositionerPrimaryAngleIncrement",
               "PositionerSecondaryAngle": "PositionerSecondaryAngleIncrement"}
#: Tags describing the imaged area on the detector, kept for the report (and the shutter).
DETECTOR_TAGS = ("FieldOfViewShape", "FieldOfViewDimensions", "FieldOfViewOrigin",
                 "DetectorActiveShape", "DetectorActiveDimensions", "DetectorActiveOrigin",
                 "DetectorElementSpacing", "ShutterShape", "ShutterLeftVerticalEdge",
                 "ShutterRightVerticalEdge", "ShutterUpperHorizontalEdge",
                 "ShutterLowerHorizontalEdge", "CollimatorShape",
                 "CollimatorLeftVerticalEdge", "CollimatorRightVerticalEdge",
                 "CollimatorUpperHorizontalEdge", "CollimatorLowerHorizontalEdge")
_ANGLE_FIELDS = {"PositionerPrimaryAngle": "primary_angle_deg",
                 "PositionerSecondaryAngle": "secondary_angle_deg"}


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class XARun:
    """One XA file: its frames, per-frame geometry and timing."""

    path: Path
    pixels: np.ndarray  # (frames, rows, cols) stored values after the modality LUT
    views: tuple[ViewGeometry, ...]  # geometry of each frame
    intensity: IntensityModel
    frame_times_ms: np.ndarray | None  # acquisition time of each frame, from 0
    r_wave_frames: tuple[int, ...]  # 1-based frames at the R waves (end-diastole)
    sop_class: str
    warnings: tuple[str, ...] = ()
    spacing_sources: tuple[str, ...] = ()  # where each frame's detector spacing came from
    detector_tags: Mapping[str, Any] = field(default_factory=dict)  # see DETECTOR_TAGS
    table: TablePosition | None = None  # where the run records it (sdfcar.xa.table)
    heart_rate_bpm: float | None = None  # Heart Rate (0018,1088), when recorded

    @property
    def number_of_frames(self) -> int:
        """Frames in the run."""
        return int(self.pixels.shape[0])

    def _index(self, number: int) -> int:
        if not 1 <= number <= self.number_of_frames:
            raise bad_input(f"{self.path}: frame",
                            f"expected 1 to {self.number_of_frames}, got {number}")
        return number - 1

    def attenuation(self, number: int) -> np.ndarray:
        """``-ln(I)`` of frame ``number`` (see :meth:`IntensityModel.attenuation`)."""
        return self.intensity.attenuation(self.pixels[self._index(number)])

    def view(self, number: int) -> ViewGeometry:
        """Geometry of frame ``number``."""
        return self.views[self._index(number)]

    def spacing_source(self, number: int) -> str:
        """Where frame ``number``'s detector spacing came from (:mod:`sdfcar.xa.spacing`)."""
        return self.spacing_sources[self._index(number)]

    def pixel_mm(self, number: int = 1) -> float:
        """Pixel size at the isocenter (mean detector spacing x SOD / SID) in mm."""
        view = self.view(number)
        return float(np.mean(view.detector_spacing_mm) * view.source_to_isocenter_mm
                     / view.source_to_detector_mm)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description of the file for reports."""
        return {"file": str(self.path), "sop_class": self.sop_class,
                "frames": self.number_of_frames,
                "rows_cols": list(self.pixels.shape[1:]),
                "intensity": self.intensity.to_dict(),
                "frame_times": self.frame_times_ms is not None,
                "ecg": bool(self.r_wave_frames),
                "r_wave_frames": list(self.r_wave_frames),
                "heart_rate_bpm": self.heart_rate_bpm,
                "detector_spacing_source": sorted(set(self.spacing_sources)),
                "detector_tags": dict(self.detector_tags),
                "table": None if self.table is None else self.table.to_dict(),
                "warnings": list(self.warnings)}


def read_xa(path: str | Path, overrides: Mapping[str, Any] | None = None) -> XARun:
    """Read an XA DICOM file; ``overrides`` maps contract fields (see
    :data:`sdfcar.xa.overrides.OVERRIDE_KEYS`) to values that replace its geometry tags for every frame."""
    path = Path(path)
    dataset = _open(path)
    _check_kind(dataset, path)
    pixels = decode_frames(dataset, path)
    overrides = checked_overrides(overrides, f"{path}: geometry override")
    correction = {key: overrides.pop(key) for key in CORRECTION_KEYS if key in overrides}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        framed = [_frame_view(dataset, path, index, len(pixels), overrides)
                  for index in range(len(pixels))]
    try:
        views = tuple(replace(view, **correction) for view, _ in framed)
    except InputError as error:  # "view.<field>: ..." from the contract's checks
        raise bad_input(f"{path}: geometry override", str(error).removeprefix("view.")) from None
    spacings = [spacing for _, spacing in framed]
    notes = list(dict.fromkeys([s.note for s in spacings if s.note]
                               + [str(w.message) for w in caught]))
    detector = {keyword: _plain(dataset.get(keyword)) for keyword in DETECTOR_TAGS
                if dataset.get(keyword) not in (None, "")}
    if "FieldOfViewOrigin" in detector and "detector_offset_mm" not in overrides:
        notes.append("Field of View Origin (0018,7030) present: if the image is a crop off the "
                     "detector's centre the principal point moves, which the tags do not give; "
                     "taken as centred (give detector_offset_mm with --geometry otherwise)")
    first = views[0].detector_shape
    if pixels.shape[1:] != first:
        raise bad_input(str(path), f"pixel data is {pixels.shape[1]}x{pixels.shape[2]} but the "
                                   f"geometry says {first[0]}x{first[1]}")
    times = _frame_times(dataset, len(pixels), notes)
    r_waves = _r_wave_frames(dataset, len(pixels), times, notes)
    sop = str(dataset.get("SOPClassUID", "")) or XA_SOP_CLASS
    relationship, _ = _frame_value(dataset, 0, "PixelIntensityRelationship")
    sign, _ = _frame_value(dataset, 0, "PixelIntensityRelationshipSign")
    intensity = intensity_model(relationship, sign,
                                str(dataset.get("PhotometricInterpretation", "")),
                                int(dataset.get("BitsStored") or 8 * pixels.itemsize), notes)
    if not r_waves and len(pixels) > 1:
        notes.append("no ECG (R-wave) information: the frame is chosen by vessel contrast alone")
    rate = _plain(dataset.get("HeartRate"))
    rate = float(rate) if isinstance(rate, (int, float)) and 20 <= rate <= 300 else None
    return XARun(path, pixels, views, intensity, times, r_waves, UID(sop).name, tuple(notes),
                 tuple(s.source for s in spacings), detector, read_table_position(dataset),
                 rate)


def _open(path: Path) -> Dataset:
    if not path.is_file():
        raise bad_input(str(path), "file not found")
    logger = logging.getLogger("pydicom")  # it logs each warning too: they are handled here
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises many types on damaged or foreign files
        raise bad_input(str(path), f"not a readable DICOM file ({reason(error)})") from None
    finally:
        logger.setLevel(level)
    for warning in caught:
        if "End of file reached" in str(warning.message):  # pydicom's word for truncation
            raise bad_input(str(path), f"truncated file ({warning.message})")
        warnings.warn(warning.message, warning.category, stacklevel=2)
    return dataset


def _check_kind(dataset: Dataset, path: Path) -> None:
    if "PixelData" not in dataset:
        raise bad_input(str(path), "no pixel data (expected an XA image)")
    samples = dataset.get("SamplesPerPixel", 1)
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise bad_input(str(path), f"colour image (PhotometricInterpretation {photometric or '?'}, "
                                   f"SamplesPerPixel {samples}), e.g. a secondary-capture "
                                   "screenshot; expected a grayscale XA acquisition")
    sop = str(dataset.get("SOPClassUID", ""))
    modality = str(dataset.get("Modality", "") or "?")
    if sop in ACCEPTED_SOP_CLASSES or (not sop and modality == "XA"):
        return
    name = UID(sop).name if sop else "missing"
    raise bad_input(str(path), f"not an X-ray angiogram (Modality {modality}, SOP class {name}); "
                               "expected X-Ray Angiographic or Enhanced XA Image Storage")


def _plain(value: Any) -> Any:
    """pydicom values as plain Python numbers, strings or lists."""
    if isinstance(value, (MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if isinstance(value, float) else int(value)
    return value


def _nested(item: Dataset, keyword: str, depth: int = 3) -> Any:
    """Value of ``keyword`` in a functional-group item or the sequences it holds."""
    value = item.get(keyword)
    if value is not None and value != "":
        return value
    if depth == 0:
        return None
    for element in item:
        if element.VR == "SQ":
            for child in element.value:
                found = _nested(child, keyword, depth - 1)
                if found is not None:
                    return found
    return None


def _frame_value(dataset: Dataset, index: int, keyword: str) -> tuple[Any, bool]:
    """``(value, per_frame)``: the per-frame functional group of frame ``index`` wins, then
    the shared functional groups, then the top level (``per_frame`` is False there)."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame):
        found = _nested(per_frame[index], keyword)
        if found is not None:
            return _plain(found), True
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared:
        found = _nested(shared[0], keyword)
        if found is not None:
            return _plain(found), True
    value = dataset.get(keyword)
    return (None if value == "" else _plain(value)), False


def _increment(dataset: Dataset, path: Path, keyword: str, index: int, frames: int) -> float:
    """Angle change of frame ``index`` from a Positioner Angle Increment: one value is a
    constant step per frame, one value per frame is an offset from the initial angle."""
    name = _INCREMENTS[keyword]
    steps = _plain(dataset.get(name))
    if steps is None or steps == "":
        return 0.0
    steps = numbers(steps, f"{path}: {name}")
    if len(steps) == 1:
        return index * steps[0]
    if len(steps) != frames:
        raise bad_input(f"{path}: {name}", f"has {len(steps)} values; expected 1 or one per "
                                           f"frame ({frames})")
    return steps[index]


def _frame_view(dataset: Dataset, path: Path, index: int, frames: int,
                overrides: Mapping[str, Any]) -> tuple[ViewGeometry, Spacing]:
    """The geometry of frame ``index`` and where its detector spacing came from."""
    tags = {}
    for keyword in _GEOMETRY_KEYWORDS:
        value, per_frame = _frame_value(dataset, index, keyword)
        if value is None:
            continue
        if keyword in _INCREMENTS and not per_frame and _ANGLE_FIELDS[keyword] not in overrides:
            value = _wrap(float(value) + _increment(dataset, path, keyword, index, frames))
        tags[keyword] = value
    spacing = detector_spacing(lambda keyword: _frame_value(dataset, index, keyword)[0],
                               overrides, str(path))
    merged = {**overrides, "detector_spacing_mm": list(spacing.spacing_mm)}
    return ViewGeometry.from_dicom_tags(tags, str(path), merged), spacing


def _wrap(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0 if not -180.0 <= angle <= 180.0 else angle


def _frame_times(dataset: Dataset, frames: int, notes: list[str]) -> np.ndarray | None:
    """Acquisition time of each frame (ms from the first): Frame Time Vector, Frame Time,
    Cine Rate, or the Frame Acquisition DateTime of Enhanced XA."""
    vector = _plain(dataset.get("FrameTimeVector"))
    vector = [vector] if isinstance(vector, (int, float)) else vector
    if isinstance(vector, list) and len(vector) == frames:
        steps = np.asarray(vector, dtype=float)
        return np.cumsum(steps) - steps[0]
    if vector not in (None, ""):
        notes.append(f"Frame Time Vector (0018,1065) ignored: it has "
                     f"{len(vector) if isinstance(vector, list) else 1} values for "
                     f"{frames} frames")
    step = _plain(dataset.get("FrameTime"))
    if isinstance(step, (int, float)) and step > 0:
        return np.arange(frames) * float(step)
    rate = _plain(dataset.get("CineRate"))
    if isinstance(rate, (int, float)) and rate > 0:
        return np.arange(frames) * 1000.0 / float(rate)
    stamps = [_frame_value(dataset, i, "FrameAcquisitionDateTime")[0] for i in range(frames)]
    if all(stamps):
        try:
            moments = [DT(s) for s in stamps]
        except ValueError:
            return None
        if all(isinstance(m, datetime.datetime) for m in moments):
            return np.array([(m - moments[0]).total_seconds() * 1000.0 for m in moments])
    return None


def _r_wave_frames(dataset: Dataset, frames: int, times: np.ndarray | None,
                   notes: list[str]) -> tuple[int, ...]:
    """1-based frames at the R waves: Frame Numbers of Interest of type RWAVE, the R Wave
    Pointer, or (Enhanced XA) the first frame of each beat by Nominal Cardiac Trigger Delay."""
    found: list[int] = []
    numbers = _plain(dataset.get("FrameNumbersOfInterest"))
    kinds = _plain(dataset.get("FrameOfInterestType"))
    if numbers not in (None, ""):
        numbers = numbers if isinstance(numbers, list) else [numbers]
        kinds = kinds if isinstance(kinds, list) else [kinds] * len(numbers)
        found += [int(n) for n, k in zip(numbers, kinds) if str(k).upper() == "RWAVE"]
    pointer = _plain(dataset.get("RWavePointer"))
    if pointer not in (None, ""):
        found += [int(n) for n in (pointer if isinstance(pointer, list) else [pointer])]
    delays = [_frame_value(dataset, i, "NominalCardiacTriggerDelayTime") for i in range(frames)]
    if all(d is not None and per_frame for d, per_frame in delays):
        delay = np.array([float(d) for d, _ in delays])
        step = float(np.median(np.diff(times))) if times is not None and frames > 1 else 0.0
        found += [i + 1 for i in range(frames)
                  if (i > 0 and delay[i] < delay[i - 1]) or (i == 0 and delay[0] <= step)]
    valid = sorted({n for n in found if 1 <= n <= frames})
    if len(valid) < len(set(found)):
        notes.append(f"R-wave frame numbers outside 1..{frames} ignored")
    return tuple(valid)


def is_dicom(path: str | Path) -> bool:
    """Whether ``path`` starts like a DICOM Part 10 file (``DICM`` after the preamble)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False
