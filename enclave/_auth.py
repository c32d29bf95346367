"""Principals, bearer tokens, and the interceptor that checks every call.

Tokens are 256-bit random strings shown once at creation; the database keeps
only their SHA-256 (a fast hash is enough for a secret of that entropy, and lets
lookup be one indexed query).

The interceptor wraps each method handler: it authenticates the token, checks
the caller's role against `METHOD_ROLES`, makes the principal available to the
servicer through `current_principal()`, and turns domain errors raised by the
servicer into gRPC statuses (`enclave._status`). Health checking and reflection
are the only unauthenticated services.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import enum
import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

import budget

from . import _status
from ._errors import (
    AlreadyExists,
    EnclaveError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)

log = logging.getLogger(__name__)

metadata = MetaData()

principals_table = Table(
    "principals",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
#: Every call checks a token: the statement is built once.
_BY_TOKEN = select(principals_table).where(principals_table.c.token_sha256 == bindparam("b_hash"))


class Role(enum.StrEnum):
    """What a principal may do (see DESIGN.md, Roles)."""

    RESEARCHER = "researcher"
    PROVIDER = "provider"
    DPO = "dpo"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: Role
    created_at: dt.datetime | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PrincipalStore:
    """Principals and their token hashes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_tables(self) -> None:
        """Create the table if missing."""
        budget.upgrade_schema(self._engine, "enclave")

    def create(self, name: str, role: Role | str, *, created_by: str) -> tuple[Principal, str]:
        """Create a principal; return it and its token (the only time the token exists).

        Raises:
            InvalidArgument: bad name or role.
            AlreadyExists: the name is taken.
        """
        if not _NAME.match(name):
            raise InvalidArgument(
                f"principal name {name!r} must be 1-64 characters of a-z 0-9 _ . @ - "
                "starting with a letter or digit"
            )
        try:
            role = Role(role)
        except ValueError:
            raise InvalidArgument(
                f"role must be one of {', '.join(r.value for r in Role)}, got {role!r}"
            ) from None
        token = "enc_" + secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(principals_table).values(
                        name=name,
                        role=role.value,
                        token_sha256=_hash(token),
                        created_by=created_by,
                        created_at=now,
                    )
                )
        except IntegrityError:
            raise AlreadyExists(f"principal {name!r} already exists") from None
        log.info("principal %s (%s) created by %s", name, role.value, created_by)
        return Principal(name, role, now), token

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding ``token``, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(_BY_TOKEN, {"b_hash": _hash(token)}).mappings().first()
        return None if row is None else Principal(row["name"], Role(row["role"]), row["created_at"])

    def get(self, name: str) -> Principal | None:
        """The principal called ``name``, or None."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(select(principals_table).where(principals_table.c.name == name))
                .mappings()
                .first()
            )
        return None if row is None else Principal(row["name"], Role(row["role"]), row["created_at"])

    def list(self) -> list[Principal]:
        """All principals by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(principals_table).order_by(principals_table.c.name)
            ).mappings()
            return [Principal(r["name"], Role(r["role"]), r["created_at"]) for r in rows]


# --- the interceptor -------------------------------------------------------------------

R, P, D, A = Role.RESEARCHER, Role.PROVIDER, Role.DPO, Role.ADMIN
#: Who may call what. A method missing here is refused for everyone.
METHOD_ROLES: dict[str, frozenset[Role]] = {
    "/enclave.v1.JobService/SubmitJob": frozenset({R}),
    "/enclave.v1.JobService/EstimateCost": frozenset({R}),
    "/enclave.v1.JobService/GetJob": frozenset({R, D}),
    "/enclave.v1.JobService/ListJobs": frozenset({R, D}),
    "/enclave.v1.JobService/CancelJob": frozenset({R}),
    "/enclave.v1.JobService/WatchJob": frozenset({R, D}),
    "/enclave.v1.CatalogService/ListDatasets": frozenset({R, P, D, A}),
    "/enclave.v1.CatalogService/DescribeDataset": frozenset({R, P, D, A}),
    "/enclave.v1.CatalogService/RegisterDataset": frozenset({P}),
    "/enclave.v1.CatalogService/UploadDataset": frozenset({P}),
    "/enclave.v1.CatalogService/ConfirmDataset": frozenset({P}),
    "/enclave.v1.CatalogService/DeleteDataset": frozenset({P}),
    "/enclave.v1.CatalogService/GetQualityReport": frozenset({P}),
    "/enclave.v1.CatalogService/GrantAccess": frozenset({P}),
    "/enclave.v1.CatalogService/RevokeAccess": frozenset({P}),
    "/enclave.v1.CatalogService/SetPolicy": frozenset({P}),
    "/enclave.v1.CatalogService/GetPolicy": frozenset({R, P, D}),
    "/enclave.v1.CatalogService/GetDatasetUsage": frozenset({P, D}),
    "/enclave.v1.BudgetService/GetBudget": frozenset({R}),
    "/enclave.v1.AdminService/CreatePrincipal": frozenset({A}),
    "/enclave.v1.AdminService/ListPrincipals": frozenset({A, D}),
    "/enclave.v1.AuditService/VerifyLedger": frozenset({D}),
    "/enclave.v1.AuditService/GetLedgerHead": frozenset({D}),
    # Providers too, for their own datasets (checked by the servicer).
    "/enclave.v1.AuditService/ListBudgets": frozenset({D, P}),
    "/enclave.v1.AuditService/ListLedger": frozenset({D}),
}
PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("enclave_principal")


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    return _current.get()


def _bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _abort(context: grpc.ServicerContext, err: BaseException) -> None:
    code = _status.code_for(err)
    if code == grpc.StatusCode.INTERNAL and not isinstance(err, _status.DOMAIN_ERRORS):
        log.error("unexpected error in %s", context, exc_info=err)
    retry_after_ms = getattr(err, "retry_after_ms", None)
    if retry_after_ms is not None:
        # gRPC's own server pushback key: clients with a retry policy honour it.
        context.set_trailing_metadata((("grpc-retry-pushback-ms", str(retry_after_ms)),))
    context.abort(code, _status.message_for(err))


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Authenticates, authorises, and maps errors for every Enclave call."""

    def __init__(self, principals: PrincipalStore) -> None:
        self._principals = principals

    def _authorise(
        self, token: str | None, roles: frozenset[Role] | None, method: str
    ) -> Principal:
        if token is None:
            raise Unauthenticated(
                "missing bearer token: send 'authorization: Bearer <token>' metadata "
                "(the CLI reads ENCLAVE_TOKEN)"
            )
        principal = self._principals.authenticate(token)
        if principal is None:
            raise Unauthenticated("unknown or revoked token")
        if roles is None or principal.role not in roles:
            allowed = ", ".join(sorted(r.value for r in roles or ())) or "nobody"
            raise PermissionDenied(
                f"{method.rsplit('/', 1)[-1]} is for role(s) {allowed}; "
                f"{principal.name} is {principal.role.value}"
            )
        return principal

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        method: str = details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        roles = METHOD_ROLES.get(method)
        token = _bearer(details.invocation_metadata)

        def authorise(context: grpc.ServicerContext) -> Principal:
            try:
                return self._authorise(token, roles, method)
            except EnclaveError as err:
                _abort(context, err)
                raise  # pragma: no cover - abort() raises

        def answering(inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
            """A single-answer method (unary or client-streaming request), authorised."""

            def call(request: Any, context: grpc.ServicerContext) -> Any:
                reset = _current.set(authorise(context))
                try:
                    return inner(request, context)
                except _status.DOMAIN_ERRORS as err:
                    _abort(context, err)
                except Exception as err:
                    if context.code() is None:  # not already an abort() of ours
                        _abort(context, err)
                    raise
                finally:
                    _current.reset(reset)

            return call

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                answering(handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                reset = _current.set(authorise(context))
                try:
                    yield from inner_us(request, context)
                except _status.DOMAIN_ERRORS as err:
                    _abort(context, err)
                except Exception as err:
                    if context.code() is None:
                        _abort(context, err)
                    raise
                finally:
                    # The stream may be closed from another context; the value is
                    # overwritten by the next call on this thread anyway.
                    with contextlib.suppress(ValueError):
                        _current.reset(reset)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                answering(handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler  # pragma: no cover - no bidirectional methods
