"""Errors of the jobs package.

Tree::

    JobError
    ├── SchemaError         a schema TOML that is not valid
    ├── DataMismatch        data that does not match its schema (provider-only details)
    ├── UnknownDataset      no dataset of that name granted to the caller
    ├── PlanError           a plan that is invalid against *public* metadata
    ├── ScriptRejected      RestrictedPython refused to compile the script
    ├── ScriptFailed        the script raised; the message is the script's own
    ├── ResultRejected      the result is not JSON built from released values
    ├── ResourceLimit       CPU, memory or output limit hit
    │   └── WallClockLimit  the job ran past its wall-clock limit
    ├── EvaluationFailed    evaluating a plan on confidential data failed (generic text)
    ├── JobNotFound         no job of that id for this caller
    ├── RequestConflict     a request_id reused with a different job
    ├── JobCancelled        the job was cancelled
    ├── TooManyJobs         the caller (or the server) has as many jobs queued as allowed
    ├── SandboxUnavailable  strict mode, and an isolation layer could not be applied
    └── ServiceStopping     the server is draining and takes no new jobs

Only `EvaluationFailed` is raised *after* confidential data was touched, which is
why its message is fixed: exception text from Polars/OpenDP evaluation may quote
values. Every other message depends only on the script and public metadata.
"""

from __future__ import annotations


class JobError(Exception):
    """Root of every error raised by `jobs`."""


class SchemaError(JobError):
    """A dataset schema that is malformed or self-contradictory."""


class DataMismatch(JobError):
    """Data that does not match its schema.

    The message may quote rows and values: it is returned only to the provider
    who uploaded the data, never to a researcher.
    """


class UnknownDataset(JobError):
    """No dataset of that name, or none the caller holds a grant on.

    The two cases share one error so that researchers cannot enumerate the
    names of datasets they were not granted.
    """


class PlanError(JobError):
    """A plan that cannot be released: unknown column, wrong type, bad bounds."""


class ScriptRejected(JobError):
    """The script does not compile under RestrictedPython."""


class ScriptFailed(JobError):
    """The script raised an exception of its own."""


class ResultRejected(JobError):
    """The script's result is not JSON built from released values and constants."""


class ResourceLimit(JobError):
    """The worker hit a CPU, memory or output limit."""


class WallClockLimit(ResourceLimit):
    """The job ran longer than its wall-clock limit."""


class EvaluationFailed(JobError):
    """Evaluating a plan on the confidential data failed; details stay in the server log."""

    def __init__(self) -> None:
        super().__init__(
            "evaluating the plan on the dataset failed; the budget for this release was "
            "charged (charge before release). Details are in the server log for the operator."
        )


class JobNotFound(JobError):
    """No job with that id is visible to the caller."""


class RequestConflict(JobError):
    """The request_id was already used for a different script or dataset."""


class JobCancelled(JobError):
    """The job was cancelled before it finished."""


class ServiceStopping(JobError):
    """The server is shutting down and accepts no new jobs."""


class TooManyJobs(JobError):
    """The caller, or the whole server, already has as many jobs queued or running as allowed.

    Nothing was queued or charged; ``retry_after_ms`` is a hint for when to try again.
    """

    def __init__(self, message: str, retry_after_ms: int = 2000) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class SandboxUnavailable(JobError):
    """In strict mode, a worker could not apply every isolation layer; the script did not run."""
