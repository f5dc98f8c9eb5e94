"""Epipolar consistency of two line-integral views: how well their geometry agrees, with no
3D model at all.

Every plane through both X-ray sources (an *epipolar plane*, one of the pencil of planes
around the baseline ``s1 -> s2``) is imaged by each view along one detector line, and every
ray of a view lies in exactly one such plane. Summing a view's line integrals over the rays
of one plane, each weighted by its pixel's solid angle ``cos(gamma) dA / r^2``, gives

    m_i(kappa) = integral over the plane's wedge of  f(x) / |x - s_i|^2  dV,

the same object seen from both sources, up to the smooth distance weight (within about
+-15 % over a heart at the isocenter, scaled out by ``SOD^2``). When the geometry is right
the two profiles over the plane angle ``kappa`` agree; a rotation or a shift of one view
that moves its rays to other planes makes them disagree. This is the moment form of the
epipolar consistency conditions (Aichert et al. 2015), enough to find a pose to start from.

What it cannot see: moving a view's source along the baseline keeps every ray in its plane,
so a translation along the baseline is invisible here (and to any two-view method: it scales
the reconstruction about the other source).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sdfcar.geometry import ViewGeometry
from sdfcar.geometry.correction import baseline


@dataclass(frozen=True)
class ViewSamples:
    """The pixels of one view that hold vessel: their rows, columns and weighted values."""

    rows: np.ndarray
    cols: np.ndarray
    #: Line integral x the pixel's solid angle x SOD^2 (only the profiles' shapes are compared).
    mass: np.ndarray

    @classmethod
    def of(cls, view: ViewGeometry, image: np.ndarray, threshold: float) -> ViewSamples:
        """The pixels of ``image`` above ``threshold`` with their solid-angle weights."""
        rows, cols = np.nonzero(np.asarray(image) > threshold)
        rays = view.pixel_points(rows, cols) - view.source
        distance = np.linalg.norm(rays, axis=1)
        cos = rays @ view.beam_direction / distance
        area = float(np.prod(view.detector_spacing_mm))
        weight = cos * area / distance ** 2 * view.source_to_isocenter_mm ** 2
        return cls(rows, cols, np.asarray(image)[rows, cols] * weight)


def plane_frame(first: ViewGeometry, second: ViewGeometry, centre: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """Two unit vectors spanning the planes' normals (``e1`` towards ``centre``, ``e2 = b x
    e1``) and the distance from the baseline to ``centre`` (mm)."""
    b = baseline(first, second)
    towards = centre - first.source
    e1 = towards - (towards @ b) * b
    distance = float(np.linalg.norm(e1))
    e1 = e1 / distance
    return e1, np.cross(b, e1), distance


def plane_coordinates(view: ViewGeometry, samples: ViewSamples, origin: np.ndarray,
                      e1: np.ndarray, e2: np.ndarray, distance: float) -> np.ndarray:
    """Each sample's epipolar plane as ``kappa * distance`` (mm at ``centre``)."""
    points = view.pixel_points(samples.rows, samples.cols) - origin
    return np.arctan2(points @ e2, points @ e1) * distance


def profiles(views: tuple[ViewGeometry, ViewGeometry], samples: tuple[ViewSamples, ViewSamples],
             centre: np.ndarray, half_width_mm: float, bin_mm: float, blur_mm: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Both views' plane profiles on common bins of ``bin_mm`` over ``+-half_width_mm``
    (plane angle times the baseline's distance to ``centre``), blurred by ``blur_mm``."""
    e1, e2, distance = plane_frame(views[0], views[1], centre)
    bins = int(np.ceil(2 * half_width_mm / bin_mm)) + 1
    out = []
    for view, sample in zip(views, samples):
        position = (plane_coordinates(view, sample, views[0].source, e1, e2, distance)
                    + half_width_mm) / bin_mm
        low = np.floor(position).astype(int)
        share = position - low
        profile = np.zeros(bins + 1)
        inside = (low >= 0) & (low < bins)
        np.add.at(profile, low[inside], sample.mass[inside] * (1 - share[inside]))
        np.add.at(profile, low[inside] + 1, sample.mass[inside] * share[inside])
        out.append(ndimage.gaussian_filter1d(profile[:bins], blur_mm / bin_mm))
    return out[0], out[1]


def inconsistency(first: np.ndarray, second: np.ndarray) -> float:
    """``1 -`` the cosine similarity of two profiles (0: the same shape)."""
    norm = float(np.linalg.norm(first) * np.linalg.norm(second))
    return 1.0 - float(first @ second) / norm if norm > 0 else 1.0
