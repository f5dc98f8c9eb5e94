"""Cell values and their mean (worst) summaries, shared by the report modules."""

from __future__ import annotations

import numpy as np


def cell_value(record: dict, metric: str) -> float:
    """A cell's score ``metric`` (NaN when missing or undefined)."""
    value = record["scores"].get(metric)
    return float("nan") if value is None else float(value)


def summary(values: list[float], larger_is_better: bool | None, digits: int = 3) -> str:
    """``mean (worst)`` of finite-or-NaN values; worst is the smallest, the largest, or
    (``None``) the one furthest from 0; ``undefined`` when all are NaN."""
    values = np.asarray(values, float)
    if np.all(np.isnan(values)):  # e.g. distances to an empty prediction
        return "undefined"
    if larger_is_better is None:
        worst = values[np.nanargmax(np.abs(values))]
    else:
        worst = np.nanmin(values) if larger_is_better else np.nanmax(values)
    return f"{np.nanmean(values):.{digits}f} ({worst:.{digits}f})"
