"""Run a manifest of cases on Ray: one task per case, outcomes logged as they finish.

Each case is one Ray task with its own CPU/GPU request (GPU fractions let several small
cases share a GPU). A task reconstructs its case, scores it when ground truth is given and
writes ``OUT/<case>/`` atomically, then the driver appends the case's record to
``OUT/batch.jsonl``. Bad input fails the case at once; a crashed worker or node and
running out of memory are retried; any other error fails the case; the batch goes on.
``resume`` skips the cases recorded ``ok`` whose folder is there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ray
import torch
from ray import exceptions as ray_errors
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sdfcar.apps.batch.manifest import LOG_NAME, BatchCase, batch_inputs, read_manifest
from sdfcar.config import DEFAULT_PRESET, ConfigRequest, ReconstructionConfig
from sdfcar.device import resolve_device
from sdfcar.errors import InputError, bad_input
from sdfcar.io.guard import check_not_input, written_by_sdfcar
from sdfcar.io.images import read_volume
from sdfcar.io.outputs import write_outputs
from sdfcar.pipeline.inputs import Inputs
from sdfcar.pipeline.run import run
from sdfcar.apps.batch.outcomes import OutcomeLog, read_outcomes
from sdfcar.apps.batch.summary import BatchSummary

log = logging.getLogger("sdfcar")

#: Failures worth another attempt: the worker, its node or its memory gave out.
TRANSIENT_ERRORS = (ray_errors.WorkerCrashedError, ray_errors.NodeDiedError,
                    ray_errors.LocalRayletDiedError, ray_errors.OutOfMemoryError,
                    ray_errors.ObjectLostError)
#: Exceptions raised inside a case that are also transient (host or GPU memory).
TRANSIENT_CAUSES = (MemoryError, torch.OutOfMemoryError)
#: Marker of the staging folders of :mod:`sdfcar.io.atomic` (``.<name>.partial-...``).
PARTIAL_MARK = ".partial-"
#: Keys of an outcome record, in the order they are written.
RECORD_KEYS = ("case", "status", "attempts", "seconds", "device", "node", "error", "metrics",
               "finished")


def is_transient(error: BaseException) -> bool:
    """True for failures that a retry may cure (crashed worker or node, out of memory)."""
    if isinstance(error, ray_errors.RayTaskError):
        return isinstance(error.cause, TRANSIENT_CAUSES)
    return isinstance(error, TRANSIENT_ERRORS)


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[bool]:
    """Use the Ray session already open in this process, else attach to the cluster at
    ``address`` (or ``RAY_ADDRESS``), else start a local Ray instance with ``num_cpus``
    CPUs (default: all); yields True for a local instance started here. Shuts down only
    what it started; worker output stays in Ray's session logs."""
    if ray.is_initialized():
        yield False
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        if num_cpus is not None:
            raise bad_input("--num-cpus", "sizes the local Ray instance; not with --address")
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as error:
            raise bad_input("--address", f"{address}: cannot attach to a Ray cluster "
                                         f"({_one_line(error)})") from None
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    try:
        yield not address
    finally:
        ray.shutdown()


Settings = ConfigRequest | ReconstructionConfig
"""A batch's settings: one config for every case, or a request built per case (its preset
then defaults to the case's own, as in ``sdfcar reconstruct``)."""


def case_config(settings: Settings, inputs: Inputs | None = None) -> ReconstructionConfig:
    """The config of one case's ``inputs``; without them, the config of a case that takes
    the default preset (settings are checked with it before any case runs)."""
    if isinstance(settings, ReconstructionConfig):
        return settings
    return settings.build(DEFAULT_PRESET if inputs is None else inputs.default_preset)


def reconstruct_entry(entry: BatchCase, settings: Settings, out_root: Path,
                      threads: int) -> dict[str, Any]:
    """Reconstruct one case into ``out_root/<case>`` (replacing what is there) and return
    its record; bad input gives a ``failed`` record, any other error propagates."""
    started = time.perf_counter()
    torch.set_num_threads(threads)
    record: dict[str, Any] = {"case": entry.name, "status": "failed",
                              "node": socket.gethostname()}
    try:
        inputs = batch_inputs(entry)
        config = case_config(settings, inputs)
        record["device"] = str(resolve_device(config.device))
        truth = read_volume(entry.gt) if entry.gt else None
        result = run(inputs, config)
        metrics = None
        if truth is not None:
            from sdfcar.metrics import evaluate  # MONAI: imported only where cases have GT

            metrics = evaluate(result.label > 0, truth[0] > 0, result.grid, truth[1])
        write_outputs(out_root / entry.name, result, overwrite=True, started=started,
                      extra={"batch": {"case": entry.name, **entry.source()},
                             "metrics": metrics})
        record.update(status="ok", metrics=metrics)
    except InputError as error:
        record["error"] = str(error)
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def run_batch(manifest: str | Path | Iterable[Mapping[str, Any]], out_dir: str | Path,
              settings: Settings | None = None, *, address: str | None = None,
              num_cpus: int | None = None, cpus_per_case: float = 1.0,
              gpus_per_case: float = 0.0, retries: int = 2, resume: bool = False,
              overwrite: bool = False, progress: bool = True) -> BatchSummary:
    """Reconstruct every case of ``manifest`` (a ``.csv``/``.json`` file or a list of
    mappings, see :mod:`sdfcar.apps.batch.manifest`) into ``out_dir/<case>/`` on Ray.

    Uses the Ray session open in this process, else the cluster at ``address`` (or
    ``RAY_ADDRESS``), else a local instance with ``num_cpus`` CPUs. Each case is one task
    requesting ``cpus_per_case`` CPUs and ``gpus_per_case`` GPUs; a case hit by a transient
    failure (:func:`is_transient`) is tried up to ``1 + retries`` times. Every outcome is
    appended to ``out_dir/batch.jsonl``; a case folder is left only for a case whose last
    record is ok. An ``out_dir`` holding results is refused unless ``resume`` (skip the
    cases recorded ok) or ``overwrite`` (redo every case, new log). Bad arguments raise
    :class:`~sdfcar.errors.InputError` before any case runs.
    """
    settings = settings or ConfigRequest()
    entries = read_manifest(manifest)
    config = case_config(settings)  # bad settings fail here
    _check_options(config.device, cpus_per_case, gpus_per_case, retries, num_cpus, resume, overwrite)
    out_dir = Path(out_dir).expanduser().absolute()
    _check_inputs(manifest, entries, out_dir)
    previous = _previous_outcomes(entries, out_dir, resume, overwrite)
    done = {e.name: previous[e.name] for e in entries
            if _finished(previous.get(e.name), out_dir / e.name)}
    todo = [e for e in entries if e.name not in done]
    out_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = dict(done)
    started = time.perf_counter()
    with OutcomeLog(out_dir / LOG_NAME, fresh=overwrite) as outcomes:
        _remove_partials(out_dir)
        if done:
            log.info("skipping %d case(s) already done in %s", len(done), out_dir)
        if todo:
            with ray_session(address, num_cpus) as local:
                _check_resources(cpus_per_case, gpus_per_case, local)
                started = time.perf_counter()
                task = ray.remote(reconstruct_entry).options(
                    num_cpus=cpus_per_case, num_gpus=gpus_per_case, max_retries=0)
                for record in _schedule(todo, task, settings, out_dir, cpus_per_case, retries,
                                        progress):
                    outcomes.append(record)
                    records[record["case"]] = record
                    if record["status"] != "ok":
                        _retire(out_dir / record["case"])
        _remove_partials(out_dir)
    return BatchSummary(out_dir, tuple(records[e.name] for e in entries), tuple(done),
                        round(time.perf_counter() - started, 3))


def _schedule(todo: list[BatchCase], task: Any, settings: Settings, out_dir: Path,
              cpus_per_case: float, retries: int, progress: bool) -> Iterator[dict[str, Any]]:
    """Submit every case, yield each final record as it comes in, resubmit transient
    failures; a progress bar counts the cases done and failed."""
    threads = max(1, int(cpus_per_case))
    settings_ref = ray.put(settings)
    pending = {task.remote(entry, settings_ref, out_dir, threads): (entry, 1) for entry in todo}
    failed = 0
    bar = tqdm(total=len(todo), desc="sdfcar batch", unit="case", disable=not progress,
               dynamic_ncols=True)
    with bar, logging_redirect_tqdm():
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            entry, attempt = pending.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except Exception as error:  # any task failure becomes this case's outcome
                if is_transient(error) and attempt <= retries:
                    log.warning("%s: %s; retrying (attempt %d of %d)", entry.name,
                                _one_line(error), attempt + 1, retries + 1)
                    pending[task.remote(entry, settings_ref, out_dir, threads)] = (entry,
                                                                                 attempt + 1)
                    continue
                record = _failure(entry, error)
            record.update(attempts=attempt, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            record = {**{key: record.get(key) for key in RECORD_KEYS}, **record}
            failed += record["status"] != "ok"
            bar.update()
            bar.set_postfix(ok=bar.n - failed, failed=failed)
            yield record


def _failure(entry: BatchCase, error: BaseException) -> dict[str, Any]:
    """The record of a case whose task raised (or whose worker died)."""
    cause = error.cause if isinstance(error, ray_errors.RayTaskError) else error
    record = {"case": entry.name, "status": "failed", "error": _one_line(cause)}
    if isinstance(error, ray_errors.RayTaskError):
        record["traceback"] = error.traceback_str
    return record


def _one_line(error: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _check_options(device: str, cpus: float, gpus: float, retries: int,
                   num_cpus: int | None, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise bad_input("--resume", "cannot be combined with --overwrite")
    for option, value, least in (("--cpus-per-case", cpus, 1e-4), ("--gpus-per-case", gpus, 0)):
        if not value >= least:
            raise bad_input(option, f"expected a positive number, got {value}")
        if value > 1 and not float(value).is_integer():
            raise bad_input(option, f"above 1 it must be a whole number, got {value}")
    if retries < 0:
        raise bad_input("--retries", f"expected 0 or more, got {retries}")
    if num_cpus is not None and num_cpus < 1:
        raise bad_input("--num-cpus", f"expected 1 or more, got {num_cpus}")
    if device == "cuda" or device.startswith("cuda:"):
        if gpus == 0:
            raise bad_input("--gpus-per-case", f"--device {device} needs a GPU share per case "
                                               "(e.g. --gpus-per-case 1 or 0.25)")
    else:
        resolve_device(device)  # checks the name; CUDA is checked where cases run


def _check_resources(cpus: float, gpus: float, local: bool) -> None:
    """Refuse requests the local instance can never meet; warn on a cluster (it may grow)."""
    available = ray.cluster_resources()
    for name, need in (("CPU", cpus), ("GPU", gpus)):
        have = available.get(name, 0.0)
        if need > have:
            message = f"{need:g} {name}(s) per case but the Ray cluster has {have:g}"
            if local:
                raise bad_input(f"--{name.lower()}s-per-case", message)
            log.warning("%s; cases wait until it has them", message)


def _check_inputs(manifest: str | Path | Iterable[Mapping[str, Any]],
                  entries: list[BatchCase], out_dir: Path) -> None:
    """Refuse a batch whose log or case folders would be, contain or lie inside an input
    (the manifest, a case folder, a view or a ground truth), with or without overwrite."""
    inputs = [path for entry in entries for path in entry.source().values()]
    if isinstance(manifest, (str, Path)):
        inputs.append(manifest)
    for target in (out_dir / LOG_NAME, *(out_dir / entry.name for entry in entries)):
        check_not_input(target, inputs)


def _previous_outcomes(entries: list[BatchCase], out_dir: Path, resume: bool,
                       overwrite: bool) -> dict[str, dict[str, Any]]:
    """The outcomes already in ``out_dir`` that ``resume`` may keep (none otherwise)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise bad_input(str(out_dir), "exists and is not a folder")
    log_path = out_dir / LOG_NAME
    held = log_path.exists() or any((out_dir / e.name).exists() for e in entries)
    if held and not (resume or overwrite):
        raise bad_input(str(out_dir), "already holds batch results (use --resume to finish the "
                                      "batch, or --overwrite to redo every case)")
    return read_outcomes(log_path) if resume else {}


def _finished(record: dict[str, Any] | None, folder: Path) -> bool:
    """A case is done when its last record is ok and its (atomically written) folder is
    there with its ``run.json``, the file written last."""
    return bool(record) and record.get("status") == "ok" and (folder / "run.json").is_file()


def _retire(folder: Path) -> None:
    """Remove the folder an earlier run left for a case that has now failed, so that a
    case folder exists only for a case whose last record is ok; a folder sdfcar did not
    write stays."""
    if written_by_sdfcar(folder):
        retired = folder.with_name(f".{folder.name}{PARTIAL_MARK}failed")
        os.replace(folder, retired)
        shutil.rmtree(retired, ignore_errors=True)


def _remove_partials(out_dir: Path) -> None:
    """Delete the staging folders that killed writers left in ``out_dir`` (called while
    no case of this batch is being written)."""
    for path in out_dir.iterdir():
        if path.name.startswith(".") and PARTIAL_MARK in path.name:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
