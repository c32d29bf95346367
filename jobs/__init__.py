"""Jobs: the job API scripts see, the sandbox they run in, and the plan compiler.

The heavy parts (OpenDP, Polars) load lazily, so that a sandbox worker, which
imports this package, never loads them: workers do not touch data and should
start in milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    DataMismatch,
    EvaluationFailed,
    JobCancelled,
    JobError,
    JobNotFound,
    PlanError,
    RequestConflict,
    ResourceLimit,
    ResultRejected,
    SchemaError,
    ScriptFailed,
    ScriptRejected,
    ServiceStopping,
    TooManyJobs,
    UnknownDataset,
    WallClockLimit,
)
from ._sandbox import Limits
from ._schema import (
    ColumnSpec,
    Conformer,
    DatasetHandle,
    PersonLimits,
    PrivacyUnit,
    Schema,
    Truncation,
    conform,
    truncate_contributions,
)

if TYPE_CHECKING:
    from ._compiler import zcdp_epsilon
    from ._service import CostEstimate, DatasetCatalog, JobService
    from ._store import JobRecord, JobState, JobStore, ReleaseRecord

_LAZY = {
    "CostEstimate": "._service",
    "DatasetCatalog": "._service",
    "JobService": "._service",
    "JobRecord": "._store",
    "JobState": "._store",
    "JobStore": "._store",
    "ReleaseRecord": "._store",
    "zcdp_epsilon": "._compiler",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "ColumnSpec",
    "Conformer",
    "CostEstimate",
    "DataMismatch",
    "DatasetCatalog",
    "DatasetHandle",
    "EvaluationFailed",
    "JobCancelled",
    "JobError",
    "JobNotFound",
    "JobRecord",
    "JobService",
    "JobState",
    "JobStore",
    "Limits",
    "PersonLimits",
    "PlanError",
    "PrivacyUnit",
    "ReleaseRecord",
    "RequestConflict",
    "ResourceLimit",
    "ResultRejected",
    "Schema",
    "SchemaError",
    "ScriptFailed",
    "ScriptRejected",
    "ServiceStopping",
    "TooManyJobs",
    "Truncation",
    "UnknownDataset",
    "WallClockLimit",
    "conform",
    "truncate_contributions",
    "zcdp_epsilon",
]
