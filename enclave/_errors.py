"""Errors of the enclave package (server, auth, catalog, client).

Tree::

    EnclaveError
    ├── Unauthenticated     no token, or a token nobody holds
    ├── PermissionDenied    the caller's role may not make this call
    ├── NotFound            no such principal or dataset
    ├── AlreadyExists       a name already taken
    ├── InvalidArgument     a malformed request
    ├── UploadCorrupt       an upload whose bytes are not what was announced
    ├── VersionConflict     a new version of a dataset that changed meanwhile
    └── JobFailed           (client side) a job ended FAILED or CANCELLED

`budget` and `jobs` have their own roots; `enclave._status` maps all three to
gRPC codes in one table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc


class EnclaveError(Exception):
    """Root of every error raised by `enclave`."""


class Unauthenticated(EnclaveError):
    """Missing or unknown bearer token."""


class PermissionDenied(EnclaveError):
    """The caller's role does not allow this call."""


class NotFound(EnclaveError):
    """No such principal or dataset."""


class AlreadyExists(EnclaveError):
    """The name is taken."""


class InvalidArgument(EnclaveError):
    """A malformed request."""


class UploadCorrupt(EnclaveError):
    """An upload whose bytes are not what the client says it sent (checksum, size)."""


class VersionConflict(EnclaveError):
    """A new version that would replace another version than the one it was sent for."""


class JobFailed(EnclaveError):
    """Raised by the client when a job it waited for did not succeed.

    Attributes:
        code: the gRPC status code of the failure.
        job: the final job message (its releases, cost and error).
    """

    def __init__(self, code: grpc.StatusCode, message: str, job: Any) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.job = job
