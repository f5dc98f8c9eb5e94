"""The folders of one run: ``<base>/sdfcar-<time>/case`` (the inputs) and ``.../reconstruction``.

The case folder follows the project's layout (``geometry.json`` + ``view1``/``view2``) and
is written by ``sdfcar`` itself, which validates every field against the geometry contract
and writes atomically. ``sdfcar`` is imported when a case is written, not when this module
loads, because the Slicer module starts before its first-use installation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import ViewSettings

CASE_FOLDER = "case"
RECONSTRUCTION_FOLDER = "reconstruction"


def make_run_folder(base: str | Path, now: float | None = None) -> Path:
    """Create and return a new, empty ``base/sdfcar-YYYYmmdd-HHMMSS[-n]`` folder."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    for attempt in range(1, 1000):
        folder = base / (f"sdfcar-{stamp}" if attempt == 1 else f"sdfcar-{stamp}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{base}: no free run folder name for {stamp}")


def write_case_folder(case_dir: str | Path, images: Sequence[np.ndarray],
                      views: Sequence[ViewSettings], volume: dict[str, Any]) -> Path:
    """Write ``geometry.json`` and ``view1``/``view2`` for two ``(rows, cols)`` images.

    Each view's ``detector_shape`` is its image's shape. Invalid values raise
    ``sdfcar.errors.InputError`` with one line naming the field (e.g.
    ``views[1].source_to_isocenter_mm``); nothing is left on disk then.
    """
    from sdfcar.io.case import Case, write_case
    from sdfcar.errors import bad_input
    from sdfcar.geometry import CaseGeometry

    arrays = []
    for index, image in enumerate(images, start=1):
        array = np.asarray(image, dtype=np.float32)
        if array.ndim != 2:
            raise bad_input(f"view {index}", f"expected a 2D image [rows, cols], got shape "
                                             f"{array.shape}")
        arrays.append(array)
    geometry = CaseGeometry.from_dict(
        {"views": [view.to_contract(array.shape) for view, array in zip(views, arrays)],
         "volume": volume}, where="")
    return write_case(case_dir, Case(geometry, tuple(arrays)))
