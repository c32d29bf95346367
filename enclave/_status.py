"""The one table from domain errors to gRPC status codes.

Servicers raise domain errors; the auth interceptor's wrapper catches them here
and aborts the call with the mapped code and the error's own message. Messages
of domain errors never quote confidential data (see each package's error tree);
unexpected exceptions become a bare INTERNAL without their text or traceback.
"""

from __future__ import annotations

import grpc

import budget
import jobs

from . import _errors as e

_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (e.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (e.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (e.NotFound, grpc.StatusCode.NOT_FOUND),
    (e.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (e.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (e.UploadCorrupt, grpc.StatusCode.DATA_LOSS),
    (e.VersionConflict, grpc.StatusCode.ABORTED),
    (budget.InvalidAmount, grpc.StatusCode.INVALID_ARGUMENT),
    (budget.NoGrant, grpc.StatusCode.PERMISSION_DENIED),
    (budget.BudgetExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (budget.LedgerCorrupt, grpc.StatusCode.DATA_LOSS),
    (budget.StaleVersion, grpc.StatusCode.ABORTED),
    (budget.BudgetError, grpc.StatusCode.FAILED_PRECONDITION),
    (jobs.SchemaError, grpc.StatusCode.INVALID_ARGUMENT),
    (jobs.DataMismatch, grpc.StatusCode.INVALID_ARGUMENT),
    (jobs.UnknownDataset, grpc.StatusCode.NOT_FOUND),
    (jobs.PlanError, grpc.StatusCode.INVALID_ARGUMENT),
    (jobs.ScriptRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (jobs.ScriptFailed, grpc.StatusCode.INVALID_ARGUMENT),
    (jobs.ResultRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (jobs.WallClockLimit, grpc.StatusCode.DEADLINE_EXCEEDED),
    (jobs.ResourceLimit, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (jobs.EvaluationFailed, grpc.StatusCode.INTERNAL),
    (jobs.JobNotFound, grpc.StatusCode.NOT_FOUND),
    (jobs.RequestConflict, grpc.StatusCode.ALREADY_EXISTS),
    (jobs.JobCancelled, grpc.StatusCode.CANCELLED),
    (jobs.ServiceStopping, grpc.StatusCode.UNAVAILABLE),
    (jobs.TooManyJobs, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (jobs.JobError, grpc.StatusCode.FAILED_PRECONDITION),
)

DOMAIN_ERRORS = (e.EnclaveError, budget.BudgetError, jobs.JobError)


def code_for(err: BaseException) -> grpc.StatusCode:
    """The status code of a domain error; INTERNAL for anything unexpected."""
    for cls, code in _TABLE:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.INTERNAL


def code_name(err: BaseException) -> str:
    """`code_for` as the name stored with a failed job (jobs never import grpc)."""
    name: str = code_for(err).name
    return name


def message_for(err: BaseException) -> str:
    """The message sent to the caller: the domain error's text, or a fixed one."""
    if isinstance(err, DOMAIN_ERRORS):
        return str(err)
    return "internal error; the operator can find details in the server log"
