"""Realistic synthetic XA cine runs written as DICOM files (test data and benchmarks).

A run starts from the noise-free line integral ``L`` (mm of lumen) of a phantom in one view
(:func:`sdfcar.synthetic.simulate.project_label`). Every frame is an X-ray image

    I = I0 exp(-mu_water B - c(t) mu_c L_t)

where ``B`` is a smooth water-equivalent thickness of background anatomy (chest wall, heart
shadow, spine, ribs, a diaphragm dome and low-frequency texture; mm), ``mu_water`` =
:data:`WATER_MU_PER_MM`, ``mu_c`` the attenuation of contrast-filled lumen per mm (default
:data:`sdfcar.physics.contrast.CONTRAST_MU_PER_MM`), ``c(t)`` the opacification of the frame (wash-in
from 0 to 1, a plateau, then partial wash-out) and ``L_t`` the vessel image scaled about the
projected isocenter by the cardiac phase (1 at end-diastole, the R wave; up to
``1 - contraction`` at end-systole). Photon counts are Poisson with ``I0`` photons per pixel
(``photons_per_mm2`` times the pixel area) and stored either linearly (``LIN``, the usual
12-bit case) or logarithmically (``LOG``, the usual 8-bit case) using the convention of
:data:`sdfcar.xa.pixels.LOG_NEPERS_FULL_RANGE`.

The file is a legacy X-Ray Angiographic Image (multi-frame when ``frames > 1``) with the
positioner tags, ImagerPixelSpacing, a frame time vector and, optionally, the R-wave frames
as Frame Numbers of Interest of type ``RWAVE`` (an ECG trigger).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

from sdfcar.io.atomic import atomic_file
from sdfcar.errors import bad_input
from sdfcar.geometry import REFERENCE_VIEWS, CaseGeometry, ViewGeometry, VolumeGrid
from sdfcar.synthetic.phantom import label_volume
from sdfcar.physics.contrast import CONTRAST_MU_PER_MM
from sdfcar.synthetic.simulate import project_label
from sdfcar.xa import LOG_NEPERS_FULL_RANGE, XA_SOP_CLASS

#: Linear attenuation of water (soft tissue) per mm at a cardiac beam's effective energy.
WATER_MU_PER_MM = 0.02
#: Unattenuated photons per mm^2 of detector and frame (about 9e4 per 0.278 mm pixel).
DEFAULT_PHOTONS_PER_MM2 = 1.2e6


@dataclass(frozen=True)
class CineOptions:
    """How a synthetic cine run is acquired and stored."""

    frames: int = 24
    frame_time_ms: float = 1000.0 / 15.0
    heart_rate_bpm: float = 75.0
    first_r_wave_ms: float = 120.0
    contraction: float = 0.05
    bits: int = 12
    relationship: str | None = None  # "LIN" or "LOG"; default LIN above 8 bits, LOG at 8
    photons_per_mm2: float = DEFAULT_PHOTONS_PER_MM2
    mu_per_mm: float = CONTRAST_MU_PER_MM
    ecg: bool = True

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise bad_input("frames", f"expected at least 1 frame, got {self.frames}")
        if not 8 <= self.bits <= 16:
            raise bad_input("bits", f"expected 8 to 16 stored bits, got {self.bits}")
        if self.stored_relationship not in ("LIN", "LOG"):
            raise bad_input("relationship", f"expected 'LIN' or 'LOG', got {self.relationship!r}")
        if not 0.0 <= self.contraction < 0.5:
            raise bad_input("contraction",
                            f"expected a fraction in [0, 0.5), got {self.contraction}")

    @property
    def stored_relationship(self) -> str:
        """Pixel Intensity Relationship actually written."""
        return self.relationship or ("LOG" if self.bits <= 8 else "LIN")


@dataclass(frozen=True)
class SyntheticRun:
    """One simulated cine run and the truth behind it."""

    view: ViewGeometry
    stored: np.ndarray  # (frames, rows, cols) stored pixel values (uint8 or uint16)
    integrals: np.ndarray  # (frames, rows, cols) float32 opacified lumen per pixel (mm)
    contrast: np.ndarray  # (frames,) opacification c(t) in [0, 1]
    phase: np.ndarray  # (frames,) cardiac phase in [0, 1), 0 at the R wave
    frame_times_ms: np.ndarray  # (frames,) acquisition time of each frame
    r_wave_frames: tuple[int, ...]  # 1-based frames nearest each R wave (end-diastole)
    options: CineOptions


# ----------------------------------------------------------------------------- anatomy


def _smooth_step(x: np.ndarray, width: float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(x / width))


def background_thickness(view: ViewGeometry, seed: int = 0) -> np.ndarray:
    """Water-equivalent thickness of non-vessel anatomy (mm) seen by each pixel.

    Built in the isocenter plane (pixel size ``spacing * SOD / SID``), so the anatomy has the
    same physical size at any detector resolution; the spine and heart shadow move with the
    primary angle and the ribs tilt with it."""
    rng = np.random.default_rng([seed, 7])
    rows, cols = view.detector_shape
    scale = view.source_to_isocenter_mm / view.source_to_detector_mm
    pixel = np.array(view.detector_spacing_mm) * scale
    y = (np.arange(rows) - (rows - 1) / 2.0)[:, None] * pixel[0]  # mm, down = inferior
    x = (np.arange(cols) - (cols - 1) / 2.0)[None, :] * pixel[1]
    turn = math.sin(math.radians(view.primary_angle_deg))
    thickness = np.full((rows, cols), 190.0 + 25.0 * abs(turn))
    thickness = thickness + 0.0006 * x**2  # the chest gets thinner towards its sides
    heart = ((x - 15.0 + 30.0 * turn) / 70.0) ** 2 + ((y - 10.0) / 60.0) ** 2
    thickness += 45.0 * _smooth_step(1.0 - np.sqrt(heart), 0.08)
    thickness += 28.0 * _smooth_step(18.0 - np.abs(x + 8.0 - 60.0 * turn), 4.0)  # spine
    dome = rng.uniform(25.0, 40.0) + 0.004 * (x - 20.0 * turn) ** 2 - 0.1 * x
    thickness += 55.0 * _smooth_step(y - dome, 3.0)  # diaphragm: liver below the dome
    tilt = rng.uniform(0.15, 0.3) + 0.3 * turn
    offset = rng.uniform(0.0, 30.0)
    for k in range(-4, 5):  # ribs: curved bone bands about 9 mm wide, 30 mm apart
        centre = offset + 30.0 * k + tilt * x + 0.002 * x**2
        distance = np.abs(y - centre) / 4.5
        thickness += 9.0 * np.sqrt(np.clip(1.0 - distance**2, 0.0, None))
    for sigma_mm, amplitude in ((15.0, 5.0), (4.0, 1.2)):  # soft-tissue texture
        field = ndimage.gaussian_filter(rng.standard_normal((rows, cols)),
                                        sigma_mm / pixel, mode="reflect")
        thickness += amplitude * field / max(float(field.std()), 1e-12)
    return ndimage.gaussian_filter(thickness, 0.7).astype(np.float32)


# ----------------------------------------------------------------------------- cine timing


def opacification(frames: int) -> np.ndarray:
    """Contrast curve c(t): none for the first 15 % of the run, full from 45 % to 80 %,
    then washing out to 0.7 at the end; a single frame is fully opacified."""
    if frames == 1:
        return np.ones(1)
    f = np.linspace(0.0, 1.0, frames)
    rise = np.clip((f - 0.15) / 0.30, 0.0, 1.0)
    rise = rise * rise * (3.0 - 2.0 * rise)
    wash = 1.0 - 0.3 * np.clip((f - 0.8) / 0.2, 0.0, 1.0)
    return rise * wash


def cardiac_scale(phase: np.ndarray, contraction: float) -> np.ndarray:
    """Vessel-image scale factor over the cardiac cycle: 1 at end-diastole (phase 0),
    ``1 - contraction`` at end-systole (phase 0.35), back to 1 by phase 0.7 (diastasis)."""
    bump = np.where(phase < 0.7, np.sin(np.pi * phase / 0.7) ** 2, 0.0)
    return 1.0 - contraction * bump


def _scaled(image: np.ndarray, factor: float, centre: np.ndarray) -> np.ndarray:
    """``image`` shrunk by ``factor`` about ``centre`` (row, col)."""
    if factor == 1.0:
        return image
    matrix = np.eye(2) / factor
    offset = centre - matrix @ centre
    return ndimage.affine_transform(image, matrix, offset, order=1, mode="constant")


# ----------------------------------------------------------------------------- runs


def simulate_run(integral: np.ndarray, view: ViewGeometry, options: CineOptions = CineOptions(),
                 seed: int = 0) -> SyntheticRun:
    """A cine run of the fully opacified line-integral image ``integral`` (mm) in ``view``."""
    integral = np.asarray(integral, dtype=np.float64)
    if integral.shape != view.detector_shape:
        raise bad_input("integral", f"shape {integral.shape} does not match the detector "
                                    f"{view.detector_shape}")
    rng = np.random.default_rng([seed, 11])
    n = options.frames
    times = np.arange(n) * options.frame_time_ms
    period = 60000.0 / options.heart_rate_bpm
    phase = ((times - options.first_r_wave_ms) / period) % 1.0
    beats = np.arange(math.floor(-options.first_r_wave_ms / period),
                      math.ceil((times[-1] - options.first_r_wave_ms) / period) + 1)
    r_times = options.first_r_wave_ms + beats * period
    r_waves = sorted({int(np.argmin(np.abs(times - t))) + 1 for t in r_times
                      if times[0] - options.frame_time_ms / 2 <= t
                      <= times[-1] + options.frame_time_ms / 2})
    contrast = opacification(n)
    centre = view.project_points(np.zeros(3))
    integrals = np.stack([c * _scaled(integral, float(s), centre) for c, s in
                          zip(contrast, cardiac_scale(phase, options.contraction))])
    background = WATER_MU_PER_MM * background_thickness(view, seed)
    photons = options.photons_per_mm2 * float(np.prod(view.detector_spacing_mm))
    expected = photons * np.exp(-background[None] - options.mu_per_mm * integrals)
    counts = np.maximum(rng.poisson(expected), 1).astype(np.float64)
    top = 2**options.bits - 1
    brightest = photons * math.exp(-float(background.min()))
    if options.stored_relationship == "LIN":
        stored = counts * (0.9 * top / brightest)
    else:
        stored = top * (1.0 + np.log(counts / brightest) / LOG_NEPERS_FULL_RANGE)
    dtype = np.uint8 if options.bits <= 8 else np.uint16
    stored = np.clip(np.rint(stored), 0, top).astype(dtype)
    return SyntheticRun(view, stored, integrals.astype(np.float32), contrast, phase, times,
                        tuple(r_waves), options)


def simulate_pair(label: np.ndarray, grid: VolumeGrid, geometry: CaseGeometry,
                  options: CineOptions = CineOptions(), seed: int = 0
                  ) -> tuple[SyntheticRun, SyntheticRun]:
    """Cine runs of a label volume in the two views of ``geometry`` (seeds differ by view)."""
    integrals = project_label(label, grid, geometry.views)
    first, second = (simulate_run(image, view, options, seed + 1000 * index)
                     for index, (image, view) in enumerate(zip(integrals, geometry.views)))
    return first, second


def reference_geometry(detector_px: int = 512, volume: VolumeGrid = VolumeGrid()
                       ) -> CaseGeometry:
    """The reference views of DESIGN.md with a square detector of ``detector_px`` pixels
    over the same 142 mm panel (512: the reference itself; 128 or 256 for quick tests)."""
    spacing = REFERENCE_VIEWS[0].detector_spacing_mm[0] * 512 / detector_px
    views = tuple(replace(view, detector_shape=(detector_px, detector_px),
                          detector_spacing_mm=(spacing, spacing)) for view in REFERENCE_VIEWS)
    return CaseGeometry(views, volume)


def phantom_pair(kind: str = "lca", seed: int = 0, detector_px: int = 512,
                 options: CineOptions = CineOptions(), volume: VolumeGrid = VolumeGrid(),
                 supersample: int = 1
                 ) -> tuple[np.ndarray, CaseGeometry, tuple[SyntheticRun, SyntheticRun]]:
    """A phantom label on ``volume``, the reference geometry at ``detector_px`` and its two
    simulated runs (phantom and noise seeded by ``seed``), imaged from the phantom voxelised
    ``supersample`` times finer than ``volume`` (1: from the label itself)."""
    label = label_volume(kind, seed, volume)
    geometry = reference_geometry(detector_px, volume)
    seen_grid = volume.refined(supersample)
    seen = label if supersample == 1 else label_volume(kind, seed, seen_grid)
    return label, geometry, simulate_pair(seen, seen_grid, geometry, options, seed)


# ----------------------------------------------------------------------------- DICOM


def _decimal(value: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    return f"{value:.10g}"[:16]


def xa_dataset(run: SyntheticRun, series_uid: str | None = None) -> Dataset:
    """The legacy XA DICOM dataset of ``run`` (single-frame when the run has one frame)."""
    view, options = run.view, run.options
    frames, rows, cols = run.stored.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XA_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    now = datetime.datetime(2024, 1, 1, 12, 0, 0)
    ds.SOPClassUID = XA_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "XA"
    ds.Manufacturer = "sdfcar synthetic"
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SDFCAR-SYNTH"
    ds.StudyDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ContrastBolusAgent = "Iodinated contrast"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if options.bits <= 8 else 16
    ds.BitsStored = options.bits
    ds.HighBit = options.bits - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = options.stored_relationship
    ds.PixelIntensityRelationshipSign = 1
    ds.WindowCenter = _decimal(2 ** (options.bits - 1))
    ds.WindowWidth = _decimal(2**options.bits)
    ds.PositionerMotion = "STATIC"
    ds.PositionerPrimaryAngle = _decimal(view.primary_angle_deg)
    ds.PositionerSecondaryAngle = _decimal(view.secondary_angle_deg)
    ds.DistanceSourceToDetector = _decimal(view.source_to_detector_mm)
    ds.DistanceSourceToPatient = _decimal(view.source_to_isocenter_mm)
    ds.EstimatedRadiographicMagnificationFactor = _decimal(
        view.source_to_detector_mm / view.source_to_isocenter_mm)
    ds.ImagerPixelSpacing = [_decimal(s) for s in view.detector_spacing_mm]
    ds.HeartRate = int(round(options.heart_rate_bpm))
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = _decimal(options.frame_time_ms)
        ds.FrameTimeVector = [_decimal(v) for v in np.diff(run.frame_times_ms, prepend=0.0)]
        ds.FrameIncrementPointer = Tag("FrameTimeVector")
        ds.CineRate = int(round(1000.0 / options.frame_time_ms))
        if options.ecg and run.r_wave_frames:
            ds.FrameNumbersOfInterest = list(run.r_wave_frames)
            ds.FrameOfInterestDescription = ["R wave"] * len(run.r_wave_frames)
            ds.FrameOfInterestType = ["RWAVE"] * len(run.r_wave_frames)
    pixels = run.stored if frames > 1 else run.stored[0]
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def save_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write a dataset as a DICOM Part 10 file (preamble and file meta) with pydicom 2 or 3."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        dataset.save_as(path, enforce_file_format=True)
    else:
        syntax = dataset.file_meta.TransferSyntaxUID
        dataset.is_little_endian, dataset.is_implicit_VR = True, syntax.is_implicit_VR
        dataset.save_as(path, write_like_original=False)
    return Path(path)


def write_xa(path: str | Path, run: SyntheticRun, overwrite: bool = False,
             series_uid: str | None = None) -> Path:
    """Write ``run`` as an XA DICOM file, atomically."""
    dataset = xa_dataset(run, series_uid)
    with atomic_file(path, overwrite) as temporary:
        save_dataset(dataset, temporary)
    return Path(path)


def write_pair(out_dir: str | Path, runs: Sequence[SyntheticRun], overwrite: bool = False
               ) -> tuple[Path, Path]:
    """Write two runs as ``view1.dcm`` and ``view2.dcm`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first, second = (write_xa(out_dir / f"view{index}.dcm", run, overwrite)
                     for index, run in enumerate(runs, start=1))
    return first, second
