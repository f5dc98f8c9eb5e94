"""Components of the MONAI bundle (``monai_bundle/``), instantiated from its
``configs/inference.json`` through ``_target_``.

The bundle holds no weights: every case optimises its own field. Data flows as one
dictionary: :func:`load_case_data` (views and geometry) -> :class:`Reconstructor` (the
per-case optimisation; its SDF and grid) -> post-processing transforms
(:class:`SignedDistanceToLabeld`, :class:`SelectTreed`, :class:`LabelToMetaTensord`)
-> :class:`CaseWriter` (MONAI's NIfTI writer, the 3D Slicer ``.seg.nrrd`` and ``run.json``,
all or nothing).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import orientation_ras_lps
from monai.transforms import MapTransform
from monai.utils import MetaKeys, SpaceKeys
from scipy import ndimage

from sdfcar.io.atomic import atomic_directory, check_target
from sdfcar.io.case import load_case
from sdfcar.config import ReconstructionConfig, build_config
from sdfcar.errors import InputError, fail
from sdfcar.geometry import VolumeGrid
from sdfcar.io.outputs import strict_json, write_segmentation
from sdfcar.pipeline.connect import CONNECTIVITY_26, select_tree
from sdfcar.pipeline.reconstruct import reconstruct

log = logging.getLogger("sdfcar.apps.bundle")

#: Engine run entries that describe the label before the bundle's post-processing.
_UNPROCESSED_LABEL_KEYS = ("components", "vessel_voxels", "reprojection_error",
                           "bridged_fragments", "bridges", "dropped_voxels")
_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def flag(value: bool | str, key: str) -> bool:
    """A boolean bundle setting; command-line text ``true``/``false`` (any case) accepted."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise fail(key, f"expected true or false, got {value!r}")


def required_path(value: str | Path | None, key: str) -> Path:
    """A path setting that must be given (the bundle's defaults are empty)."""
    if value is None or not str(value).strip():
        raise fail(key, f"required: pass --{key} PATH")
    return Path(str(value))


def bundle_config(preset: str = "default", overrides: str | Sequence[str] | None = None,
                  iterations: int | None = None, seed: int | None = None,
                  device: str | None = None) -> ReconstructionConfig:
    """:func:`sdfcar.config.build_config` from bundle settings; ``overrides`` may be one
    ``"key=value"`` text (as the command line gives a single item) or a list of them."""
    if overrides is None:
        overrides = []
    elif isinstance(overrides, str):
        overrides = [overrides]
    if not all(isinstance(item, str) for item in overrides):
        raise fail("overrides", f"expected a list of \"key=value\" texts, got {overrides!r}")
    return build_config(str(preset), list(overrides), iterations=iterations, seed=seed,
                        device=device)


def load_case_data(case_dir: str | Path) -> dict[str, Any]:
    """Read a case folder (``geometry.json``, ``view1.*``, ``view2.*``) into the bundle's
    data dictionary: ``case_dir``, ``views`` and ``geometry``."""
    path = required_path(case_dir, "case_dir")
    case = load_case(path)
    return {"case_dir": str(path), "views": case.views, "geometry": case.geometry}


class Reconstructor:
    """The per-case optimisation (:func:`sdfcar.pipeline.reconstruct.reconstruct`) as a bundle step.

    The engine runs without its own component selection so the bundle's post-processing
    does it in the open; ``connectivity`` of ``config`` is read by :class:`SelectTreed`
    instead. Adds ``sdf`` (mm, negative inside), ``occupancy``, ``grid`` and ``run``
    (settings, versions, timings, loss curve) to the data.
    """

    def __init__(self, config: ReconstructionConfig, progress: bool | str = True) -> None:
        self.config = config
        self.progress = flag(progress, "progress")

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        engine_config = dataclasses.replace(self.config, connectivity="none")
        result = reconstruct(data["views"], data["geometry"], engine_config,
                             progress=self.progress)
        run = {key: value for key, value in result.run.items()
               if key not in _UNPROCESSED_LABEL_KEYS}
        run["config"] = self.config.to_dict()
        return {**data, "sdf": result.sdf, "occupancy": result.occupancy,
                "grid": result.grid, "run": run}


class SignedDistanceToLabeld(MapTransform):
    """Threshold a signed distance at its zero level set: ``label = sdf < 0`` (uint8).

    The engine's SDF is negative exactly on the voxels its field calls vessel (both field
    modes), so this is the label before component selection.
    """

    def __init__(self, sdf_key: str = "sdf", label_key: str = "label") -> None:
        super().__init__(sdf_key)
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        out[self.label_key] = (np.asarray(out[self.keys[0]]) < 0).astype(np.uint8)
        return out


class SelectTreed(MapTransform):
    """One tree from a label (:func:`sdfcar.pipeline.connect.select_tree`, the engine's own rule, so
    the result matches ``sdfcar reconstruct`` voxel for voxel): ``mode`` "bridge" joins
    fragments to the largest component through the occupancy, "largest" keeps that
    component only, "none" leaves the label as it is. What was done goes into ``run``.
    """

    def __init__(self, keys: KeysCollection = "label", occupancy_key: str = "occupancy",
                 mode: str = "bridge", run_key: str = "run") -> None:
        super().__init__(keys)
        self.occupancy_key = occupancy_key
        self.mode = mode
        self.run_key = run_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            selection = select_tree(np.asarray(out[key]) > 0,
                                    np.asarray(out[self.occupancy_key]), self.mode)
            out[key] = selection.label.astype(np.uint8)
            if self.run_key in out:
                out[self.run_key] = {**out[self.run_key], **selection.summary()}
        return out


class LabelToMetaTensord(MapTransform):
    """An ``(i, j, k)`` label as a channel-first uint8 :class:`~monai.data.MetaTensor` whose
    affine is the grid's index -> RAS map (MONAI's convention; the file keeps the true LPS
    geometry once a NIfTI writer stores it)."""

    def __init__(self, keys: KeysCollection = "label", grid_key: str = "grid") -> None:
        super().__init__(keys)
        self.grid_key = grid_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        grid: VolumeGrid = out[self.grid_key]
        affine = torch.as_tensor(orientation_ras_lps(grid.affine), dtype=torch.float64)
        for key in self.key_iterator(out):
            voxels = torch.as_tensor(np.asarray(out[key], dtype=np.uint8)[None])
            out[key] = MetaTensor(voxels, affine=affine, meta={MetaKeys.SPACE: SpaceKeys.RAS})
        return out


class CaseWriter:
    """Write ``label.nii.gz`` (with ``label_saver``, a MONAI ``SaveImage``),
    ``segmentation.seg.nrrd`` and ``run.json`` into ``output_dir`` atomically.

    An existing ``output_dir`` is refused unless ``overwrite`` (and sdfcar wrote it), and so
    is one that is, contains or lies inside one of ``inputs`` (the case folder);
    :meth:`check` says so before the optimisation starts. ``extra_run`` entries are added
    to ``run.json``.
    """

    def __init__(self, output_dir: str | Path, label_saver: Callable[..., Any],
                 overwrite: bool | str = False,
                 extra_run: Mapping[str, Any] | None = None,
                 inputs: Sequence[str | Path] = ()) -> None:
        self.output_dir = required_path(output_dir, "output_dir")
        self.label_saver = label_saver
        self.overwrite = flag(overwrite, "overwrite")
        self.extra_run = dict(extra_run or {})
        self.inputs = tuple(inputs)

    def check(self) -> Path:
        """Fail now (InputError) if the output folder exists without ``overwrite`` or its
        parent cannot be written."""
        return check_target(self.output_dir, self.overwrite, self.inputs, folder=True)

    def __call__(self, data: Mapping[str, Any]) -> Path:
        label: MetaTensor = data["label"]
        voxels = np.asarray(label.array[0], dtype=np.uint8)
        run = {**data["run"], **self.extra_run,
               "components": int(ndimage.label(voxels, CONNECTIVITY_26)[1]),
               "vessel_voxels": int(voxels.sum())}
        with atomic_directory(self.output_dir, self.overwrite, self.inputs) as staging:
            self.label_saver(label, filename=staging / "label")
            write_segmentation(staging / "segmentation.seg.nrrd", voxels, data["grid"])
            text = json.dumps(strict_json(run), indent=2, allow_nan=False, default=str)
            (staging / "run.json").write_text(text + "\n")
        log.info("wrote %s (%d vessel voxels, %d component(s))", self.output_dir,
                 run["vessel_voxels"], run["components"])
        return self.output_dir


def input_error(error: BaseException | None) -> InputError | None:
    """The :class:`~sdfcar.errors.InputError` behind ``error`` (MONAI wraps exceptions raised
    while it instantiates components or evaluates expressions), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, InputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def report_input_errors_briefly() -> None:
    """Under ``python -m monai.bundle``, print an uncaught bad-input error as one line
    (``sdfcar bundle: error: <file or field>: <problem>``) instead of a traceback.

    Other errors, and Python callers (where exceptions reach the caller), are unchanged.
    """
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main_spec is None or not main_spec.name.startswith("monai.bundle"):
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException,
             trace: TracebackType | None) -> None:
        cause = input_error(error)
        if cause is None:
            previous(kind, error, trace)
        else:
            print(f"sdfcar bundle: error: {cause}", file=sys.stderr, flush=True)

    sys.excepthook = hook
