"""Batch reconstruction on Ray: a manifest of cases in, one output folder per case out.

``run_batch("cases.csv", "out/")`` is the Python form of ``sdfcar batch cases.csv --out out/``.
"""

from .manifest import BatchCase, load_batch_case, read_manifest
from .outcomes import read_outcomes
from .runner import is_transient, ray_session, run_batch
from .summary import BatchSummary

__all__ = ["BatchCase", "BatchSummary", "is_transient", "load_batch_case", "ray_session",
           "read_manifest", "read_outcomes", "run_batch"]
