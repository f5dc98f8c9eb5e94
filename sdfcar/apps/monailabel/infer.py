"""Run a two-view request: reconstruct with progress in the log, write the label, summarise.

Server-agnostic: the MONAI Label task calls :func:`run_request` and turns
:class:`~sdfcar.apps.monailabel.studies.RequestError` into an HTTP error.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sdfcar.analysis.summary import compact
from sdfcar.apps.monailabel.studies import RequestError, TwoViewJob, resolve_request
from sdfcar.errors import InputError
from sdfcar.io.images import write_volume
from sdfcar.io.outputs import strict_json
from sdfcar.pipeline.inputs import from_arrays
from sdfcar.pipeline.run import Result, run
from sdfcar.progress import Progress, Step, crosses

log = logging.getLogger(__name__)
#: Progress is logged at every tenth of the iterations (and at the last one).
PROGRESS_STEPS = 10


def run_request(request: Mapping[str, Any], studies_dir: str | Path,
                out_dir: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """Validate ``request`` against ``studies_dir``, reconstruct, and write the label as a
    new NIfTI file in ``out_dir`` (the system's temporary folder by default).

    Returns the label file's path and a JSON-ready summary (views, geometry used, scores
    of the reprojection fit, timings). A bad request raises
    :class:`~sdfcar.apps.monailabel.studies.RequestError` before anything is written."""
    started = time.perf_counter()
    job = resolve_request(request, studies_dir)
    loaded = time.perf_counter()
    log.info("sdfcar %s: views %s + %s, geometry from %s, preset %s (method %s), device %s",
             job.case, *job.view_ids, job.geometry_source, job.config.preset,
             job.config.method, job.config.device)
    try:
        result = run(from_arrays(job.views, job.geometry), job.config,
                     progress_logger(job.case))
    except InputError as error:  # e.g. hull.mode=on with an unusable visual hull
        raise RequestError(str(error)) from None
    timings = {"load": round(loaded - started, 3), **result.record.seconds,
               "total": round(time.perf_counter() - started, 3)}
    summary = summarise(job, result, timings)
    label_path = _write_label(result, out_dir)  # last: a failure before leaves no file
    log.info("sdfcar %s: done in %.1f s, %d vessel voxels, silhouette Dice %s", job.case,
             timings["total"], result.record.vessel_voxels,
             ", ".join(f"{s['silhouette_dice']:.3f}" for s in summary["scores"]["views"]))
    return label_path, summary


def progress_logger(case: str, steps: int = PROGRESS_STEPS) -> Progress:
    """A :data:`~sdfcar.progress.Progress` that logs each stage ``steps`` times."""
    def report(step: Step) -> None:
        if crosses(step, steps):
            log.info("sdfcar %s: %s", case, step.describe())
    return report


def summarise(job: TwoViewJob, result: Result, timings: dict[str, float]) -> dict[str, Any]:
    """The JSON answer: what was reconstructed, from what, how well and how fast, and the
    QCA table (:func:`~sdfcar.analysis.summary.compact`; ``available`` false, with the
    reason, for methods without centrelines)."""
    record = result.record
    views = record.reprojection
    return strict_json({
        "case": job.case,
        "views": {"view1": job.view_ids[0], "view2": job.view_ids[1]},
        "geometry_source": job.geometry_source,
        "geometry": job.geometry.to_dict(),
        "label": {"file_format": "nifti", "dtype": "uint8", "values": {"1": "coronary artery"},
                  "grid": result.grid.to_dict(), "origin_mm": result.grid.origin_mm,
                  "vessel_voxels": record.vessel_voxels, "components": record.components},
        "scores": {"views": views,
                   "mean_silhouette_dice": float(np.mean([v["silhouette_dice"] for v in views])),
                   "mean_relative_l2": float(np.mean([v["relative_l2"] for v in views]))},
        "seconds": timings,
        "qca": compact(record.qca),
        "run": {key: value for key, value in record.to_dict().items()
                if key not in ("config", "inputs", "reprojection", "seconds", "qca")},
    })


def _write_label(result: Result, out_dir: str | Path | None) -> str:
    handle, name = tempfile.mkstemp(prefix="sdfcar-label-", suffix=".nii.gz",
                                    dir=None if out_dir is None else str(out_dir))
    os.close(handle)
    try:
        write_volume(name, np.asarray(result.label, np.uint8), result.grid, overwrite=True)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name
