"""Enclave: privacy-preserving remote computation over gRPC.

Researchers send job scripts; the scripts run sandboxed next to confidential
data and only differentially private aggregates, paid from a per-user privacy
budget, come back.
"""

from ._client import Budget, Client, Cost, Estimate, Job, LedgerRecord, Release
from ._errors import (
    AlreadyExists,
    EnclaveError,
    InvalidArgument,
    JobFailed,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

__all__ = [
    "AlreadyExists",
    "Budget",
    "Client",
    "Cost",
    "EnclaveError",
    "Estimate",
    "InvalidArgument",
    "Job",
    "JobFailed",
    "LedgerRecord",
    "NotFound",
    "PermissionDenied",
    "Release",
    "Unauthenticated",
]
