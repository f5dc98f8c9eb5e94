"""The run record (``run.json``): the same fields for every method and front end."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from sdfcar import __version__


@dataclass
class RunRecord:
    """What was run, on what, how it went and how long it took."""

    preset: str
    method: str
    prior: str
    seed: int
    device: str
    #: "integral" or "mask": what was fitted.
    target: str
    #: "given" (vessel masks) or "thresholded" (from the views).
    silhouettes: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    vessel_voxels: int
    components: int
    components_before_postprocess: int
    #: How the tree was selected: bridged fragments, the bridges, dropped voxels.
    tree: dict[str, Any]
    #: Per view: RMSE (mm), relative L2 and silhouette Dice of the label's reprojection.
    reprojection: list[dict[str, Any]]
    #: Wall time of each stage (``prior``, ``method``, ``postprocess``) and of the run.
    seconds: dict[str, float]
    #: Per-method figures (iterations, loss curve, vessels, ...) by method name.
    statistics: dict[str, dict[str, Any]]
    #: The grid of the written label (``volume`` of the geometry, or finer with
    #: ``--output-spacing``) and how it was filled: "fit" (the fit's own grid), "model" (the
    #: method's continuous model evaluated on it) or "interpolated" (occupancy, trilinear).
    output_grid: dict[str, Any] = field(default_factory=dict)
    #: Self-calibration (:mod:`sdfcar.pipeline.calibration`): mode, whether it ran, the
    #: epipolar inconsistency before and after, view 2's correction by stage and in total.
    calibration: dict[str, Any] = field(default_factory=dict)
    #: The views the label was fitted and reprojected in: the given geometry, or view 2
    #: corrected by self-calibration (``corrected``).
    geometry_used: dict[str, Any] = field(default_factory=dict)
    #: Quantitative coronary analysis of the method's centrelines (``available`` false, with
    #: the ``reason``, for methods without them; :mod:`sdfcar.analysis`, ``docs/qca.md``).
    qca: dict[str, Any] = field(default_factory=dict)
    sdfcar_version: str = __version__
    torch_version: str = torch.__version__
    #: Sections front ends add (scores against ground truth, batch case, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record: every field, then the ``extra`` sections."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "extra"}
        return {**data, **self.extra}
