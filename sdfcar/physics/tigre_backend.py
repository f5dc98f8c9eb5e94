"""Optional TIGRE (CERN/TIGRE, CUDA) backend behind the :class:`ConeBeamProjector` interface.

TIGRE is GPU-only and not on the package index, so it is never required: use
:func:`tigre_available` before building a :class:`TigreProjector`. The geometry conversion
(:func:`tigre_geometry_for`) and an emulation of TIGRE's own conventions
(:func:`tigre_source_and_pixels`, :func:`tigre_voxel_centres`) are pure numpy, so the mapping
is tested without TIGRE.

TIGRE conventions used here (facts read from the CERN/TIGRE sources):

* ``Python/tigre/utilities/cuda_interface/_types.pxd`` (``convert_to_c_geometry``): Python
  ``nVoxel``/``dVoxel``/``sVoxel``/``offOrigin`` are ordered ``[z, y, x]``; ``nDetector``/
  ``dDetector``/``offDetector`` are ``[v, u]``; ``rotDetector`` is ``[yaw, pitch, roll]``.
* ``Common/CUDA/ray_interpolated_projection.cu`` ``computeDeltas`` (same steps in
  ``Siddon_projection.cu`` ``computeDeltas_Siddon``): source at ``(DSO, 0, 0)``; detector pixel
  ``(pixelV, u)`` at ``(-(DSD - DSO), dU (u - nU/2 + 1/2), dV (nV/2 - 1/2 - pixelV))`` where
  roll/pitch/yaw (``rollPitchYaw`` = ``Rz(roll) Ry(pitch) Rx(yaw)``) act on the panel centred at
  the origin before the shift by ``-(DSD - DSO)``, then ``offDetector`` is added to (y, z); source
  and detector are rotated by ``eulerZYZ`` = ``Rz(alpha) Ry(theta) Rz(psi)`` with
  ``angles[:, 0..2] = (alpha, theta, psi)``; a COR shifts both by
  ``COR (-sin alpha, cos alpha, 0)``.
  The image is centred at ``offOrigin``: voxel ``n`` of an axis sits at
  ``offOrigin + (n - (N - 1)/2) dVoxel``.
* Same files, ``kernelPixelDetector``: the Python output index is ``v * nU + u`` with
  ``pixelV = nV - 1 - v``, so output row ``v`` lies at ``z = dV (v - (nV - 1)/2)``.
  ``Python/tigre/utilities/cuda_interface/_Ax.pyx``: ``Ax`` returns ``(n_angles, nV, nU)``;
  ``Python/tigre/utilities/Ax.py``: the image must have shape ``nVoxel`` (``[z, y, x]``, C order,
  x fastest, as the 3D texture extent ``(nVoxelX, nVoxelY, nVoxelZ)`` implies).
* ``Python/tigre/utilities/cuda_interface/_Atb.pyx``: ``backprojection_type="matched"`` runs
  ``voxel_backprojection2`` ("FDK" runs the FDK-weighted ``voxel_backprojection``).
  ``Common/CUDA/voxel_backprojection2.cu`` weights each sample by ``L^3 / (DSD l^2)`` and scales by
  ``dVoxel^3 / (dU dV)``: the continuous adjoint of a line integral in mm, i.e. an approximate
  (not exact) transpose of ``Ax``. Its weight takes the source position from ``alpha`` only, so
  for views with ``theta != 0`` (cranial/caudal) the gradient carries a smooth weighting error of
  a few per cent away from the isocentre.

Frames: TIGRE world ``(x, y, z) = (posterior, left, inferior)`` (:data:`LPS_TO_TIGRE`), so a view
``Rz(primary) Rx(-secondary)`` is exactly TIGRE's ``(alpha, theta, psi) = (-primary, -secondary,
0)``, TIGRE detector columns are ours and TIGRE rows are ours (no flips of the images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sdfcar.geometry import ViewGeometry, VolumeGrid, rotation_x, rotation_y, rotation_z
from sdfcar.optional import tigre_available

# TIGRE world coordinates of an LPS point: x_T = P, y_T = L, z_T = -S. Symmetric and its own
# inverse, a proper rotation: conjugating Rz(p) gives Rz(-p), conjugating Rx(-s) gives Ry(-s).
LPS_TO_TIGRE = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])



@dataclass(frozen=True)
class TigreParams:
    """TIGRE geometry of one view (TIGRE's Python field orders) plus the volume array mapping.

    ``tigre_image = volume.flip(volume_flip).permute(volume_order)``; angles are radians.
    """

    DSD: float
    DSO: float
    nDetector: np.ndarray  # [v, u] = [rows, cols]
    dDetector: np.ndarray  # [v, u] mm
    sDetector: np.ndarray
    nVoxel: np.ndarray  # [z, y, x]
    dVoxel: np.ndarray
    sVoxel: np.ndarray
    offOrigin: np.ndarray  # [z, y, x] mm, TIGRE world
    offDetector: np.ndarray  # [v, u] mm
    rotDetector: np.ndarray  # [yaw, pitch, roll] rad
    COR: float
    angles: np.ndarray  # (alpha, theta, psi) ZYZ Euler
    volume_flip: tuple[int, ...]
    volume_order: tuple[int, int, int]


def _volume_axes(grid: VolumeGrid) -> tuple[tuple[int, ...], tuple[int, int, int]]:
    """Array axes to flip, and the array axes that become TIGRE's (z, y, x)."""
    signed = LPS_TO_TIGRE @ grid.direction_matrix  # column a: TIGRE direction of array axis a
    axis = np.argmax(np.abs(signed), axis=1)  # array axis along TIGRE x, y, z
    if not np.allclose(np.abs(signed), np.eye(3)[axis]) or len(set(axis)) != 3:
        raise ValueError(
            "the TIGRE backend supports grids whose direction is an axis permutation/flip "
            "(got an oblique direction); use the torch backend (sdfcar.physics.projector."
            "ConeBeamProjector) or resample the volume"
        )
    flips = tuple(sorted(int(axis[t]) for t in range(3) if signed[t, axis[t]] < 0))
    return flips, (int(axis[2]), int(axis[1]), int(axis[0]))


def tigre_geometry_for(view: ViewGeometry, grid: VolumeGrid) -> TigreParams:
    """TIGRE parameters for which TIGRE's projection of ``grid`` equals the contract's."""
    if view.is_corrected:
        raise ValueError("the TIGRE backend does not map a view's rigid correction "
                         "(self-calibration); use the torch backend")
    flips, order = _volume_axes(grid)
    shape = np.asarray(grid.shape, dtype=np.int64)[list(order)]
    spacing = np.asarray(grid.spacing_mm, dtype=float)[list(order)]
    detector = np.asarray(view.detector_shape, dtype=np.int64)
    pixel = np.asarray(view.detector_spacing_mm, dtype=float)
    return TigreParams(
        DSD=view.source_to_detector_mm,
        DSO=view.source_to_isocenter_mm,
        nDetector=detector,
        dDetector=pixel,
        sDetector=detector * pixel,
        nVoxel=shape,
        dVoxel=spacing,
        sVoxel=shape * spacing,
        offOrigin=(LPS_TO_TIGRE @ np.asarray(grid.center_mm, dtype=float))[::-1].copy(),
        offDetector=np.asarray(view.detector_offset_mm, dtype=float),
        rotDetector=np.zeros(3),
        COR=0.0,
        angles=np.radians([-view.primary_angle_deg, -view.secondary_angle_deg, 0.0]),
        volume_flip=flips,
        volume_order=order,
    )


def tigre_source_and_pixels(params: TigreParams) -> tuple[np.ndarray, np.ndarray]:
    """Source ``(3,)`` and pixel centres ``(nV, nU, 3)`` in LPS mm, derived from ``params``
    alone the way TIGRE's ``computeDeltas`` / ``kernelPixelDetector`` place them."""
    n_v, n_u = (int(n) for n in params.nDetector)
    d_v, d_u = params.dDetector
    off_v, off_u = params.offDetector
    yaw, pitch, roll = params.rotDetector
    alpha, theta, psi = params.angles
    pixel_v = n_v - 1 - np.arange(n_v, dtype=float)  # output row v reads pixelV = nV - 1 - v
    u = np.arange(n_u, dtype=float)
    local = np.zeros((n_v, n_u, 3))
    local[..., 1] = (d_u * (u - n_u / 2 + 0.5))[None, :]
    local[..., 2] = (d_v * (n_v / 2 - 0.5 - pixel_v))[:, None]
    local = local @ (rotation_z(np.degrees(roll)) @ rotation_y(np.degrees(pitch))
                     @ rotation_x(np.degrees(yaw))).T
    local += np.array([-(params.DSD - params.DSO), off_u, off_v])
    euler = (rotation_z(np.degrees(alpha)) @ rotation_y(np.degrees(theta))
             @ rotation_z(np.degrees(psi)))
    cor = params.COR * np.array([-np.sin(alpha), np.cos(alpha), 0.0])
    source = euler @ np.array([params.DSO, 0.0, 0.0]) + cor
    pixels = local @ euler.T + cor
    to_lps = LPS_TO_TIGRE.T
    return to_lps @ source, pixels @ to_lps.T


def tigre_voxel_centres(params: TigreParams, index_zyx: np.ndarray) -> np.ndarray:
    """LPS centres of TIGRE image voxels ``index_zyx`` ``(..., 3)`` (centred at offOrigin)."""
    index = np.asarray(index_zyx, dtype=float)
    world_zyx = params.offOrigin + (index - (params.nVoxel - 1) / 2.0) * params.dVoxel
    return world_zyx[..., ::-1] @ LPS_TO_TIGRE  # LPS_TO_TIGRE.T == its inverse


def to_tigre_volume(volume: torch.Tensor, params: TigreParams) -> torch.Tensor:
    """Our ``(i, j, k)`` volume as TIGRE's ``[z, y, x]`` image (a view, not a copy)."""
    flipped = volume.flip(params.volume_flip) if params.volume_flip else volume
    return flipped.permute(params.volume_order)


def from_tigre_volume(image: torch.Tensor, params: TigreParams) -> torch.Tensor:
    """Inverse of :func:`to_tigre_volume`."""
    volume = image.permute(tuple(int(a) for a in np.argsort(params.volume_order)))
    return volume.flip(params.volume_flip) if params.volume_flip else volume


def _tigre_geometry(params: TigreParams, accuracy: float) -> Any:
    """A ``tigre`` geometry object for ``params`` (needs tigre)."""
    import tigre

    geo = tigre.geometry(mode="cone")
    for name in ("DSD", "DSO", "nDetector", "dDetector", "sDetector", "nVoxel", "dVoxel",
                 "sVoxel", "offOrigin", "offDetector", "rotDetector", "COR"):
        setattr(geo, name, getattr(params, name))
    geo.accuracy = accuracy
    return geo


class TigreProjector:
    """:class:`~sdfcar.physics.projector.ConeBeamProjector` computed by TIGRE's CUDA ``Ax`` / ``Atb``.

    Values are line integrals in mm. The backward pass (and :meth:`backproject_view`) is
    TIGRE's ``matched`` backprojector, an approximate adjoint (see the module notes). A
    ``rays`` subset is served by computing the full view and indexing it.
    """

    def __init__(self, views: Sequence[ViewGeometry], grid: VolumeGrid,
                 device: str | torch.device = "cpu", projection_type: str = "interpolated",
                 accuracy: float = 0.5) -> None:
        if not tigre_available():
            raise RuntimeError("TIGRE is not available (`import tigre` failed); it is an optional "
                               "GPU backend - use sdfcar.physics.projector.ConeBeamProjector instead")
        self.views = tuple(views)
        self.grid = grid
        self.device = torch.device(device)
        self.projection_type = projection_type
        self.params = [tigre_geometry_for(view, grid) for view in self.views]
        self._geometries = [_tigre_geometry(p, accuracy) for p in self.params]

    def project(self, volume: torch.Tensor) -> list[torch.Tensor]:
        """Project ``volume`` into every view; one ``(rows, cols)`` tensor per view."""
        return [self.project_view(volume, index) for index in range(len(self.views))]

    def project_view(self, volume: torch.Tensor, view: int, rays: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """``(rows, cols)`` line integrals, or ``(len(rays),)`` for flat pixel indices ``rays``."""
        if tuple(volume.shape) != self.grid.shape:
            raise ValueError(f"volume shape {tuple(volume.shape)} != grid shape {self.grid.shape}")
        image = _TigreProjectFunction.apply(volume, self, view)
        if rays is None:
            return image
        return image.reshape(-1)[rays.to(self.device, torch.int64).reshape(-1)]

    def backproject_view(self, values: torch.Tensor, view: int,
                         rays: torch.Tensor | None = None) -> torch.Tensor:
        """Matched backprojection of ray values (full image, or values at ``rays``)."""
        rows, cols = self.views[view].detector_shape
        values = values.to(self.device, torch.float32).reshape(-1)
        if rays is not None:
            full = torch.zeros(rows * cols, device=self.device, dtype=torch.float32)
            values = full.index_add_(0, rays.to(self.device, torch.int64).reshape(-1), values)
        return self._adjoint(values.reshape(rows, cols), view)

    def _forward(self, volume: torch.Tensor, view: int) -> torch.Tensor:
        import tigre

        params = self.params[view]
        image = to_tigre_volume(volume.detach().to(torch.float32), params)
        image = np.ascontiguousarray(image.cpu().numpy())
        angles = params.angles[None, :].astype(np.float32)
        projection = tigre.Ax(image, self._geometries[view], angles, self.projection_type)
        return torch.from_numpy(np.ascontiguousarray(projection[0])).to(self.device)

    def _adjoint(self, image: torch.Tensor, view: int) -> torch.Tensor:
        import tigre

        params = self.params[view]
        projection = np.ascontiguousarray(image.detach().to(torch.float32).cpu().numpy()[None])
        angles = params.angles[None, :].astype(np.float32)
        # Positional: the keyword was `krylov` in older TIGRE, `backprojection_type` now.
        volume = tigre.Atb(projection, self._geometries[view], angles, "matched")
        volume = from_tigre_volume(torch.from_numpy(np.asarray(volume, np.float32)), params)
        return volume.contiguous().to(self.device)


class _TigreProjectFunction(torch.autograd.Function):
    """Autograd wrapper: TIGRE ``Ax`` forward, ``Atb(matched)`` backward."""

    @staticmethod
    def forward(ctx, volume, projector, view):  # noqa: D102
        ctx.projector, ctx.view = projector, view
        return projector._forward(volume, view)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        return ctx.projector._adjoint(grad_output, ctx.view), None, None
