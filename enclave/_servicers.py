"""gRPC servicers: translate proto messages to domain calls and back, nothing else.

Authentication, authorisation and error mapping happen in `enclave._auth`'s
interceptor; a servicer reads the caller with `current_principal()` and raises
domain errors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from budget import DELTA_QUANTUM, Balance, LedgerCorrupt, LedgerEntry, Policy, total
from jobs import (
    DatasetHandle,
    JobRecord,
    JobState,
    ReleaseRecord,
    Schema,
    SchemaError,
    Truncation,
    zcdp_epsilon,
)

from ._app import Enclave
from ._auth import Role, current_principal
from ._catalog import (
    FORMATS,
    MAX_PERSON_PARTITIONS,
    PERSON_PARTITION_BYTES,
    DatasetEntry,
    check_name,
    copy_upload,
    read_batches,
    receive_upload,
)
from ._errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    UploadCorrupt,
    VersionConflict,
)
from ._format import amount
from ._proposal import propose_from
from ._quality import Cleaning, quality_report_from
from ._quality import render as render_quality
from .v1 import enclave_pb2 as pb
from .v1 import enclave_pb2_grpc as pb_grpc

_STATES = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}
_ROLES = {
    Role.RESEARCHER: pb.ROLE_RESEARCHER,
    Role.PROVIDER: pb.ROLE_PROVIDER,
    Role.DPO: pb.ROLE_DPO,
    Role.ADMIN: pb.ROLE_ADMIN,
}
_ROLES_BACK = {v: k for k, v in _ROLES.items()}


def _ts(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive UTC
        value = value.replace(tzinfo=dt.UTC)
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


#: The δ at which a dataset's ρ is shown as (ε, δ); None for pure-DP datasets.
EquivalentDelta = Callable[[str], "float | None"]


def _decimal(x: float) -> Decimal:
    return Decimal(repr(x))


def _cost(releases: Iterable[ReleaseRecord], equivalent_delta: EquivalentDelta) -> pb.Cost:
    """The exact total of some releases, and the same as (ε, δ)-DP.

    ρ composes by addition, so the ρ spent on each zCDP dataset is converted
    once (tighter than converting each release); the (ε, δ) of several datasets
    then add up (basic composition).
    """
    releases = list(releases)
    eps_eq, delta_eq = Decimal(0), Decimal(0)
    for name in sorted({r.dataset for r in releases}):
        mine = [r for r in releases if r.dataset == name]
        rho = total(r.rho for r in mine)
        eps_eq += total(r.epsilon for r in mine)
        delta_eq += total((r.delta for r in mine), quantum=DELTA_QUANTUM)
        conversion = equivalent_delta(name)
        if rho and conversion is not None:
            eps_eq += _decimal(zcdp_epsilon(rho, conversion))
            delta_eq += _decimal(conversion)
    return pb.Cost(
        epsilon=str(total(r.epsilon for r in releases)),
        delta=str(total((r.delta for r in releases), quantum=DELTA_QUANTUM)),
        rho=str(total(r.rho for r in releases)),
        epsilon_equivalent=amount(eps_eq),
        delta_equivalent=amount(delta_eq),
    )


def job_to_proto(
    job: JobRecord, equivalent_delta: EquivalentDelta, *, with_script: bool = False
) -> pb.Job:
    """The wire form of a job."""
    return pb.Job(
        job_id=job.id,
        principal=job.principal,
        dataset=job.dataset,
        request_id=job.request_id,
        state=_STATES[job.state],
        result_json="" if job.result is None else json.dumps(job.result),
        cost=_cost(job.releases, equivalent_delta),
        releases=[
            pb.ReleaseRecord(
                index=r.index,
                dataset=r.dataset,
                cost=_cost([r], equivalent_delta),
                mechanism=r.mechanism,
                plan_json=json.dumps(r.plan),
                value_json="" if r.value is None else json.dumps(r.value),
                dataset_version=r.dataset_version or 0,
            )
            for r in job.releases
        ],
        error=pb.JobError(code=job.error_code or "", message=job.error_message or "")
        if job.error_code
        else None,
        printed=job.printed,
        created_at=_ts(job.created_at),
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
        script=job.script if with_script else "",
    )


def _registered(entry: DatasetEntry, truncation: Truncation) -> pb.DatasetInfo:
    """The answer to a registration: the dataset, and what registration dropped.

    Those counts are computed from the data: for the registering provider
    only, never in DescribeDataset or ListDatasets.
    """
    info = dataset_to_proto(entry)
    info.rows_dropped = truncation.rows_dropped
    info.persons_truncated = truncation.persons_truncated
    info.rows_cleaned = truncation.rows_cleaned
    return info


def _unit(schema: Schema) -> str:
    """Whom a dataset's guarantee protects (its bound on rows per person may change)."""
    identifier = schema.privacy_unit.identifier
    return "each row" if identifier is None else f"the persons of column {identifier!r}"


def dataset_to_proto(entry: DatasetEntry) -> pb.DatasetInfo:
    """Public metadata only: schema, owner, privacy unit. Never rows or counts."""
    schema = entry.schema
    columns = []
    for c in schema.columns:
        bounds = c.bounds
        columns.append(
            pb.Column(
                name=c.name,
                type=c.type,
                has_bounds=bounds is not None,
                lower=float(bounds[0]) if bounds else 0.0,
                upper=float(bounds[1]) if bounds else 0.0,
                categories=list(c.categories or ()),
                nullable=c.nullable,
                description=c.description,
                max_keys=c.max_keys or 0,
                max_groups_per_person=c.max_groups_per_person or 0,
            )
        )
    unit = schema.privacy_unit
    return pb.DatasetInfo(
        name=entry.name,
        description=schema.description,
        owner=entry.owner,
        columns=columns,
        privacy_unit=pb.PrivacyUnit(
            identifier=unit.identifier or "", max_rows_per_person=unit.max_rows_per_person
        ),
        max_rows=schema.max_rows,
        privacy_definition=schema.privacy_definition,
        equivalent_delta=schema.equivalent_delta if schema.zcdp else 0.0,
        version=entry.version,
    )


class JobServicer(pb_grpc.JobServiceServicer):  # type: ignore[misc]
    """Researchers submit and follow jobs; DPOs read them."""

    def __init__(self, app: Enclave) -> None:
        self._app = app

    def _owner_filter(self) -> str | None:
        caller = current_principal()
        return None if caller.role == Role.DPO else caller.name

    def _job(self, job: JobRecord, *, with_script: bool = False) -> pb.Job:
        return job_to_proto(job, self._app.equivalent_delta, with_script=with_script)

    def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.ServicerContext) -> pb.Job:
        caller = current_principal()
        if not request.dataset:
            raise InvalidArgument("dataset is required: the dataset the job runs against")
        if len(request.request_id) > 200:
            raise InvalidArgument("request_id must be at most 200 characters")
        job = self._app.jobs.submit(
            caller.name, request.dataset, request.script, request.request_id
        )
        if request.wait:
            # Answer a second before the caller's deadline at the latest.
            left = context.time_remaining()
            until = None if left is None else time.monotonic() + left - 1.0
            job = self._app.jobs.wait(
                job.id, principal=caller.name, active=context.is_active, until=until
            )
        return self._job(job)

    def EstimateCost(
        self, request: pb.EstimateCostRequest, context: grpc.ServicerContext
    ) -> pb.CostEstimate:
        caller = current_principal()
        if not request.dataset:
            raise InvalidArgument("dataset is required: the dataset the job runs against")
        # The preview's worker stops when the call ends (deadline, client gone).
        ended = threading.Event()
        context.add_callback(ended.set)
        estimate = self._app.jobs.estimate(caller.name, request.dataset, request.script, ended)
        return pb.CostEstimate(
            total=_cost(estimate.releases, self._app.equivalent_delta),
            releases=[
                pb.ReleaseEstimate(
                    index=r.index,
                    dataset=r.dataset,
                    cost=_cost([r], self._app.equivalent_delta),
                    mechanism=r.mechanism,
                    plan_json=json.dumps(r.plan),
                )
                for r in estimate.releases
            ],
            budgets=[budget_to_proto(b, self._app.equivalent_delta) for b in estimate.budgets],
            fits_budget=estimate.fits_budget,
        )

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.Job:
        job = self._app.jobs.get(request.job_id, principal=self._owner_filter())
        return self._job(job, with_script=True)

    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        size = request.page_size or 50
        if not 1 <= size <= 500:
            raise InvalidArgument("page_size must be between 1 and 500")
        found = self._app.jobs.list(
            self._owner_filter(), limit=size, before=request.page_token or None
        )
        token = found[-1].id if len(found) == size else ""
        return pb.ListJobsResponse(jobs=[self._job(j) for j in found], next_page_token=token)

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext) -> pb.Job:
        caller = current_principal()
        return self._job(self._app.jobs.cancel(request.job_id, principal=caller.name))

    def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Job]:
        for job in self._app.jobs.watch(
            request.job_id, principal=self._owner_filter(), active=context.is_active
        ):
            yield self._job(job)


class CatalogServicer(pb_grpc.CatalogServiceServicer):  # type: ignore[misc]
    """Public metadata for researchers; registration and grants for providers."""

    def __init__(self, app: Enclave) -> None:
        self._app = app

    def _visible(self, entry: DatasetEntry) -> bool:
        caller = current_principal()
        if caller.role in (Role.DPO, Role.ADMIN):
            return True
        if caller.role == Role.PROVIDER:
            return entry.owner == caller.name
        return self._app.ledger.has_grant(caller.name, entry.name)

    def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> pb.ListDatasetsResponse:
        entries = [e for e in self._app.catalog.list() if self._visible(e)]
        return pb.ListDatasetsResponse(datasets=[self._info(e) for e in entries])

    def _info(self, entry: DatasetEntry) -> pb.DatasetInfo:
        """What the caller may know of a dataset, budget included for a researcher."""
        info = dataset_to_proto(self._shown(entry))
        version = self._app.ledger.policy(entry.name)
        if version is not None:
            info.policy_toml = version.policy.to_toml()
        caller = current_principal()
        if caller.role == Role.RESEARCHER:
            for balance in self._app.ledger.balances(caller.name, dataset=entry.name):
                info.budget.CopyFrom(budget_to_proto(balance, self._app.equivalent_delta))
        else:  # its provider, DPOs and admins: the version history
            info.versions.extend(self._versions(entry.name))
        return info

    def _shown(self, entry: DatasetEntry) -> DatasetEntry:
        """A researcher sees the dataset through its policy: allowed columns, narrower bounds."""
        if current_principal().role != Role.RESEARCHER:
            return entry
        version = self._app.ledger.policy(entry.name)
        if version is None:
            return entry
        policy = version.policy
        handle = DatasetHandle(entry.name, entry.schema, entry.path)
        view = handle.restricted(policy.allowed_columns, policy.bounds)
        return dataclasses.replace(entry, schema=view.schema)

    def DescribeDataset(
        self, request: pb.DescribeDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DatasetInfo:
        entry = self._app.catalog.get(request.name)
        if entry is None or not self._visible(entry):
            # Same answer for "absent" and "not yours": names of others' datasets stay private.
            raise NotFound(f"no dataset {request.name!r} that you can see")
        return self._info(entry)

    def RegisterDataset(
        self, request: pb.RegisterDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DatasetInfo:
        caller = current_principal()
        fmt = request.format.lower()
        if fmt not in FORMATS:
            raise InvalidArgument(
                f"format must be one of {', '.join(FORMATS)}, got {request.format!r}"
            )
        upload: Path = copy_upload(request.data, self._app.data_dir / "uploads", fmt)
        try:
            entry, truncation = self._app.catalog.register(
                request.name,
                caller.name,
                request.schema_toml,
                upload,
                fmt,
                record=self._recorder(request.name, caller.name),
            )
        finally:
            upload.unlink(missing_ok=True)
        return _registered(entry, truncation)

    def UploadDataset(
        self, requests: Iterator[pb.UploadDatasetRequest], context: grpc.ServicerContext
    ) -> pb.DatasetInfo:
        caller = current_principal()
        first = next(requests, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("an upload starts with its header (name, schema, format)")
        header = first.header
        fmt = header.format.lower()
        if fmt not in FORMATS:
            raise InvalidArgument(
                f"format must be one of {', '.join(FORMATS)}, got {header.format!r}"
            )
        if header.size < 0:
            raise InvalidArgument("size must be the file's size in bytes, or 0")
        # What can be refused without the data is refused before receiving it.
        check_name(header.name)
        given = header.schema_toml.strip()
        cleaning = Cleaning(
            clamp_to_bounds=header.clamp_to_bounds,
            drop_invalid_rows=header.drop_invalid_rows,
            unknown_categories_to_other=header.unknown_categories_to_other,
        )
        if header.new_budget_period and not header.new_version:
            raise InvalidArgument(
                "new_budget_period applies to a new version of a registered dataset: set "
                "new_version too (enclave dataset upload NAME --new-version --new-budget-period)"
            )
        if cleaning and not (given or header.new_version):
            raise InvalidArgument(
                "cleaning options need a schema to clean against: send the schema, or choose "
                "them when you confirm the draft (ConfirmDataset)"
            )
        if header.new_version:
            current = self._owned_for_version(header.name)
            replaces = header.expected_version or current.version
            if replaces != current.version:
                raise VersionConflict(
                    f"dataset {header.name!r} is at version {current.version}, not "
                    f"{header.expected_version} as this upload expected: nothing was sent"
                )
            schema = self._next_schema(current, given)
        else:
            if self._app.catalog.get(header.name) is not None:
                raise AlreadyExists(
                    f"dataset {header.name!r} is already registered; to replace its data, "
                    "upload a new version (new_version, or --new-version on the command line)"
                )
            if given:
                Schema.from_toml(header.schema_toml)
        trailer: list[pb.UploadTrailer] = []

        def chunks() -> Iterator[bytes]:
            for part in requests:
                kind = part.WhichOneof("part")
                if kind == "chunk":
                    if trailer:
                        raise InvalidArgument("a chunk came after the upload's trailer")
                    yield part.chunk
                elif kind == "trailer":
                    trailer.append(part.trailer)
                else:
                    raise InvalidArgument("an upload has one header, first")

        upload, digest = receive_upload(chunks(), self._app.data_dir / "uploads", fmt, header.size)
        try:
            if not trailer:
                raise InvalidArgument(
                    "the upload ended before its trailer (the file's SHA-256): it was "
                    "interrupted; nothing was registered, upload again"
                )
            if trailer[0].sha256.lower() != digest:
                raise UploadCorrupt(
                    "the file's SHA-256 does not match what arrived: it was corrupted or "
                    "changed during the upload; nothing was registered, upload again"
                )
            if header.new_version:
                last = self._app.catalog.versions(header.name)[-1]
                if last.sha256 == digest:
                    raise AlreadyExists(
                        f"this file is already version {last.version} of {header.name!r} "
                        f"(uploaded by {last.uploaded_by} at {last.uploaded_at:%Y-%m-%d %H:%M} "
                        "UTC): nothing was changed"
                    )
                entry, truncation = self._app.catalog.add_version(
                    header.name,
                    caller.name,
                    upload,
                    fmt,
                    schema,
                    cleaning or None,
                    replaces=replaces,
                    new_period=header.new_budget_period,
                    record=self._recorder(
                        header.name, caller.name, new_period=header.new_budget_period
                    ),
                    sha256=digest,
                )
            elif not given:
                return self._draft(header.name, caller.name, upload, fmt)
            else:
                entry, truncation = self._app.catalog.register(
                    header.name,
                    caller.name,
                    header.schema_toml,
                    upload,
                    fmt,
                    cleaning or None,
                    sha256=digest,
                    record=self._recorder(header.name, caller.name),
                )
        finally:
            upload.unlink(missing_ok=True)
        info = _registered(entry, truncation)
        info.versions.extend(self._versions(entry.name))
        return info

    def _recorder(
        self, name: str, by: str, *, new_period: bool = False
    ) -> Callable[[Any, int], None]:
        """What chains a dataset version in the ledger, in the catalog's transaction."""

        def record(conn: Any, version: int) -> None:
            self._app.ledger.record_version(conn, name, version, new_period=new_period, by=by)

        return record

    def _owned_for_version(self, name: str) -> DatasetEntry:
        """The caller's registered dataset that a new version would replace."""
        caller = current_principal().name
        entry = self._app.catalog.get(name)
        if entry is None and self._app.drafts.owner(name) == caller:
            raise NotFound(
                f"{name!r} is still a draft, with no version to replace: confirm it first "
                f"(enclave dataset confirm {name} --schema FILE)"
            )
        if entry is None or entry.owner != caller:
            raise NotFound(f"you own no dataset called {name!r}")
        return entry

    def _next_schema(self, entry: DatasetEntry, schema_toml: str) -> Schema:
        """The schema of a new version: the current one, or a new one that keeps its meaning.

        Budgets carry over between versions, so what a unit of budget means must
        not change: whom the guarantee protects (each row, or the persons of one
        column) and the privacy definition stay. A person's row bound may change:
        each release's noise is calibrated to the schema it runs on. The policy
        in force must still fit the new columns.

        Raises:
            SchemaError: a new schema that changes them or does not fit the policy.
        """
        if not schema_toml:
            return entry.schema
        schema = Schema.from_toml(schema_toml)
        old = entry.schema
        for what, before, after in (
            ("privacy unit", _unit(old), _unit(schema)),
            ("privacy definition", old.privacy_definition, schema.privacy_definition),
            ("equivalent delta", old.equivalent_delta, schema.equivalent_delta),
        ):
            if before != after:
                raise SchemaError(
                    f"a new version keeps the dataset's {what} ({before} in the registered "
                    f"schema, {after} in this one): its budgets and ledger are counted in it. "
                    "To change it, register the data under a new name"
                )
        policy = self._app.ledger.policy(entry.name)
        if policy is not None:
            try:
                DatasetHandle(entry.name, schema, entry.path).restricted(
                    policy.policy.allowed_columns, policy.policy.bounds
                )
            except SchemaError as err:
                raise SchemaError(
                    f"the new schema does not fit the policy in force: {err}. Change the policy "
                    "first (enclave policy set), then upload the version"
                ) from None
        return schema

    def _versions(self, name: str) -> list[pb.DatasetVersion]:
        return [
            pb.DatasetVersion(
                version=v.version,
                uploaded_by=v.uploaded_by,
                uploaded_at=_ts(v.uploaded_at),
                new_budget_period=v.new_period,
                superseded_at=_ts(v.superseded_at),
                stored=v.stored,
            )
            for v in self._app.catalog.versions(name)
        ]

    def _draft(self, name: str, owner: str, upload: Path, fmt: str) -> pb.DatasetInfo:
        """Keep an upload sent without a schema as a draft; propose a schema."""
        check_name(name)
        if self._app.catalog.get(name) is not None:
            raise AlreadyExists(f"dataset {name!r} is already registered")
        holder = self._app.drafts.owner(name)
        if holder is not None and holder != owner:
            raise AlreadyExists(f"dataset name {name!r} is taken by another provider's draft")
        proposal = propose_from(read_batches(upload, fmt))
        self._app.drafts.save(name, owner, upload, fmt, proposal)
        return pb.DatasetInfo(name=name, owner=owner, draft=True, proposed_schema_toml=proposal)

    def GetQualityReport(
        self, request: pb.GetQualityReportRequest, context: grpc.ServicerContext
    ) -> pb.QualityReport:
        caller = current_principal()
        check_name(request.name)
        schema = Schema.from_toml(request.schema_toml) if request.schema_toml.strip() else None
        entry = self._app.catalog.get(request.name)
        if entry is not None:
            if entry.owner != caller.name:
                raise NotFound(f"you own no dataset or draft called {request.name!r}")
            path, fmt, draft = entry.path, "parquet", False
            schema = schema or entry.schema
        else:
            path, fmt, _proposal = self._app.drafts.get(request.name, caller.name)
            draft = True
        partitions = min(path.stat().st_size // PERSON_PARTITION_BYTES, MAX_PERSON_PARTITIONS)
        spill = self._app.data_dir / "uploads"
        spill.mkdir(parents=True, exist_ok=True)
        report = quality_report_from(read_batches(path, fmt), schema, spill, partitions)
        return pb.QualityReport(
            name=request.name,
            draft=draft,
            rows=report.rows,
            columns=[pb.ColumnQuality(**dataclasses.asdict(c)) for c in report.columns],
            missing_columns=report.missing_columns,
            undeclared_columns=report.undeclared_columns,
            persons_over_limit=report.persons_over_limit,
            rows_over_limit=report.rows_over_limit,
            text=render_quality(report),
        )

    def DeleteDataset(
        self, request: pb.DeleteDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DeleteDatasetResponse:
        caller = current_principal()
        check_name(request.name)
        entry = self._app.catalog.get(request.name)
        if entry is not None and entry.owner == caller.name:
            self._app.catalog.delete(request.name)
        elif self._app.drafts.owner(request.name) == caller.name:
            self._app.drafts.drop(request.name)
        else:
            raise NotFound(f"you own no dataset or draft called {request.name!r}")
        return pb.DeleteDatasetResponse()

    def ConfirmDataset(
        self, request: pb.ConfirmDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DatasetInfo:
        caller = current_principal()
        check_name(request.name)
        path, fmt, _proposal = self._app.drafts.get(request.name, caller.name)
        cleaning = Cleaning(
            clamp_to_bounds=request.clamp_to_bounds,
            drop_invalid_rows=request.drop_invalid_rows,
            unknown_categories_to_other=request.unknown_categories_to_other,
        )
        entry, truncation = self._app.catalog.register(
            request.name,
            caller.name,
            request.schema_toml,
            path,
            fmt,
            cleaning,
            record=self._recorder(request.name, caller.name),
        )
        self._app.drafts.drop(request.name)
        return _registered(entry, truncation)

    def _owned(self, dataset: str) -> DatasetEntry:
        entry = self._app.catalog.get(dataset)
        if entry is None or entry.owner != current_principal().name:
            raise NotFound(f"you own no dataset called {dataset!r}")
        return entry

    def RevokeAccess(
        self, request: pb.RevokeAccessRequest, context: grpc.ServicerContext
    ) -> pb.RevokeAccessResponse:
        self._owned(request.dataset)
        self._app.ledger.revoke(request.dataset, request.principal)
        return pb.RevokeAccessResponse()

    def GrantAccess(
        self, request: pb.GrantAccessRequest, context: grpc.ServicerContext
    ) -> pb.Grant:
        caller = current_principal()
        entry = self._owned(request.dataset)
        grantee = self._app.principals.get(request.principal)
        if grantee is None:
            raise NotFound(f"no principal called {request.principal!r}")
        if grantee.role != Role.RESEARCHER:
            raise InvalidArgument(
                f"{grantee.name} is a {grantee.role.value}; only researchers receive grants"
            )
        # Without a cap, the policy's per-researcher cap is the grant's (if it sets one).
        version = self._app.ledger.policy(request.dataset)
        policy = version.policy if version is not None else Policy()
        if entry.schema.zcdp:
            if request.epsilon_cap or not (request.rho_cap or policy.researcher_cap_rho):
                raise InvalidArgument(
                    f"dataset {request.dataset!r} accounts privacy in rho (zCDP): grant a "
                    "rho cap (--rho), not an epsilon cap"
                )
        elif request.rho_cap or not (request.epsilon_cap or policy.researcher_cap_epsilon):
            raise InvalidArgument(
                f"dataset {request.dataset!r} accounts privacy in epsilon (pure DP): grant "
                "an epsilon cap (--epsilon), not a rho cap"
            )
        balance = self._app.ledger.grant(
            request.dataset,
            request.principal,
            request.epsilon_cap or None,
            delta_cap=request.delta_cap or None,
            rho_cap=request.rho_cap or None,
            granted_by=caller.name,
            expires_at=(
                request.expires_at.ToDatetime(tzinfo=dt.UTC)
                if request.HasField("expires_at")
                else None
            ),
        )
        return pb.Grant(
            dataset=balance.dataset,
            principal=balance.principal,
            epsilon_cap=str(balance.epsilon_cap),
            delta_cap=str(balance.delta_cap),
            rho_cap=str(balance.rho_cap),
            expires_at=_ts(balance.expires_at),
        )

    def SetPolicy(
        self, request: pb.SetPolicyRequest, context: grpc.ServicerContext
    ) -> pb.DatasetPolicy:
        caller = current_principal()
        entry = self._owned(request.dataset)
        policy = Policy.from_toml(request.policy_toml)
        wrong = "epsilon" if entry.schema.zcdp else "rho"
        if any(key.endswith(f"_{wrong}") for key in policy.to_dict()):
            right = "rho" if entry.schema.zcdp else "epsilon"
            raise InvalidArgument(
                f"dataset {request.dataset!r} accounts privacy in {right}: its policy sets "
                f"*_{right} limits, not *_{wrong}"
            )
        # Column names and bounds must fit the schema: SchemaError says which do not.
        DatasetHandle(entry.name, entry.schema, entry.path).restricted(
            policy.allowed_columns, policy.bounds
        )
        self._app.ledger.set_policy(request.dataset, policy, set_by=caller.name)
        return self._policy(request.dataset, history=False)

    def GetPolicy(
        self, request: pb.GetPolicyRequest, context: grpc.ServicerContext
    ) -> pb.DatasetPolicy:
        entry = self._app.catalog.get(request.dataset)
        if entry is None or not self._visible(entry):
            raise NotFound(f"no dataset {request.dataset!r} that you can see")
        return self._policy(request.dataset, history=request.history)

    def _policy(self, dataset: str, *, history: bool) -> pb.DatasetPolicy:
        ledger = self._app.ledger
        versions = ledger.policy_history(dataset)
        out = pb.DatasetPolicy(
            dataset=dataset,
            versions=[
                pb.PolicyVersion(
                    version=v.version,
                    policy_toml=v.policy.to_toml(),
                    set_by=v.set_by,
                    set_at=_ts(v.set_at),
                )
                for v in (versions if history else versions[:1])
            ],
        )
        if current_principal().role in (Role.PROVIDER, Role.DPO):
            # What others spent is not a researcher's business.
            out.dataset_spent.CopyFrom(self._dataset_spent(dataset))
        return out

    def _dataset_spent(self, dataset: str) -> pb.Cost:
        epsilon, rho, delta = self._app.ledger.dataset_spent(dataset)
        return pb.Cost(epsilon=amount(epsilon), rho=amount(rho), delta=amount(delta))

    def GetDatasetUsage(
        self, request: pb.GetDatasetUsageRequest, context: grpc.ServicerContext
    ) -> pb.DatasetUsage:
        entry = self._app.catalog.get(request.dataset)
        caller = current_principal()
        if entry is None or (caller.role == Role.PROVIDER and entry.owner != caller.name):
            raise NotFound(f"you own no dataset called {request.dataset!r}")
        version = self._app.ledger.policy(entry.name)
        jobs, releases = self._app.job_store.usage(entry.name)
        return pb.DatasetUsage(
            dataset=entry.name,
            spent=self._dataset_spent(entry.name),
            policy_toml="" if version is None else version.policy.to_toml(),
            jobs=jobs,
            releases=releases,
            grants=[
                budget_to_proto(b, self._app.equivalent_delta)
                for b in self._app.ledger.all_balances(dataset=entry.name)
            ],
            version=entry.version,
            versions=self._versions(entry.name),
        )


class BudgetServicer(pb_grpc.BudgetServiceServicer):  # type: ignore[misc]
    """A researcher's own budgets."""

    def __init__(self, app: Enclave) -> None:
        self._app = app

    def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.ServicerContext
    ) -> pb.GetBudgetResponse:
        caller = current_principal()
        balances = self._app.ledger.balances(caller.name, dataset=request.dataset or None)
        if request.dataset and not balances:
            raise NotFound(f"you have no grant on dataset {request.dataset!r}")
        return pb.GetBudgetResponse(
            budgets=[budget_to_proto(b, self._app.equivalent_delta) for b in balances]
        )


class AdminServicer(pb_grpc.AdminServiceServicer):  # type: ignore[misc]
    """Principals and tokens."""

    def __init__(self, app: Enclave) -> None:
        self._app = app

    def CreatePrincipal(
        self, request: pb.CreatePrincipalRequest, context: grpc.ServicerContext
    ) -> pb.CreatePrincipalResponse:
        role = _ROLES_BACK.get(request.role)
        if role is None:
            raise InvalidArgument("role is required (researcher, provider, dpo or admin)")
        principal, token = self._app.principals.create(
            request.name, role, created_by=current_principal().name
        )
        return pb.CreatePrincipalResponse(principal=principal_to_proto(principal), token=token)

    def ListPrincipals(
        self, request: pb.ListPrincipalsRequest, context: grpc.ServicerContext
    ) -> pb.ListPrincipalsResponse:
        return pb.ListPrincipalsResponse(
            principals=[principal_to_proto(p) for p in self._app.principals.list()]
        )


class AuditServicer(pb_grpc.AuditServiceServicer):  # type: ignore[misc]
    """The DPO's read-only audit: the chain's integrity, every budget, every debit."""

    def __init__(self, app: Enclave) -> None:
        self._app = app

    def VerifyLedger(
        self, request: pb.VerifyLedgerRequest, context: grpc.ServicerContext
    ) -> pb.LedgerVerification:
        try:
            entries, head = self._app.ledger.check(expected_head=request.expected_head or None)
        except LedgerCorrupt as err:
            return pb.LedgerVerification(ok=False, bad_entry=err.seq, problem=err.reason)
        return pb.LedgerVerification(ok=True, entries=entries, head_hash=head)

    def GetLedgerHead(
        self, request: pb.GetLedgerHeadRequest, context: grpc.ServicerContext
    ) -> pb.LedgerHead:
        seq, digest = self._app.ledger.head()
        return pb.LedgerHead(seq=seq, hash=digest)

    def ListBudgets(
        self, request: pb.ListBudgetsRequest, context: grpc.ServicerContext
    ) -> pb.ListBudgetsResponse:
        caller = current_principal()
        balances = self._app.ledger.all_balances(dataset=request.dataset or None)
        if caller.role == Role.PROVIDER:
            # A provider sees the researchers' budgets on its own datasets only.
            owned = {e.name for e in self._app.catalog.list() if e.owner == caller.name}
            if request.dataset and request.dataset not in owned:
                raise PermissionDenied(
                    f"dataset {request.dataset!r} is not one you registered; providers see "
                    "the budgets of their own datasets"
                )
            balances = [b for b in balances if b.dataset in owned]
        if request.principal:
            balances = [b for b in balances if b.principal == request.principal]
        return pb.ListBudgetsResponse(
            budgets=[budget_to_proto(b, self._app.equivalent_delta) for b in balances]
        )

    def ListLedger(
        self, request: pb.ListLedgerRequest, context: grpc.ServicerContext
    ) -> pb.ListLedgerResponse:
        size = request.page_size or 100
        if not 1 <= size <= 1000:
            raise InvalidArgument("page_size must be between 1 and 1000")
        after = 0
        if request.page_token:
            if not request.page_token.isdigit():
                raise InvalidArgument("page_token is not one this server gave out")
            after = int(request.page_token)
        found = self._app.ledger.entries(
            principal=request.principal or None,
            dataset=request.dataset or None,
            since=request.since.ToDatetime(dt.UTC) if request.HasField("since") else None,
            until=request.until.ToDatetime(dt.UTC) if request.HasField("until") else None,
            after_seq=after,
            limit=size,
        )
        return pb.ListLedgerResponse(
            entries=[entry_to_proto(e, self._app.equivalent_delta) for e in found],
            next_page_token=str(found[-1].seq) if len(found) == size else "",
        )


def budget_to_proto(b: Balance, equivalent_delta: EquivalentDelta) -> pb.Budget:
    """Wire form of a balance (exact decimal strings), with its (ε, δ) equivalent."""
    conversion = equivalent_delta(b.dataset)
    eps_eq, delta_eq = b.epsilon_remaining, b.delta_remaining
    if conversion is not None:
        eps_eq = _decimal(zcdp_epsilon(b.rho_remaining, conversion))
        if b.rho_remaining:
            delta_eq += _decimal(conversion)
    return pb.Budget(
        dataset=b.dataset,
        epsilon_cap=str(b.epsilon_cap),
        epsilon_spent=str(b.epsilon_spent),
        epsilon_remaining=str(b.epsilon_remaining),
        delta_cap=str(b.delta_cap),
        delta_spent=str(b.delta_spent),
        delta_remaining=str(b.delta_remaining),
        rho_cap=str(b.rho_cap),
        rho_spent=str(b.rho_spent),
        rho_remaining=str(b.rho_remaining),
        privacy_definition="pure_dp" if conversion is None else "zcdp",
        epsilon_equivalent_remaining=amount(eps_eq),
        delta_equivalent_remaining=amount(delta_eq),
        expires_at=_ts(b.expires_at),
        refresh=b.refresh,
        next_refresh=_ts(b.next_refresh),
        lifetime_epsilon_cap=_opt(b.lifetime_epsilon_cap),
        lifetime_epsilon_spent=str(b.lifetime_epsilon_spent),
        lifetime_rho_cap=_opt(b.lifetime_rho_cap),
        lifetime_rho_spent=str(b.lifetime_rho_spent),
        lifetime_delta_cap=_opt(b.lifetime_delta_cap),
        lifetime_delta_spent=str(b.lifetime_delta_spent),
        principal=b.principal,
    )


def _opt(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def entry_to_proto(e: LedgerEntry, equivalent_delta: EquivalentDelta) -> pb.LedgerEntry:
    """Wire form of a ledger entry: what its hash covers, and the hashes."""
    release = ReleaseRecord(e.release_index, e.dataset, None, e.epsilon, "", None, e.delta, e.rho)
    return pb.LedgerEntry(
        seq=e.seq,
        kind=e.kind,
        principal=e.principal,
        dataset=e.dataset,
        job_id=e.job_id,
        release_index=e.release_index,
        cost=_cost([release], equivalent_delta),
        created_at=_ts(e.created_at),
        prev_hash=e.prev_hash,
        hash=e.hash,
        dataset_version=e.dataset_version or 0,
    )


def principal_to_proto(p: Any) -> pb.Principal:
    """Wire form of a principal (never its token)."""
    return pb.Principal(name=p.name, role=_ROLES[p.role], created_at=_ts(p.created_at))


__all__ = [
    "AdminServicer",
    "AuditServicer",
    "BudgetServicer",
    "CatalogServicer",
    "JobServicer",
    "dataset_to_proto",
    "job_to_proto",
]
