"""The Python client: what researchers, providers, DPOs and admins use.

Example::

    from enclave import Client

    with Client() as client:            # ENCLAVE_ADDRESS, ENCLAVE_TOKEN
        job = client.run(script, dataset="tourism_stays")
        print(job.result["adults"]["value"], job.cost_epsilon)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._address import is_loopback, split_listen
from ._errors import InvalidArgument, JobFailed
from ._format import amount
from .v1 import enclave_pb2 as pb
from .v1 import enclave_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
_STATE_NAMES = {v: k.removeprefix("JOB_STATE_") for k, v in pb.JobState.items()}
_ROLE_VALUES = {
    "researcher": pb.ROLE_RESEARCHER,
    "provider": pb.ROLE_PROVIDER,
    "dpo": pb.ROLE_DPO,
    "admin": pb.ROLE_ADMIN,
}


@dataclass(frozen=True)
class Cost:
    """A privacy cost in its dataset's measure, and the same as (ε, δ)-DP.

    ``epsilon`` is spent on pure-DP datasets, ``rho`` on zCDP datasets and
    ``delta`` on either when private group keys are released; all exact. The
    equivalents are a conversion, for comparison across definitions.
    """

    epsilon: Decimal = Decimal(0)
    delta: Decimal = Decimal(0)
    rho: Decimal = Decimal(0)
    epsilon_equivalent: Decimal = Decimal(0)
    delta_equivalent: Decimal = Decimal(0)

    @classmethod
    def from_proto(cls, msg: pb.Cost) -> Cost:
        """Parse the wire form (absent fields are 0)."""
        return cls(
            *(
                Decimal(getattr(msg, name) or "0")
                for name in ("epsilon", "delta", "rho", "epsilon_equivalent", "delta_equivalent")
            )
        )

    def to_json(self) -> dict[str, str]:
        """JSON form: exact decimal strings; ``rho`` only when some was spent."""
        out = {"epsilon": str(self.epsilon), "delta": str(self.delta)}
        if self.rho:
            out["rho"] = str(self.rho)
            out["epsilon_equivalent"] = str(self.epsilon_equivalent)
            out["delta_equivalent"] = str(self.delta_equivalent)
        return out

    def __str__(self) -> str:
        parts = []
        if self.epsilon or not self.rho:
            parts.append(f"epsilon={amount(self.epsilon)}")
        if self.rho:
            parts.append(f"rho={amount(self.rho)}")
        if self.delta:
            parts.append(f"delta={amount(self.delta)}")
        text = ", ".join(parts)
        if self.rho:
            eq = f"epsilon={_short(self.epsilon_equivalent)}, delta={amount(self.delta_equivalent)}"
            text += f" (as ({eq}))"
        return text


def _short(x: Decimal) -> str:
    return f"{float(x):.4g}"


@dataclass(frozen=True)
class Release:
    """One release of a job as the researcher sees it."""

    index: int
    dataset: str
    epsilon: Decimal
    mechanism: str
    value: Any
    delta: Decimal = Decimal(0)
    cost: Cost = field(default_factory=Cost)
    #: The plan released, as the host checked and priced it (public: no data).
    plan: Any = None
    #: The dataset version it was computed on (None: not recorded, or a preview).
    dataset_version: int | None = None

    @property
    def rho(self) -> Decimal:
        """ρ charged (zCDP datasets)."""
        return self.cost.rho

    @classmethod
    def from_proto(cls, msg: pb.ReleaseRecord | pb.ReleaseEstimate) -> Release:
        """Parse a job's release, or a preview's (which has no value)."""
        value_json = getattr(msg, "value_json", "")
        return cls(
            msg.index,
            msg.dataset,
            Decimal(msg.cost.epsilon or "0"),
            msg.mechanism,
            json.loads(value_json) if value_json else None,
            Decimal(msg.cost.delta or "0"),
            Cost.from_proto(msg.cost),
            json.loads(msg.plan_json) if msg.plan_json else None,
            getattr(msg, "dataset_version", 0) or None,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json`` output."""
        return {
            "index": self.index,
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            **self.cost.to_json(),
            "mechanism": self.mechanism,
            "value": self.value,
        }


@dataclass(frozen=True)
class Job:
    """A job and, once it succeeded, its result."""

    job_id: str
    state: str
    dataset: str
    request_id: str
    result: Any
    cost_epsilon: Decimal
    cost_delta: Decimal
    releases: tuple[Release, ...]
    error_code: str
    error_message: str
    printed: str
    script: str = field(repr=False, default="")
    cost: Cost = field(default_factory=Cost)
    principal: str = ""
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def cost_rho(self) -> Decimal:
        """Total ρ charged on zCDP datasets."""
        return self.cost.rho

    @property
    def final(self) -> bool:
        """Whether the job can no longer change."""
        return self.state in ("SUCCEEDED", "FAILED", "CANCELLED")

    @classmethod
    def from_proto(cls, msg: pb.Job) -> Job:
        """Parse the wire form."""
        return cls(
            job_id=msg.job_id,
            state=_STATE_NAMES.get(msg.state, "UNSPECIFIED"),
            dataset=msg.dataset,
            request_id=msg.request_id,
            result=json.loads(msg.result_json) if msg.result_json else None,
            cost_epsilon=Decimal(msg.cost.epsilon or "0"),
            cost_delta=Decimal(msg.cost.delta or "0"),
            releases=tuple(Release.from_proto(r) for r in msg.releases),
            error_code=msg.error.code,
            error_message=msg.error.message,
            printed=msg.printed,
            script=msg.script,
            cost=Cost.from_proto(msg.cost),
            principal=msg.principal,
            created_at=_when(msg, "created_at"),
            started_at=_when(msg, "started_at"),
            finished_at=_when(msg, "finished_at"),
        )

    def audit_json(self) -> dict[str, Any]:
        """The full record a DPO audits: ``to_json`` plus who, when and each plan."""
        out = self.to_json()
        out["principal"] = self.principal
        out["dataset"] = self.dataset
        out["request_id"] = self.request_id
        for name in ("created_at", "started_at", "finished_at"):
            when = getattr(self, name)
            out[name] = None if when is None else when.isoformat()
        for record, release in zip(out["releases"], self.releases, strict=True):
            record["plan"] = release.plan
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``enclave submit --json`` object."""
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "status": self.state,
            "result": self.result,
            "cost": self.cost.to_json(),
            "releases": [r.to_json() for r in self.releases],
        }
        if self.printed:
            out["printed"] = self.printed
        if self.script:
            out["script"] = self.script
        if self.error_code:
            out["error"] = {"code": self.error_code, "message": self.error_message}
        return out


def _when(msg: Any, name: str) -> dt.datetime | None:
    return getattr(msg, name).ToDatetime(tzinfo=dt.UTC) if msg.HasField(name) else None


@dataclass(frozen=True)
class Estimate:
    """A cost preview: per-release costs, their total, and whether the budget covers it."""

    epsilon: Decimal
    delta: Decimal
    releases: tuple[Release, ...]
    budgets: tuple[Budget, ...]
    fits_budget: bool
    cost: Cost = field(default_factory=Cost)

    @property
    def rho(self) -> Decimal:
        """Total ρ the script would spend on zCDP datasets."""
        return self.cost.rho

    @classmethod
    def from_proto(cls, msg: pb.CostEstimate) -> Estimate:
        """Parse the wire form."""
        return cls(
            epsilon=Decimal(msg.total.epsilon or "0"),
            delta=Decimal(msg.total.delta or "0"),
            releases=tuple(Release.from_proto(r) for r in msg.releases),
            budgets=tuple(Budget.from_proto(b) for b in msg.budgets),
            fits_budget=msg.fits_budget,
            cost=Cost.from_proto(msg.total),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``enclave submit --dry-run --json`` object."""
        return {
            "dry_run": True,
            "cost": self.cost.to_json(),
            "releases": [r.to_json() for r in self.releases],
            "budgets": [b.to_json() for b in self.budgets],
            "fits_budget": self.fits_budget,
        }


@dataclass(frozen=True)
class Budget:
    """Remaining privacy budget on one dataset."""

    dataset: str
    epsilon_cap: Decimal
    epsilon_spent: Decimal
    epsilon_remaining: Decimal
    delta_cap: Decimal = Decimal(0)
    delta_spent: Decimal = Decimal(0)
    delta_remaining: Decimal = Decimal(0)
    #: zCDP datasets keep their budget in ρ (their ε fields are 0).
    rho_cap: Decimal = Decimal(0)
    rho_spent: Decimal = Decimal(0)
    rho_remaining: Decimal = Decimal(0)
    privacy_definition: str = "pure_dp"
    #: What remains, as (ε, δ)-DP (a conversion of ρ on zCDP datasets).
    epsilon_equivalent_remaining: Decimal = Decimal(0)
    delta_equivalent_remaining: Decimal = Decimal(0)
    #: When the grant stops allowing releases (None: never).
    expires_at: dt.datetime | None = None
    #: "none", "daily", "weekly" or "monthly": caps and spending are per period then.
    refresh: str = "none"
    #: When this period's budget starts again (None: never).
    next_refresh: dt.datetime | None = None
    #: Over all periods; a cap of None: the policy sets none.
    lifetime_epsilon_cap: Decimal | None = None
    lifetime_epsilon_spent: Decimal = Decimal(0)
    lifetime_rho_cap: Decimal | None = None
    lifetime_rho_spent: Decimal = Decimal(0)
    lifetime_delta_cap: Decimal | None = None
    lifetime_delta_spent: Decimal = Decimal(0)
    #: Whose budget (the DPO's listing holds everyone's).
    principal: str = ""

    @property
    def lifetime_caps(self) -> dict[str, tuple[Decimal, Decimal]]:
        """The measures with a lifetime cap: {measure: (cap, spent)}."""
        return {
            measure: (cap, spent)
            for measure, cap, spent in (
                ("epsilon", self.lifetime_epsilon_cap, self.lifetime_epsilon_spent),
                ("rho", self.lifetime_rho_cap, self.lifetime_rho_spent),
                ("delta", self.lifetime_delta_cap, self.lifetime_delta_spent),
            )
            if cap is not None
        }

    @classmethod
    def from_proto(cls, msg: pb.Budget) -> Budget:
        """Parse the wire form."""

        def cap(text: str) -> Decimal | None:
            return Decimal(text) if text else None

        return cls(
            msg.dataset,
            Decimal(msg.epsilon_cap),
            Decimal(msg.epsilon_spent),
            Decimal(msg.epsilon_remaining),
            Decimal(msg.delta_cap or "0"),
            Decimal(msg.delta_spent or "0"),
            Decimal(msg.delta_remaining or "0"),
            Decimal(msg.rho_cap or "0"),
            Decimal(msg.rho_spent or "0"),
            Decimal(msg.rho_remaining or "0"),
            msg.privacy_definition or "pure_dp",
            Decimal(msg.epsilon_equivalent_remaining or msg.epsilon_remaining),
            Decimal(msg.delta_equivalent_remaining or msg.delta_remaining or "0"),
            msg.expires_at.ToDatetime(tzinfo=dt.UTC) if msg.HasField("expires_at") else None,
            msg.refresh or "none",
            msg.next_refresh.ToDatetime(tzinfo=dt.UTC) if msg.HasField("next_refresh") else None,
            cap(msg.lifetime_epsilon_cap),
            Decimal(msg.lifetime_epsilon_spent or "0"),
            cap(msg.lifetime_rho_cap),
            Decimal(msg.lifetime_rho_spent or "0"),
            cap(msg.lifetime_delta_cap),
            Decimal(msg.lifetime_delta_spent or "0"),
            msg.principal,
        )

    def to_json(self) -> dict[str, str]:
        """The ``enclave budget --json`` object."""
        out = {
            "dataset": self.dataset,
            "epsilon_cap": str(self.epsilon_cap),
            "epsilon_spent": str(self.epsilon_spent),
            "epsilon_remaining": str(self.epsilon_remaining),
            "delta_cap": str(self.delta_cap),
            "delta_spent": str(self.delta_spent),
            "delta_remaining": str(self.delta_remaining),
        }
        if self.principal:
            out = {"principal": self.principal} | out
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at.isoformat()
        if self.refresh != "none":
            out["refresh"] = self.refresh
        if self.next_refresh is not None:
            out["next_refresh"] = self.next_refresh.isoformat()
        for measure, (cap, spent) in self.lifetime_caps.items():
            out[f"lifetime_{measure}_cap"] = str(cap)
            out[f"lifetime_{measure}_spent"] = str(spent)
        if self.privacy_definition == "zcdp":
            out |= {
                "privacy_definition": self.privacy_definition,
                "rho_cap": str(self.rho_cap),
                "rho_spent": str(self.rho_spent),
                "rho_remaining": str(self.rho_remaining),
                "epsilon_equivalent_remaining": str(self.epsilon_equivalent_remaining),
                "delta_equivalent_remaining": str(self.delta_equivalent_remaining),
            }
        return out


@dataclass(frozen=True)
class LedgerRecord:
    """One ledger entry as the DPO's audit shows it."""

    seq: int
    kind: str
    principal: str
    dataset: str
    job_id: str
    release_index: int
    cost: Cost
    created_at: dt.datetime
    prev_hash: str
    hash: str
    #: The dataset version (None: not recorded, for entries from before versions).
    dataset_version: int | None = None

    @classmethod
    def from_proto(cls, msg: pb.LedgerEntry) -> LedgerRecord:
        """Parse the wire form."""
        return cls(
            msg.seq,
            msg.kind,
            msg.principal,
            msg.dataset,
            msg.job_id,
            msg.release_index,
            Cost.from_proto(msg.cost),
            msg.created_at.ToDatetime(tzinfo=dt.UTC),
            msg.prev_hash,
            msg.hash,
            msg.dataset_version or None,
        )

    def to_json(self) -> dict[str, Any]:
        """A flat object (one CSV row): exact decimal strings, ISO times."""
        return {
            "seq": self.seq,
            "created_at": self.created_at.isoformat(),
            "kind": self.kind,
            "principal": self.principal,
            "dataset": self.dataset,
            "job_id": self.job_id,
            "release_index": self.release_index,
            "epsilon": str(self.cost.epsilon),
            "delta": str(self.cost.delta),
            "rho": str(self.cost.rho),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "dataset_version": self.dataset_version,
        }


def _text(schema: Path | str | None) -> str:
    """A schema given as a path or as TOML text ("": none)."""
    if schema is None:
        return ""
    return Path(schema).read_text() if isinstance(schema, Path) else schema


def _pem(path: str | Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise InvalidArgument(f"cannot read the {what} {path}: {err.strerror}") from None


#: File suffix -> upload format.
UPLOAD_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}


class Client:
    """A connection to an Enclave server.

    TLS is used as soon as it is asked for (``tls=True``, or any of the TLS
    files, or their ``$ENCLAVE_TLS*`` variables); without it the client speaks
    plaintext, to a loopback address only, so that a token never crosses a
    network in clear.

    Args:
        address: HOST:PORT; default ``$ENCLAVE_ADDRESS`` or 127.0.0.1:50051.
        token: bearer token; default ``$ENCLAVE_TOKEN``.
        timeout: deadline in seconds for unary calls.
        tls: use TLS with the system's trusted CAs (``$ENCLAVE_TLS=1``).
        tls_ca: PEM file of the CA that signed the server's certificate
            (``$ENCLAVE_TLS_CA``); implies ``tls``.
        tls_cert: PEM certificate for mutual TLS (``$ENCLAVE_TLS_CERT``).
        tls_key: its PEM private key (``$ENCLAVE_TLS_KEY``).
    """

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        tls: bool | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ) -> None:
        env = os.environ
        self.address = address or env.get("ENCLAVE_ADDRESS") or DEFAULT_ADDRESS
        token = token or env.get("ENCLAVE_TOKEN")
        tls_ca = tls_ca or env.get("ENCLAVE_TLS_CA") or None
        tls_cert = tls_cert or env.get("ENCLAVE_TLS_CERT") or None
        tls_key = tls_key or env.get("ENCLAVE_TLS_KEY") or None
        if tls is None:
            tls = env.get("ENCLAVE_TLS", "") not in ("", "0") or bool(tls_ca or tls_cert)
        if (tls_cert is None) != (tls_key is None):
            raise InvalidArgument("mutual TLS needs both a client certificate and its key")
        host, _port = split_listen(self.address)
        if not tls and not is_loopback(host):
            raise InvalidArgument(
                f"{self.address} is not a loopback address: plaintext would expose your "
                "token; connect with TLS (--tls-ca CA.pem, or --tls to trust the system's CAs)"
            )
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        options = [
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
        ]
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(tls_ca, "CA certificate"),
                private_key=_pem(tls_key, "client key"),
                certificate_chain=_pem(tls_cert, "client certificate"),
            )
            self._channel = grpc.secure_channel(self.address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self.address, options=options)
        self._jobs = pb_grpc.JobServiceStub(self._channel)
        self._catalog = pb_grpc.CatalogServiceStub(self._channel)
        self._budget = pb_grpc.BudgetServiceStub(self._channel)
        self._admin = pb_grpc.AdminServiceStub(self._channel)
        self._audit = pb_grpc.AuditServiceStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        return method(request, metadata=self._metadata, timeout=self._timeout)

    # --- researchers ------------------------------------------------------------------

    def submit(
        self, script: str, dataset: str, *, request_id: str | None = None, wait: bool = True
    ) -> Job:
        """Submit a job; with ``wait``, follow it to its final state.

        The request id makes retries safe: the server runs and charges one job per
        (caller, request id). A fresh one is generated when none is given.
        """
        request = pb.SubmitJobRequest(
            script=script,
            dataset=dataset,
            request_id=request_id or uuid.uuid4().hex,
            wait=wait,  # the server answers when it is done: one call for most jobs
        )
        try:
            msg = self._call(self._jobs.SubmitJob, request)
        except grpc.RpcError as err:
            if not wait or err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            # The server's answer came too late (an old server, or a slow network):
            # the same request id names the same job; ask for it without waiting.
            request.wait = False
            msg = self._call(self._jobs.SubmitJob, request)
        job = Job.from_proto(msg)
        if wait and not job.final:  # longer than the call's deadline: follow it
            for update in self.watch_job(job.job_id):
                job = update
        return job

    def estimate(self, script: str, dataset: str) -> Estimate:
        """What submitting ``script`` would cost, without reading data or spending."""
        msg = self._call(
            self._jobs.EstimateCost, pb.EstimateCostRequest(script=script, dataset=dataset)
        )
        return Estimate.from_proto(msg)

    def run(self, script: str, dataset: str, *, request_id: str | None = None) -> Job:
        """Submit, wait, and raise `JobFailed` unless the job succeeded."""
        job = self.submit(script, dataset, request_id=request_id, wait=True)
        if job.state != "SUCCEEDED":
            code = getattr(grpc.StatusCode, job.error_code, grpc.StatusCode.UNKNOWN)
            raise JobFailed(code, job.error_message, job)
        return job

    def watch_job(self, job_id: str) -> Iterator[Job]:
        """Yield the job at each state change until it is final."""
        stream = self._jobs.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=self._metadata)
        for msg in stream:
            yield Job.from_proto(msg)

    def get_job(self, job_id: str) -> Job:
        """One of your jobs, with its script."""
        return Job.from_proto(self._call(self._jobs.GetJob, pb.GetJobRequest(job_id=job_id)))

    def list_jobs(self, page_size: int = 50) -> list[Job]:
        """Your jobs, newest first (all pages)."""
        jobs: list[Job] = []
        token = ""
        while True:
            page = self._call(
                self._jobs.ListJobs, pb.ListJobsRequest(page_size=page_size, page_token=token)
            )
            jobs.extend(Job.from_proto(j) for j in page.jobs)
            token = page.next_page_token
            if not token:
                return jobs

    def cancel_job(self, job_id: str) -> Job:
        """Stop a job; what it already released stays charged."""
        return Job.from_proto(self._call(self._jobs.CancelJob, pb.CancelJobRequest(job_id=job_id)))

    # --- data protection officers -----------------------------------------------------

    def verify_ledger(self, expected_head: str | None = None) -> pb.LedgerVerification:
        """Walk the ledger's hash chain; ``expected_head``: a head recorded earlier."""
        result: pb.LedgerVerification = self._call(
            self._audit.VerifyLedger, pb.VerifyLedgerRequest(expected_head=expected_head or "")
        )
        return result

    def ledger_head(self) -> pb.LedgerHead:
        """The current chain head, to record outside the enclave."""
        head: pb.LedgerHead = self._call(self._audit.GetLedgerHead, pb.GetLedgerHeadRequest())
        return head

    def budgets(self, *, dataset: str | None = None, principal: str | None = None) -> list[Budget]:
        """Everyone's budgets (DPOs; providers for one dataset of theirs)."""
        resp = self._call(
            self._audit.ListBudgets,
            pb.ListBudgetsRequest(dataset=dataset or "", principal=principal or ""),
        )
        return [Budget.from_proto(b) for b in resp.budgets]

    def ledger(
        self,
        *,
        principal: str | None = None,
        dataset: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        page_size: int = 500,
    ) -> Iterator[LedgerRecord]:
        """Every matching ledger entry in chain order, fetched a page at a time (DPOs)."""
        request = pb.ListLedgerRequest(
            principal=principal or "", dataset=dataset or "", page_size=page_size
        )
        if since is not None:
            request.since.FromDatetime(since.astimezone(dt.UTC))
        if until is not None:
            request.until.FromDatetime(until.astimezone(dt.UTC))
        while True:
            resp = self._call(self._audit.ListLedger, request)
            for entry in resp.entries:
                yield LedgerRecord.from_proto(entry)
            if not resp.next_page_token:
                return
            request.page_token = resp.next_page_token

    def budget(self, dataset: str | None = None) -> list[Budget]:
        """Your remaining budget per dataset."""
        resp = self._call(self._budget.GetBudget, pb.GetBudgetRequest(dataset=dataset or ""))
        return [Budget.from_proto(b) for b in resp.budgets]

    def datasets(self) -> list[pb.DatasetInfo]:
        """Datasets you may use (researchers: those granted to you)."""
        return list(self._call(self._catalog.ListDatasets, pb.ListDatasetsRequest()).datasets)

    def describe_dataset(self, name: str) -> pb.DatasetInfo:
        """Public metadata of one dataset."""
        info: pb.DatasetInfo = self._call(
            self._catalog.DescribeDataset, pb.DescribeDatasetRequest(name=name)
        )
        return info

    # --- providers --------------------------------------------------------------------

    def register_dataset(
        self,
        name: str,
        file: Path,
        schema: Path | str | None,
        *,
        progress: Callable[[int, int], None] | None = None,
        chunk_size: int = 1024 * 1024,
        clamp_to_bounds: bool = False,
        unknown_categories_to_other: bool = False,
        drop_invalid_rows: bool = False,
    ) -> pb.DatasetInfo:
        """Upload a CSV, Parquet or NDJSON file with its schema TOML (a path or the text).

        The file is streamed in chunks (`UploadDataset`), never held in memory
        whole, with its SHA-256 last: a corrupted or interrupted upload registers
        nothing and may simply be retried. ``progress(sent, total)`` is called
        after each chunk. Without a schema the upload stays a draft with a
        proposed schema (`confirm_dataset`). The cleaning options are those of
        `confirm_dataset`.
        """
        header = pb.UploadHeader(
            name=name,
            schema_toml=_text(schema),
            clamp_to_bounds=clamp_to_bounds,
            unknown_categories_to_other=unknown_categories_to_other,
            drop_invalid_rows=drop_invalid_rows,
        )
        return self._upload(header, Path(file), progress, chunk_size)

    def upload_version(
        self,
        name: str,
        file: Path,
        schema: Path | str | None = None,
        *,
        new_budget_period: bool = False,
        replaces: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        chunk_size: int = 1024 * 1024,
        clamp_to_bounds: bool = False,
        unknown_categories_to_other: bool = False,
        drop_invalid_rows: bool = False,
    ) -> pb.DatasetInfo:
        """Upload a new version of your registered dataset (default: under its current schema).

        Its grants, policy and ledger stay. ``new_budget_period`` starts every
        researcher's budget (and the dataset-wide one) again from zero, which
        is right only when the new version holds other persons than the
        previous ones: see docs/versions.md before choosing it. ``replaces``:
        the version you mean to replace; the upload is refused (ABORTED) if
        the dataset has moved on, e.g. when retrying an upload that in fact
        went through. Re-sending the current version's file is refused too.
        """
        header = pb.UploadHeader(
            name=name,
            schema_toml=_text(schema),
            new_version=True,
            new_budget_period=new_budget_period,
            expected_version=replaces or 0,
            clamp_to_bounds=clamp_to_bounds,
            unknown_categories_to_other=unknown_categories_to_other,
            drop_invalid_rows=drop_invalid_rows,
        )
        return self._upload(header, Path(file), progress, chunk_size)

    def _upload(
        self,
        header: pb.UploadHeader,
        file: Path,
        progress: Callable[[int, int], None] | None,
        chunk_size: int,
    ) -> pb.DatasetInfo:
        fmt = UPLOAD_FORMATS.get(file.suffix.lower())
        if fmt is None:
            raise InvalidArgument(f"{file}: expected a .csv, .parquet or .ndjson (.jsonl) file")
        total = file.stat().st_size
        header.format, header.size = fmt, total

        def parts() -> Iterator[pb.UploadDatasetRequest]:
            yield pb.UploadDatasetRequest(header=header)
            digest = hashlib.sha256()
            sent = 0
            with open(file, "rb") as fh:
                while chunk := fh.read(chunk_size):
                    digest.update(chunk)
                    sent += len(chunk)
                    yield pb.UploadDatasetRequest(chunk=chunk)
                    if progress is not None:
                        progress(sent, total)
            trailer = pb.UploadTrailer(sha256=digest.hexdigest())
            yield pb.UploadDatasetRequest(trailer=trailer)

        # No deadline: a large file takes as long as the network needs.
        info: pb.DatasetInfo = self._catalog.UploadDataset(parts(), metadata=self._metadata)
        return info

    def grant(
        self,
        dataset: str,
        principal: str,
        epsilon: Decimal | float | str | None = None,
        delta: Decimal | float | str | None = None,
        *,
        rho: Decimal | float | str | None = None,
        expires_at: dt.datetime | None = None,
    ) -> pb.Grant:
        """Give a researcher access to your dataset with a total cap (and δ cap).

        The cap is in the dataset's measure: ``epsilon`` for a pure-DP dataset,
        ``rho`` for a zCDP one. Without ``delta``, a new grant has no δ and a
        re-grant keeps its δ cap. ``expires_at`` (aware, or naive UTC) ends it.
        """
        request = pb.GrantAccessRequest(
            dataset=dataset,
            principal=principal,
            epsilon_cap="" if epsilon is None else str(epsilon),
            delta_cap="" if delta is None else str(delta),
            rho_cap="" if rho is None else str(rho),
        )
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=dt.UTC)
            request.expires_at.FromDatetime(expires_at)
        grant: pb.Grant = self._call(self._catalog.GrantAccess, request)
        return grant

    def revoke(self, dataset: str, principal: str) -> None:
        """End a researcher's grant on your dataset now (spending stays on record)."""
        self._call(
            self._catalog.RevokeAccess,
            pb.RevokeAccessRequest(dataset=dataset, principal=principal),
        )

    def set_policy(self, dataset: str, policy_toml: str) -> pb.DatasetPolicy:
        """Set your dataset's policy (a new version; the old ones stay on record)."""
        policy: pb.DatasetPolicy = self._call(
            self._catalog.SetPolicy, pb.SetPolicyRequest(dataset=dataset, policy_toml=policy_toml)
        )
        return policy

    def policy(self, dataset: str, history: bool = False) -> pb.DatasetPolicy:
        """A dataset's policy in force (``history``: every version, newest first)."""
        policy: pb.DatasetPolicy = self._call(
            self._catalog.GetPolicy, pb.GetPolicyRequest(dataset=dataset, history=history)
        )
        return policy

    def confirm_dataset(
        self,
        name: str,
        schema: Path | str,
        *,
        clamp_to_bounds: bool = False,
        unknown_categories_to_other: bool = False,
        drop_invalid_rows: bool = False,
    ) -> pb.DatasetInfo:
        """Register a draft under the schema you completed, cleaned as you choose."""
        text = Path(schema).read_text() if isinstance(schema, Path) else schema
        request = pb.ConfirmDatasetRequest(
            name=name,
            schema_toml=text,
            clamp_to_bounds=clamp_to_bounds,
            unknown_categories_to_other=unknown_categories_to_other,
            drop_invalid_rows=drop_invalid_rows,
        )
        info: pb.DatasetInfo = self._call(self._catalog.ConfirmDataset, request)
        return info

    def quality_report(self, name: str, schema: Path | str | None = None) -> pb.QualityReport:
        """Your draft's or dataset's quality report (against ``schema``, if given)."""
        text = (
            ""
            if schema is None
            else (Path(schema).read_text() if isinstance(schema, Path) else schema)
        )
        report: pb.QualityReport = self._call(
            self._catalog.GetQualityReport,
            pb.GetQualityReportRequest(name=name, schema_toml=text),
        )
        return report

    def delete_dataset(self, name: str) -> None:
        """Unregister your dataset (or drop your draft) and purge its files; the ledger stays."""
        self._call(self._catalog.DeleteDataset, pb.DeleteDatasetRequest(name=name))

    def dataset_usage(self, dataset: str) -> pb.DatasetUsage:
        """Your dataset's usage: total spent, policy, jobs, releases, every live grant."""
        usage: pb.DatasetUsage = self._call(
            self._catalog.GetDatasetUsage, pb.GetDatasetUsageRequest(dataset=dataset)
        )
        return usage

    # --- admins -----------------------------------------------------------------------

    def create_principal(self, name: str, role: str) -> str:
        """Create a principal; returns its token (shown only now)."""
        if role not in _ROLE_VALUES:
            raise InvalidArgument(f"role must be one of {', '.join(_ROLE_VALUES)}")
        resp = self._call(
            self._admin.CreatePrincipal,
            pb.CreatePrincipalRequest(name=name, role=_ROLE_VALUES[role]),
        )
        token: str = resp.token
        return token

    def principals(self) -> list[pb.Principal]:
        """All principals (admins and DPOs)."""
        return list(self._call(self._admin.ListPrincipals, pb.ListPrincipalsRequest()).principals)

    def health(self, service: str = "") -> str:
        """Standard gRPC health status name (SERVING, NOT_SERVING, ...)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self._timeout)
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        return name
