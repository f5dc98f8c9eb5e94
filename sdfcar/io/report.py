"""A one-page PNG summary of a reconstruction (headless matplotlib, Agg canvas)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sdfcar.geometry import ViewGeometry, VolumeGrid
from sdfcar.geometry.correction import Correction

if TYPE_CHECKING:
    from sdfcar.pipeline.run import Result

DPI = 80
ROW_HEIGHT_IN = 3.3
WIDTH_IN = 12.0
#: LPS direction letters for the +/- sense of the x, y, z patient axes.
LPS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))


def write_report(path: str | Path, result: Result) -> Path:
    """Write ``report.png``: per view target / reprojection / difference, then label MIPs."""
    views = list(zip(result.views, result.reprojections))
    figure = Figure(figsize=(WIDTH_IN, ROW_HEIGHT_IN * (len(views) + 1)), dpi=DPI,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(views) + 1, 3, squeeze=False)
    for row, (target, reprojection) in enumerate(views):
        _view_row(figure, axes[row], row + 1, np.asarray(target, float),
                  np.asarray(reprojection, float))
    _mip_row(figure, axes[-1], np.asarray(result.label), result.grid)
    if result.record.geometry_used.get("corrected"):
        view = ViewGeometry.from_dict(result.record.geometry_used["views"][1])
        figure.suptitle(f"view 2 self-calibrated: {Correction.of_view(view).describe()}",
                        fontsize=10)
    figure.savefig(path, dpi=DPI)
    return Path(path)


def _view_row(figure: Figure, axes, number: int, target: np.ndarray,
              reprojection: np.ndarray) -> None:
    difference = reprojection - target
    rmse = float(np.sqrt(np.mean(difference ** 2)))
    high = max(float(target.max()), float(reprojection.max()), 1e-6)
    limit = max(float(np.abs(difference).max()), 1e-6)
    panels = [(target, f"view {number}: target (mm)", "gray", 0.0, high),
              (reprojection, f"view {number}: reprojection (mm)", "gray", 0.0, high),
              (difference, f"view {number}: reprojection - target, RMSE {rmse:.3g} mm",
               "RdBu_r", -limit, limit)]
    for ax, (image, title, cmap, low, top) in zip(axes, panels):
        shown = ax.imshow(image, cmap=cmap, vmin=low, vmax=top, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        figure.colorbar(shown, ax=ax, shrink=0.85)


def _mip_row(figure: Figure, axes, label: np.ndarray, grid: VolumeGrid) -> None:
    for axis, ax in enumerate(axes):
        horizontal, vertical = [a for a in range(3) if a != axis]
        mip = label.max(axis=axis).T  # rows: the vertical axis, columns: the horizontal one
        ax.imshow(mip, cmap="gray", vmin=0, vmax=1, origin="lower", interpolation="nearest",
                  aspect=grid.spacing_mm[vertical] / grid.spacing_mm[horizontal])
        ax.set_title(f"label MIP along {_axis_name(grid, axis)}", fontsize=9)
        ax.set_xlabel(_axis_name(grid, horizontal))
        ax.set_ylabel(_axis_name(grid, vertical))


def _axis_name(grid: VolumeGrid, axis: int) -> str:
    """E.g. ``"j → P"``: the LPS direction the index axis runs to (``~`` when oblique)."""
    column = grid.direction_matrix[:, axis]
    dominant = int(np.argmax(np.abs(column)))
    letter = LPS_LETTERS[dominant][0 if column[dominant] > 0 else 1]
    approximate = "~" if abs(column[dominant]) < 0.99 else ""
    return f"{'ijk'[axis]} → {approximate}{letter}"
