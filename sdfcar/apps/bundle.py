"""Components of the MONAI bundle (``monai_bundle/``), instantiated from its
``configs/inference.json`` through ``_target_``.

The bundle holds no weights: every case optimises its own reconstruction, through the same
pipeline as ``sdfcar reconstruct`` (:mod:`sdfcar.pipeline`), so its outputs equal the CLI's
for every preset. Data flows as one dictionary: :func:`load_inputs` (a case folder or two
XA DICOM runs) -> :class:`Reconstructor` (the pipeline's first stage, the methods' fit) ->
post-processing transforms (:class:`FinishReconstructiond`: the pipeline's shared second
stage, tree selection, signed distance, reprojections, run record;
:class:`LabelToMetaTensord`) -> :class:`CaseWriter` (the pipeline's writer, with MONAI's
``SaveImage`` writing ``label.nii.gz``; all or nothing).
"""

from __future__ import annotations

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

from sdfcar.config import ConfigRequest
from sdfcar.errors import InputError, bad_input
from sdfcar.geometry import VolumeGrid
from sdfcar.io.atomic import check_target
from sdfcar.io.outputs import write_outputs
from sdfcar.pipeline.inputs import Inputs, from_case_dir, from_xa_pair
from sdfcar.pipeline.run import Result, finish, fit
from sdfcar.progress import reporter

log = logging.getLogger("sdfcar.bundle")
_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def flag(value: bool | str, key: str) -> bool:
    """A boolean bundle setting; command-line text ``true``/``false`` (any case) accepted."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise bad_input(key, f"expected true or false, got {value!r}")


def required_path(value: str | Path | None, key: str) -> Path:
    """A path setting that must be given (the bundle's defaults are empty)."""
    if value is None or not str(value).strip():
        raise bad_input(key, f"required: pass --{key} PATH")
    return Path(str(value))


def _given(value: str | Path | None) -> bool:
    return value is not None and bool(str(value).strip())


def bundle_config(preset: str | None = None, overrides: str | Sequence[str] | None = None,
                  iterations: int | None = None, seed: int | None = None,
                  device: str | None = None, output_spacing_mm: float | None = None
                  ) -> ConfigRequest:
    """The settings request of the bundle's keys; ``preset`` empty or null takes the input's
    default (as ``sdfcar reconstruct``); ``overrides`` may be one ``"key=value"`` text (as
    the command line gives a single item) or a list of them; ``output_spacing_mm`` as
    ``sdfcar reconstruct --output-spacing``."""
    if overrides is None:
        overrides = []
    elif isinstance(overrides, str):
        overrides = [overrides]
    if not all(isinstance(item, str) for item in overrides):
        raise bad_input("overrides", f"expected a list of \"key=value\" texts, got {overrides!r}")
    return ConfigRequest.of(str(preset) if preset else None, overrides, iterations, seed=seed,
                            device=device, output_spacing_mm=output_spacing_mm)


def load_inputs(case_dir: str | Path | None = None, view1: str | Path | None = None,
                view2: str | Path | None = None) -> dict[str, Any]:
    """The bundle's data dictionary (``inputs``): a case folder (``case_dir``) or two XA
    DICOM runs (``view1``, ``view2``), read as ``sdfcar reconstruct`` reads them."""
    if _given(case_dir) and (_given(view1) or _given(view2)):
        raise bad_input("case_dir", "give either case_dir or view1 and view2, not both")
    if _given(case_dir):
        return {"inputs": from_case_dir(required_path(case_dir, "case_dir"))}
    if _given(view1) or _given(view2):
        return {"inputs": from_xa_pair(required_path(view1, "view1"),
                                       required_path(view2, "view2"))}
    raise bad_input("case_dir", "required: pass --case_dir PATH (or --view1 A.dcm --view2 B.dcm)")


class Reconstructor:
    """The pipeline's first stage (:func:`sdfcar.pipeline.run.fit`) as a bundle step: adds
    ``fitted`` (the problem and the methods' reconstruction) to the data."""

    def __init__(self, request: ConfigRequest, progress: bool | str = True) -> None:
        self.request = request
        self.progress = flag(progress, "progress")

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        inputs: Inputs = data["inputs"]
        config = self.request.build(inputs.default_preset)
        fitted = fit(inputs, config, reporter("auto" if self.progress else "none"))
        return {**data, "fitted": fitted}


class FinishReconstructiond(MapTransform):
    """The pipeline's shared second stage (:func:`sdfcar.pipeline.run.finish`: one tree, its
    signed distance, reprojections, run record) as a dictionary transform: ``fitted`` ->
    ``result`` (a :class:`~sdfcar.pipeline.run.Result`), its uint8 label under
    ``label_key`` and its grid under ``grid_key``."""

    def __init__(self, keys: KeysCollection = "fitted", result_key: str = "result",
                 label_key: str = "label", grid_key: str = "grid") -> None:
        super().__init__(keys)
        self.result_key, self.label_key, self.grid_key = result_key, label_key, grid_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            result = finish(out[key])
            out.update({self.result_key: result, self.label_key: result.label,
                        self.grid_key: result.grid})
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
    """Write the reconstruction's output folder with the pipeline's writer
    (:func:`sdfcar.io.outputs.write_outputs`, the files of ``sdfcar reconstruct``), MONAI's
    ``label_saver`` (a ``SaveImage``) writing ``label.nii.gz``; all or nothing.

    An existing ``output_dir`` is refused unless ``overwrite`` (and sdfcar wrote it), and so
    is one that is, contains or lies inside one of ``inputs`` (the case folder or the DICOM
    runs; empty settings are skipped);
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
        self.inputs = tuple(Path(str(p)) for p in inputs if _given(p))

    def check(self) -> Path:
        """Fail now (InputError) if the output folder exists without ``overwrite`` or its
        parent cannot be written."""
        return check_target(self.output_dir, self.overwrite, self.inputs, folder=True)

    def __call__(self, data: Mapping[str, Any]) -> Path:
        result: Result = data["result"]
        label: MetaTensor = data["label"]

        def save(_: np.ndarray, path: Path) -> None:
            self.label_saver(label, filename=path.parent / "label")

        write_outputs(self.output_dir, result, self.overwrite, extra=self.extra_run,
                      label_saver=save)
        log.info("wrote %s (%d vessel voxels, %d component(s))", self.output_dir,
                 result.record.vessel_voxels, result.record.components)
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
