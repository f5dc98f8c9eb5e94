"""Memory limits checked before anything large is allocated.

The estimate is a lower bound from the geometry alone: the working arrays per detector
pixel (ray directions, the view, its target and 2D signed distance) and per voxel (centres,
field values, occupancy, label, signed distance and the distance transforms; more on the
dense path, which evaluates and projects every voxel). A geometry whose estimate exceeds the
available memory (``MemAvailable`` of ``/proc/meminfo``, or ``SDFCAR_MEMORY_LIMIT_GB``) is
refused with one line naming the field, instead of failing deep inside an allocation.
"""

from __future__ import annotations

import os
from pathlib import Path

from sdfcar.errors import bad_input
from sdfcar.geometry import CaseGeometry

#: Environment variable that sets the memory limit in GiB (instead of MemAvailable).
LIMIT_VARIABLE = "SDFCAR_MEMORY_LIMIT_GB"
#: Working bytes per detector pixel of each view.
BYTES_PER_PIXEL = 48
#: Working bytes per voxel on the fast (hull) path and on the dense path.
BYTES_PER_VOXEL = {False: 64, True: 128}
GIB = float(1 << 30)
MEMINFO = Path("/proc/meminfo")


def available_bytes() -> float | None:
    """The memory limit: ``SDFCAR_MEMORY_LIMIT_GB`` when set, else MemAvailable; None when
    neither is known (no check)."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if text:
        try:
            limit = float(text)
        except ValueError:
            limit = float("nan")
        if not limit > 0:
            raise bad_input(LIMIT_VARIABLE, f"expected a positive number of GiB, got {text!r}")
        return limit * GIB
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return None


def check_bytes(needed: float, where: str, what: str) -> None:
    """Refuse (:class:`~sdfcar.errors.InputError`) ``needed`` bytes for ``what`` when they
    exceed :func:`available_bytes`."""
    limit = available_bytes()
    if limit is not None and needed > limit:
        source = LIMIT_VARIABLE if os.environ.get(LIMIT_VARIABLE, "").strip() \
            else f"MemAvailable; set {LIMIT_VARIABLE} to change the limit"
        raise bad_input(where, f"{what} needs about {needed / GIB:.1f} GiB of memory (estimate), "
                               f"more than the {limit / GIB:.1f} GiB available ({source})")


def memory_estimate(geometry: CaseGeometry, dense: bool) -> dict[str, tuple[list[int], float]]:
    """Estimated working bytes per geometry field, with the field's value:
    ``views[i].detector_shape`` and ``volume.shape`` (the dense path needs more per voxel)."""
    parts = {f"views[{index}].detector_shape": (list(view.detector_shape), float(
        BYTES_PER_PIXEL * view.detector_shape[0] * view.detector_shape[1]))
        for index, view in enumerate(geometry.views)}
    shape = geometry.volume.shape
    parts["volume.shape"] = (list(shape), float(BYTES_PER_VOXEL[dense] * shape[0] * shape[1]
                                                * shape[2]))
    return parts


def check_memory(geometry: CaseGeometry, where: str, dense: bool) -> None:
    """Refuse a geometry whose estimated memory (:func:`memory_estimate`, all fields
    together) exceeds the available memory; the message names the largest field."""
    parts = memory_estimate(geometry, dense)
    largest = max(parts, key=lambda name: parts[name][1])
    check_bytes(sum(needed for _, needed in parts.values()), where,
                f"{largest} {parts[largest][0]}")
