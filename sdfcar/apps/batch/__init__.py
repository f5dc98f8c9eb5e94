"""Batch reconstruction on Ray: a manifest of cases in, one output folder per case out.

``run_batch("cases.csv", "out/")`` is the Python form of ``sdfcar batch cases.csv --out out/``.
"""

from sdfcar.apps.batch.manifest import BatchCase, batch_inputs, read_manifest
from sdfcar.apps.batch.outcomes import read_outcomes
from sdfcar.apps.batch.runner import is_transient, ray_session, run_batch
from sdfcar.apps.batch.summary import BatchSummary

__all__ = ["BatchCase", "BatchSummary", "batch_inputs", "is_transient", "ray_session",
           "read_manifest", "read_outcomes", "run_batch"]
