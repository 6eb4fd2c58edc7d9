"""Linearizability checking: Wing & Gong / Lowe search with memoization and P-compositionality.

from raftkv.check import check, Verdict
from raftkv.check.models import KvRegisterModel
result = check(history, KvRegisterModel(), max_steps=1_000_000)
assert result.verdict is Verdict.OK, result.explanation
"""

from raftkv.check.history import UNKNOWN_OUTPUT, Operation, OpOutcome, Recorder, make_operation
from raftkv.check.linearizability import CheckResult, Verdict, check
from raftkv.check.model import Model, partition_by_key

__all__ = [
    "UNKNOWN_OUTPUT",
    "CheckResult",
    "Model",
    "OpOutcome",
    "Operation",
    "Recorder",
    "Verdict",
    "check",
    "make_operation",
    "partition_by_key",
]
