"""``working_views.png``: the working-view map of a reconstruction's QCA target (headless
matplotlib, Agg canvas): foreshortening and overlap (%) over the gantry angles, with the
best angle pairs and the two acquired views marked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from sdfcar.analysis.summary import Analysis

DPI = 80


def write_working_views(path: str | Path, analysis: Analysis) -> Path:
    """Write the map of ``analysis.view_map`` (module docstring)."""
    view_map, target = analysis.view_map, analysis.target
    figure = Figure(figsize=(12.0, 4.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    extent = (*_edges(view_map.primary_deg), *_edges(view_map.secondary_deg))
    best = view_map.best()
    for ax, values, title in zip(figure.subplots(1, 2),
                                 (view_map.foreshortening, view_map.overlap),
                                 ("foreshortening (%)", "overlap with the rest of the tree (%)")):
        shown = ax.imshow(100 * values.T, origin="lower", extent=extent, aspect="auto",
                          cmap="viridis", vmin=0, vmax=max(100 * float(values.max()), 1.0),
                          interpolation="nearest")
        figure.colorbar(shown, ax=ax, shrink=0.85)
        for rank, pick in enumerate(best, 1):
            ax.plot(pick["primary_deg"], pick["secondary_deg"], "w*", markersize=12)
            ax.annotate(str(rank), (pick["primary_deg"], pick["secondary_deg"]), color="w",
                        xytext=(6, 6), textcoords="offset points")
        for n, view in enumerate(analysis.views, 1):
            ax.plot(view.primary_angle_deg, view.secondary_angle_deg, "rs", fillstyle="none",
                    markersize=10)
            ax.annotate(f"view {n}", (view.primary_angle_deg, view.secondary_angle_deg),
                        color="r", xytext=(6, -12), textcoords="offset points")
        ax.set_xlabel("primary angle (deg, LAO + / RAO -)")
        ax.set_ylabel("secondary angle (deg, CRA + / CAU -)")
        ax.set_title(f"{target.vessel} ({target.kind} {target.start_mm:.0f}-"
                     f"{target.end_mm:.0f} mm): {title}", fontsize=9)
    figure.savefig(path, dpi=DPI)
    return Path(path)


def _edges(angles) -> tuple[float, float]:
    """The outer edges of pixels centred on the equally spaced ``angles``."""
    half = (angles[1] - angles[0]) / 2 if len(angles) > 1 else 0.5
    return float(angles[0] - half), float(angles[-1] + half)
