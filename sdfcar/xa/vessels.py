"""2D vessel extraction from a raw angiogram: a vessel mask and a line-integral proxy.

The input is an attenuation image ``a = -ln(I)`` (up to an additive constant; see
:meth:`sdfcar.xa.dicom.IntensityModel.attenuation`), in which contrast-filled vessels are bright
ridges on smooth anatomy. Sizes are given in mm at the isocenter and converted with the
pixel size there (detector spacing x SOD / SID).

1. **Background for detection**: grey opening of the lightly smoothed image with a disc
   a little wider than the widest vessel radius, then a box mean; the difference (top-hat)
   keeps narrow bright structures and drops anatomy wider than a vessel.
2. **Vesselness**: multi-scale Hessian ridge filter (scikit-image ``sato``, bright ridges)
   with scales spanning ``min_diameter_mm`` to ``max_diameter_mm``.
3. **Exposed field**: the collimated border (and cut corners) is found from the image
   (:func:`sdfcar.xa.field.exposed_field`), filled with the median of the exposed pixels
   before steps 1-2 (its edge is a ridge the filter responds to), and the vesselness is set
   to 0 outside the field shrunk by ``max_diameter_mm`` (the ramp into the field).
4. **Mask**: hysteresis threshold. Seeds are pixels above ``seed_fraction`` of the
   vesselness' 99.9th percentile (the large, well-filled vessels); they grow through
   pixels above the ``background_percentile``-th percentile of the vesselness measured
   farther than two maximal vessel diameters from every seed (the response of ribs, edges
   and noise). Pinholes (:data:`PINHOLE_MM2`) are filled and specks under
   ``min_area_mm2`` removed.
5. **Line-integral proxy** (DSA-like): the background under the vessels (the mask dilated
   by :data:`MASK_MARGIN_MM`) is interpolated harmonically from the pixels around them
   (:func:`sdfcar.xa.inpaint.harmonic_inpaint`: across a vessel, nearly linear between its two
   sides, so rib and heart-shadow edges that cross it are followed), and
   ``(a - background) / mu`` is the opacified lumen crossed by each ray in mm,
   clipped at 0 and set to 0 outside the mask. ``mu`` is the apparent attenuation of
   contrast-filled blood per mm (default :data:`sdfcar.physics.contrast.CONTRAST_MU_PER_MM` =
   0.1 /mm, the value the simulated data use); on real runs it depends on the kVp, the
   iodine concentration reached and scatter, so the proxy's scale is approximate and
   ``--mu`` calibrates it (a vessel of known diameter d should read about d mm).

A user mask (e.g. from 3D Slicer) replaces steps 1-4; step 5 is unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage import filters
from skimage.morphology import skeletonize

from sdfcar.io.atomic import atomic_directory
from sdfcar.errors import bad_input
from sdfcar.io.images import write_view
from sdfcar.xa.field import exposed_field
from sdfcar.xa.inpaint import harmonic_inpaint
from sdfcar.physics.contrast import CONTRAST_MU_PER_MM

#: Pixel size at the isocenter assumed for plain images that carry no geometry (mm).
DEFAULT_PIXEL_MM = 0.2
#: Holes in a mask up to this area (mm^2 at the isocenter) are filled; larger ones are the
#: loops that crossing vessels enclose in a projection and stay open.
PINHOLE_MM2 = 1.0
#: The background under a mask is interpolated from pixels at least this far (mm at the
#: isocenter) outside it, beyond the faint vessel edges a threshold misses.
MASK_MARGIN_MM = 0.5
#: Longest image side used when scoring frames (larger frames are block-averaged).
SCORE_SIZE_PX = 256


@dataclass(frozen=True)
class VesselParams:
    """Settings of :func:`extract_vessels` (diameters and areas at the isocenter)."""

    min_diameter_mm: float = 0.8
    max_diameter_mm: float = 5.0
    scales: int = 5
    seed_fraction: float = 0.5
    background_percentile: float = 95.0
    min_area_mm2: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.min_diameter_mm < self.max_diameter_mm:
            raise bad_input("vessel diameters", "expected 0 < min_diameter_mm < max_diameter_mm")
        if self.scales < 1:
            raise bad_input("scales", f"expected at least 1 scale, got {self.scales}")
        if not 0 < self.seed_fraction <= 1:
            raise bad_input("seed_fraction",
                            f"expected a fraction in (0, 1], got {self.seed_fraction}")
        if not 50 <= self.background_percentile < 100:
            raise bad_input("background_percentile",
                            f"expected a percentile in [50, 100), got {self.background_percentile}")


@dataclass(frozen=True)
class Extraction:
    """Result of :func:`extract_vessels` for one frame."""

    mask: np.ndarray  # bool (rows, cols)
    integral: np.ndarray  # float32 (rows, cols), mm of opacified lumen, 0 outside the mask
    background: np.ndarray  # float32 attenuation under the vessels
    vesselness: np.ndarray | None  # float32 ridge response (None for a user mask)
    info: dict[str, Any] = field(default_factory=dict)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius)))
    axis = np.arange(-r, r + 1)
    return axis[:, None] ** 2 + axis[None, :] ** 2 <= radius**2 + 1e-9


def _radii_px(pixel_mm: float, params: VesselParams) -> tuple[float, float]:
    return params.min_diameter_mm / 2.0 / pixel_mm, params.max_diameter_mm / 2.0 / pixel_mm


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 8:
        raise bad_input(name,
                        f"expected a 2D image of at least 8x8 pixels, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise bad_input(name, "contains NaN or infinite values")
    return image


def attenuation_from_intensity(image: np.ndarray, where: str = "image") -> np.ndarray:
    """``-ln(I)`` of an image of linear X-ray intensities (vessels dark); values below
    1e-4 of the maximum are clipped there."""
    image = _check_image(image, where)
    peak = float(image.max())
    if not peak > 0:
        raise bad_input(where, "expected positive X-ray intensities (vessels dark), got max "
                               f"{peak:g}")
    return -np.log(np.maximum(image, 1e-4 * peak))


def top_hat(attenuation: np.ndarray, pixel_mm: float, params: VesselParams = VesselParams()
            ) -> np.ndarray:
    """Attenuation minus its large-scale background (step 1): narrow bright structures."""
    r_min, r_max = _radii_px(pixel_mm, params)
    smoothed = ndimage.gaussian_filter(attenuation, 0.5 * max(1.0, r_min))
    opened = ndimage.grey_opening(smoothed, footprint=_disk(0.8 * r_max + 1.0))
    background = ndimage.uniform_filter(opened, int(2 * r_max) + 1)
    return attenuation - background


def vesselness(attenuation: np.ndarray, pixel_mm: float, params: VesselParams = VesselParams()
               ) -> np.ndarray:
    """Multi-scale Hessian ridge response of the top-hat image (step 2); scales in pixels
    are 0.7 x the vessel radii (at least 0.7 px)."""
    r_min, r_max = _radii_px(pixel_mm, params)
    sigmas = np.geomspace(max(0.7, 0.7 * r_min), max(0.7, 0.7 * r_max), params.scales)
    response = filters.sato(top_hat(attenuation, pixel_mm, params), sigmas=np.unique(sigmas),
                            black_ridges=False, mode="reflect")
    return response.astype(np.float32)


def vessel_mask(response: np.ndarray, pixel_mm: float, params: VesselParams = VesselParams()
                ) -> tuple[np.ndarray, dict[str, float]]:
    """Hysteresis mask of a vesselness image (step 3) and the thresholds it used."""
    _, r_max = _radii_px(pixel_mm, params)
    high = params.seed_fraction * float(np.percentile(response, 99.9))
    seeds = response > high
    if seeds.any():
        far = ndimage.distance_transform_edt(~seeds) > 4.0 * r_max
    else:
        far = np.ones(response.shape, bool)
    reference = response[far] if np.count_nonzero(far) >= 100 else response.ravel()
    low = min(float(np.percentile(reference, params.background_percentile)), high)
    mask = filters.apply_hysteresis_threshold(response, low, high)
    pinholes = _components(ndimage.binary_fill_holes(mask) & ~mask,
                           lambda area: area * pixel_mm**2 <= PINHOLE_MM2)
    return _components(mask | pinholes, lambda area: area * pixel_mm**2 >= params.min_area_mm2,
                       np.ones((3, 3))), {"seed_threshold": high, "grow_threshold": low}


def _components(mask: np.ndarray, keep_area, structure: np.ndarray | None = None) -> np.ndarray:
    """The connected components of ``mask`` whose pixel count satisfies ``keep_area``."""
    labels, count = ndimage.label(mask, structure)
    keep = keep_area(np.bincount(labels.ravel(), minlength=count + 1))
    keep[0] = False
    return keep[labels]


def _exposed(attenuation: np.ndarray, pixel_mm: float, params: VesselParams
             ) -> tuple[np.ndarray, np.ndarray]:
    """The image with its collimated region filled, and the exposed field (step 3)."""
    return exposed_field(attenuation, pixel_mm, params.max_diameter_mm / 2.0,
                         params.max_diameter_mm)


def line_integral_proxy(attenuation: np.ndarray, mask: np.ndarray, pixel_mm: float,
                        mu_per_mm: float = CONTRAST_MU_PER_MM
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Background-subtracted attenuation in mm of opacified lumen (step 4), 0 outside
    ``mask``; returns ``(integral, background)``."""
    excluded = ndimage.binary_dilation(mask, _disk(max(2.0, MASK_MARGIN_MM / pixel_mm)))
    background = harmonic_inpaint(attenuation, excluded)
    integral = np.where(mask, np.clip((attenuation - background) / mu_per_mm, 0.0, None), 0.0)
    return integral.astype(np.float32), background.astype(np.float32)


def scaled_by_widths(extraction: Extraction, pixel_mm: float) -> Extraction:
    """``extraction`` with its proxy rescaled so that, along the mask's skeleton, its median
    equals the median vessel width (a round lumen's central chord is its diameter): the
    scale of display-coded pixel data (LOG, DISP), which DICOM does not record. The width
    at a skeleton pixel is ``2 d - 1/2`` pixels, ``d`` its distance to the nearest
    background pixel (``2 d`` for an even width, ``2 d - 1`` for an odd one)."""
    skeleton = skeletonize(extraction.mask)
    values = extraction.integral[skeleton]
    widths = (2.0 * ndimage.distance_transform_edt(extraction.mask)[skeleton] - 0.5) * pixel_mm
    if not np.any(values > 0):
        return extraction
    factor = float(np.median(widths) / np.median(values[values > 0]))
    info = {**extraction.info, "mu_per_mm": extraction.info["mu_per_mm"] / factor,
            "mu_source": "vessel widths (display-coded pixel data; --mu sets it)",
            "integral_max_mm": float(extraction.integral.max() * factor),
            "integral_mean_in_mask_mm": float(extraction.integral[extraction.mask].mean()
                                              * factor)}
    return replace(extraction, integral=(extraction.integral * factor).astype(np.float32),
                   info=info)


def extract_vessels(attenuation: np.ndarray, pixel_mm: float = DEFAULT_PIXEL_MM,
                    mu_per_mm: float = CONTRAST_MU_PER_MM, mask: np.ndarray | None = None,
                    params: VesselParams = VesselParams()) -> Extraction:
    """Vessel mask and line-integral proxy of one attenuation image (see the module doc).

    ``mask`` (any array, nonzero = vessel, same shape) replaces the automatic mask."""
    attenuation = _check_image(attenuation, "image")
    if not pixel_mm > 0:
        raise bad_input("--pixel-mm", f"expected a positive pixel size, got {pixel_mm}")
    if not mu_per_mm > 0:
        raise bad_input("--mu", f"expected a positive attenuation per mm, got {mu_per_mm}")
    info: dict[str, Any] = {"pixel_mm_at_isocenter": pixel_mm, "mu_per_mm": mu_per_mm,
                            "params": asdict(params)}
    response = None
    if mask is None:
        filled, field = _exposed(attenuation, pixel_mm, params)
        response = np.where(field, vesselness(filled, pixel_mm, params), np.float32(0.0))
        mask, thresholds = vessel_mask(response, pixel_mm, params)
        info.update(mask_source="extracted", exposed_field_fraction=float(field.mean()),
                    **thresholds)
    else:
        mask = np.asarray(mask)
        if mask.shape != attenuation.shape:
            raise bad_input("mask", f"mask has shape {mask.shape} but the image is "
                                    f"{attenuation.shape[0]}x{attenuation.shape[1]}")
        mask = mask > 0
        info["mask_source"] = "user"
    if not mask.any():
        raise bad_input("mask", "no vessel pixel (the mask is empty)")
    integral, background = line_integral_proxy(attenuation, mask, pixel_mm, mu_per_mm)
    info.update(vessel_pixels=int(mask.sum()), integral_max_mm=float(integral.max()),
                integral_mean_in_mask_mm=float(integral[mask].mean()))
    return Extraction(mask, integral, background, response, info)


def contrast_score(attenuation: np.ndarray, pixel_mm: float,
                   params: VesselParams = VesselParams()) -> float:
    """Vessel contrast of a frame: the mean of the top 1 % of its vesselness minus the
    median (the noise floor) within the exposed field (step 3: a collimator's border ridge
    would otherwise dominate every frame alike), on a copy block-averaged to at most
    :data:`SCORE_SIZE_PX` pixels a side. Grows with the opacification; comparable between
    frames of one run."""
    attenuation = _check_image(attenuation, "frame")
    factor = max(1, int(np.ceil(max(attenuation.shape) / SCORE_SIZE_PX)))
    rows, cols = (s // factor * factor for s in attenuation.shape)
    small = attenuation[:rows, :cols].reshape(rows // factor, factor, cols // factor,
                                              factor).mean(axis=(1, 3))
    filled, field = _exposed(small, pixel_mm * factor, params)
    response = vesselness(filled, pixel_mm * factor, params)[field]
    top = np.percentile(response, 99.0)
    return float(response[response >= top].mean() - np.median(response))


# ----------------------------------------------------------------------------- outputs


def _preview(image: np.ndarray) -> np.ndarray:
    """8-bit grey levels between the 0.5th and 99.5th percentiles."""
    lo, hi = np.percentile(image, [0.5, 99.5])
    scaled = (np.asarray(image, np.float64) - lo) / max(hi - lo, 1e-12)
    return np.clip(np.rint(255.0 * scaled), 0, 255).astype(np.uint8)


def _write_png(path: Path, array: np.ndarray) -> None:
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 3)
    sitk.WriteImage(image, str(path))


def write_extraction(out_dir: str | Path, extraction: Extraction, attenuation: np.ndarray,
                     spacing_mm: tuple[float, float], report: dict[str, Any],
                     overwrite: bool = False) -> Path:
    """Write ``mask.nii.gz`` (uint8), ``integral.nii.gz`` (float32 mm), PNG previews
    (``mask.png``, ``integral.png``, ``overlay.png``: the frame with the mask in red) and
    ``report.json`` into ``out_dir``, all or nothing."""
    with atomic_directory(out_dir, overwrite) as staging:
        write_view(staging / "mask.nii.gz", extraction.mask.astype(np.uint8), spacing_mm)
        write_view(staging / "integral.nii.gz", extraction.integral, spacing_mm)
        _write_png(staging / "mask.png", extraction.mask.astype(np.uint8) * 255)
        peak = max(float(extraction.integral.max()), 1e-6)
        _write_png(staging / "integral.png",
                   np.rint(255.0 * extraction.integral / peak).astype(np.uint8))
        grey = 255 - _preview(attenuation)  # vessels dark, as on a viewer
        overlay = np.stack([grey, grey, grey], axis=-1)
        overlay[extraction.mask] = (0.5 * overlay[extraction.mask]
                                    + np.array([127, 0, 0])).astype(np.uint8)
        _write_png(staging / "overlay.png", overlay)
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return Path(out_dir)
