"""What a reconstruction starts from, however it came in: a case folder, two XA DICOM runs,
or arrays. Every front end builds its :class:`Inputs` here, so the same files give the same
views, masks and preset everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdfcar.config import DEFAULT_PRESET, MASK_PRESET
from sdfcar.geometry import CaseGeometry
from sdfcar.io.case import load_case
from sdfcar.pipeline.problem import resolve_target


@dataclass(frozen=True)
class Inputs:
    """Two views, their geometry, optional vessel masks, and where they came from."""

    views: tuple[np.ndarray, ...]
    geometry: CaseGeometry
    #: Vessel masks (nonzero = vessel) that replace silhouettes thresholded from the views.
    masks: tuple[np.ndarray, ...] | None = None
    #: "case" (a case folder), "xa" (two DICOM XA runs) or "arrays".
    kind: str = "arrays"
    #: The run record's ``inputs`` section: files, frames, the 2D step's report.
    description: dict[str, Any] = field(default_factory=dict)
    #: Every file or folder read: outputs must never touch them.
    paths: tuple[Path, ...] = ()
    #: The two prepared XA runs (:class:`sdfcar.xa.pair.XAPair`), whose 2D step is written
    #: into the output folder.
    pair: Any = None

    @property
    def default_preset(self) -> str:
        """The preset used when the user names none: :data:`~sdfcar.config.DEFAULT_PRESET`,
        or :data:`~sdfcar.config.MASK_PRESET` for views that are binary silhouettes (an XA
        pair's views are line-integral proxies, even from the user's masks)."""
        binary = self.kind != "xa" and resolve_target("auto", self.views) == "mask"
        return MASK_PRESET if binary else DEFAULT_PRESET

    def write_extra(self, folder: Path) -> None:
        """Write the input's own outputs into the staging ``folder`` (XA: ``views/``)."""
        if self.pair is not None:
            self.pair.write_views(folder / "views")


def from_arrays(views: Sequence[np.ndarray], geometry: CaseGeometry,
                masks: Sequence[np.ndarray] | None = None) -> Inputs:
    """Views and geometry already in memory."""
    return Inputs(tuple(views), geometry, None if masks is None else tuple(masks))


def from_case_dir(case_dir: str | Path) -> Inputs:
    """A case folder: ``geometry.json``, ``view1.*`` and ``view2.*``."""
    case = load_case(case_dir)
    return Inputs(case.views, case.geometry, None, "case", {"case_dir": str(case_dir)},
                  (Path(case_dir),))


def from_xa_pair(view1: str | Path, view2: str | Path,
                 frame: int | None | Sequence[int | None] = None,
                 overrides: Any = None,
                 masks: Sequence[str | Path | np.ndarray | None] | None = None,
                 mu_per_mm: float | None = None) -> Inputs:
    """Two XA DICOM runs (:func:`sdfcar.xa.prepare_xa_pair`: frame choice, geometry from the
    tags with ``overrides``, extracted or given ``masks``, line-integral proxies)."""
    from sdfcar.xa import prepare_xa_pair

    pair = prepare_xa_pair(view1, view2, frame, overrides, masks=masks, mu_per_mm=mu_per_mm)
    files = [Path(view1), Path(view2)]
    files += [Path(m) for m in (masks or ()) if isinstance(m, (str, Path))]
    description = {"views": {"view1": str(view1), "view2": str(view2)}, "xa": pair.report}
    return Inputs(pair.case.views, pair.case.geometry, pair.masks, "xa", description,
                  tuple(files), pair)
