"""A second, independent synthetic XA generator: an imaging-chain model.

Written apart from :mod:`sdfcar.synthetic.xa` (it shares none of its image model, timing or
tag layout) so that the 2D step is checked against images it was not tuned on. From the
noise-free line integral ``L`` (mm of lumen) of a vessel tree in one view, frame ``t`` is

    q = Q0 V(r) exp(-mu_w T - mu_c (b(t) L + K))        expected quanta per pixel
    g = (1 - glare) q + glare (q * G)                    veiling glare (wide Gaussian G)
    s = gain (Poisson(g) + Normal(0, read_noise))        Poisson-Gaussian detector noise

* ``T`` (mm water): a smooth anatomical background built in the spectral domain (a
  1/f^2-like random field low-passed at about 40 mm), a heart-shadow ellipse with a soft rim,
  oblique rib bands of cosine profile with their own spacing and a diaphragm edge as an
  error function;
* ``V(r)``: vignetting, ``1 - vignette * (r / r_max)^2`` from the image centre;
* ``K``: a contrast-filled catheter, a 2 mm (6 F) tube entering at the top edge and ending
  at the tree's most superior pixel (the ostium), its line integral a circular chord;
* ``b(t)``: a gamma-variate bolus (wash-in to a peak at 60 % of the run, then wash-out);
  the catheter stays filled.

The file (:func:`write_chain_xa`) is an XA image stored with RLE Lossless, 10 bits in 16,
``LIN``, MONOCHROME2, PixelSpacing calibrated by GEOMETRY with the Estimated Radiographic
Magnification Factor instead of ImagerPixelSpacing, Frame Time and no ECG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid
from scipy import ndimage, special

from sdfcar.geometry import ViewGeometry
from sdfcar.io.atomic import atomic_file
from sdfcar.synthetic.xa import save_dataset

XA_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.12.1"
#: Attenuation per mm of soft tissue and of contrast-filled lumen (1/mm) in this model.
MU_WATER, MU_CONTRAST = 0.019, 0.09
CATHETER_RADIUS_MM = 1.0


@dataclass(frozen=True)
class Detector:
    """The detector's dose, glare, vignetting and read noise."""

    quanta_per_mm2: float = 8.0e5
    glare: float = 0.12
    glare_sigma_mm: float = 25.0
    vignette: float = 0.35
    read_noise: float = 6.0  # quanta


@dataclass(frozen=True)
class ChainOptions:
    """Acquisition settings of the imaging chain."""

    frames: int = 10
    frame_time_ms: float = 1000.0 / 12.5
    bits: int = 10
    detector: Detector = Detector()


@dataclass(frozen=True)
class ChainRun:
    """A simulated run: stored frames, the vessel integrals per frame, the catheter."""

    view: ViewGeometry
    stored: np.ndarray  # (frames, rows, cols) uint16
    integrals: np.ndarray  # (frames, rows, cols) b(t) L, mm
    catheter: np.ndarray  # (rows, cols) mm
    bolus: np.ndarray  # (frames,)
    options: ChainOptions


def _isocenter_mm(view: ViewGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (rows down, columns right) in mm at the isocenter."""
    scale = view.source_to_isocenter_mm / view.source_to_detector_mm
    rows, cols = view.detector_shape
    y = (np.arange(rows) - (rows - 1) / 2.0) * view.detector_spacing_mm[0] * scale
    x = (np.arange(cols) - (cols - 1) / 2.0) * view.detector_spacing_mm[1] * scale
    return np.meshgrid(y, x, indexing="ij")


def anatomy(view: ViewGeometry, rng: np.random.Generator) -> np.ndarray:
    """Water-equivalent thickness ``T`` (mm): spectral background, heart, ribs, diaphragm."""
    y, x = _isocenter_mm(view)
    pixel = float(abs(x[0, 1] - x[0, 0]))
    fy = np.fft.fftfreq(y.shape[0], pixel)[:, None]
    fx = np.fft.fftfreq(y.shape[1], pixel)[None, :]
    radius = np.hypot(fy, fx)
    spectrum = np.exp(-(radius * 40.0) ** 2) / (radius + 1.0 / 200.0) ** 2
    noise = rng.standard_normal(y.shape) + 1j * rng.standard_normal(y.shape)
    field = np.real(np.fft.ifft2(noise * spectrum))
    thickness = 200.0 + 12.0 * field / max(float(field.std()), 1e-12)
    cx, cy = rng.uniform(-20, 20), rng.uniform(-10, 20)
    ellipse = np.hypot((x - cx) / 65.0, (y - cy) / 55.0)
    thickness += 40.0 / (1.0 + np.exp((ellipse - 1.0) / 0.05))
    angle = math.radians(rng.uniform(20.0, 35.0))
    across = y * math.cos(angle) - x * math.sin(angle)
    phase = np.mod(across + rng.uniform(0.0, 26.0), 26.0) - 13.0
    thickness += 7.0 * np.where(np.abs(phase) < 5.0, np.cos(np.pi * phase / 10.0), 0.0)
    edge = rng.uniform(30.0, 50.0) + 0.003 * x**2
    thickness += 30.0 * (1.0 + special.erf((y - edge) / 6.0))
    return thickness


def catheter_integral(view: ViewGeometry, integral: np.ndarray) -> np.ndarray:
    """Line integral (mm) of a catheter from the top edge to the tree's top pixel."""
    vessel = np.argwhere(integral > 0.25)
    if not len(vessel):
        return np.zeros(integral.shape)
    end = vessel[np.argmin(vessel[:, 0])].astype(float)
    start = np.array([0.0, end[1] + 0.3 * end[0]])
    t = np.linspace(0.0, 1.0, 4 * sum(integral.shape))[:, None]
    path = (1 - t) * start + t * end + np.array([0.0, 0.05 * integral.shape[1]]) * np.sin(
        np.pi * t)
    rows, cols = np.rint(path).astype(int).T
    inside = (rows >= 0) & (rows < integral.shape[0]) & (cols >= 0) & (cols < integral.shape[1])
    centre = np.ones(integral.shape, bool)
    centre[rows[inside], cols[inside]] = False
    y, x = _isocenter_mm(view)
    pixel = (float(y[1, 0] - y[0, 0]), float(x[0, 1] - x[0, 0]))
    distance = ndimage.distance_transform_edt(centre, sampling=pixel)
    return 2.0 * np.sqrt(np.clip(CATHETER_RADIUS_MM**2 - distance**2, 0.0, None))


def bolus(frames: int) -> np.ndarray:
    """Gamma-variate opacification, peak 1 at 60 % of the run (a single frame: 1)."""
    if frames == 1:
        return np.ones(1)
    t = np.linspace(0.02, 1.0, frames) / 0.6
    return (t * np.exp(1.0 - t)) ** 3.0


def simulate_chain_run(integral: np.ndarray, view: ViewGeometry,
                       options: ChainOptions = ChainOptions(), seed: int = 0) -> ChainRun:
    """Frames of one view from its noise-free vessel line integral (mm)."""
    rng = np.random.default_rng([seed, 2027])
    y, x = _isocenter_mm(view)
    thickness = anatomy(view, rng)
    catheter = catheter_integral(view, integral)
    r2 = (y**2 + x**2) / float((y**2 + x**2).max())
    detector = options.detector
    quanta = detector.quanta_per_mm2 * float(np.prod(view.detector_spacing_mm))
    base = quanta * (1.0 - detector.vignette * r2) * np.exp(-MU_WATER * thickness)
    sigma = detector.glare_sigma_mm / float(abs(x[0, 1] - x[0, 0]))
    curve = bolus(options.frames)
    stored, integrals = [], []
    for level in curve:
        lumen = level * integral
        expected = base * np.exp(-MU_CONTRAST * (lumen + catheter))
        glared = (1.0 - detector.glare) * expected + detector.glare * ndimage.gaussian_filter(
            expected, sigma, mode="nearest")
        signal = rng.poisson(glared) + rng.normal(0.0, detector.read_noise, glared.shape)
        stored.append(signal)
        integrals.append(lumen)
    frames = np.stack(stored)
    top = 2**options.bits - 1
    frames = np.clip(np.rint(frames * (0.85 * top / float(frames.max()))), 1, top)
    return ChainRun(view, frames.astype(np.uint16), np.stack(integrals).astype(np.float32),
                    catheter.astype(np.float32), curve, options)


def _ds(value: float) -> str:
    return f"{value:.8g}"


def chain_dataset(run: ChainRun) -> Dataset:
    """The RLE-compressed legacy XA dataset of ``run`` (see the module doc for its tags)."""
    view, options = run.view, run.options
    frames, rows, cols = run.stored.shape
    magnification = view.source_to_detector_mm / view.source_to_isocenter_mm
    ds = Dataset()  # saving fills in the rest of the file meta information
    ds.SOPClassUID, ds.SOPInstanceUID = XA_IMAGE_STORAGE, generate_uid()
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # until compressed
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer = "XA", "sdfcar imaging-chain model"
    ds.PatientName, ds.PatientID = "Chain^Phantom", "SDFCAR-CHAIN"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, options.bits, options.bits - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    ds.PositionerPrimaryAngle = _ds(view.primary_angle_deg)
    ds.PositionerSecondaryAngle = _ds(view.secondary_angle_deg)
    ds.DistanceSourceToDetector = _ds(view.source_to_detector_mm)
    ds.DistanceSourceToPatient = _ds(view.source_to_isocenter_mm)
    ds.EstimatedRadiographicMagnificationFactor = _ds(magnification)
    ds.PixelSpacing = [_ds(s / magnification) for s in view.detector_spacing_mm]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.FrameTime = _ds(options.frame_time_ms)
    ds.PixelData = np.ascontiguousarray(run.stored).tobytes()
    ds.compress(RLELossless)
    return ds


def write_chain_xa(path: str | Path, run: ChainRun, overwrite: bool = False) -> Path:
    """Write ``run`` as an XA DICOM file, atomically."""
    dataset = chain_dataset(run)
    with atomic_file(path, overwrite) as temporary:
        save_dataset(dataset, temporary)
    return Path(path)
