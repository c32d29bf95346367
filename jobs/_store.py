"""Persistent job records and release records (SQLAlchemy).

A job row is created QUEUED and is idempotent on ``(principal, request_id)``:
a unique constraint makes a retried submission find the first job instead of
creating (and charging) a second one, even when two retries race.

Release rows keep what each release cost and returned, so a job that fails
after some releases still shows the researcher what they paid for.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from budget import DELTA_QUANTUM, from_quanta, total, upgrade_schema

from ._errors import JobNotFound, RequestConflict

metadata = MetaData()

jobs_table = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("principal", String(200), nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("script", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("result_json", Text, nullable=True),
    Column("printed", Text, nullable=True),
    Column("error_code", String(40), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # The server replica that queued the job (jobs_0002); NULL before replicas.
    Column("replica", String(200), nullable=True),
    UniqueConstraint("principal", "request_id", name="uq_job_request"),
)

releases_table = Table(
    "releases",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("plan_json", Text, nullable=False),
    Column("epsilon_q", BigInteger, nullable=False),
    Column("delta_q", BigInteger, nullable=False, default=0),
    # ρ charged, for releases on zCDP datasets (whose epsilon_q is 0).
    Column("rho_q", BigInteger, nullable=False, default=0, server_default="0"),
    Column("mechanism", String(200), nullable=False),
    Column("value_json", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The dataset version the release was computed on (jobs_0003); NULL before.
    Column("dataset_version", Integer, nullable=True),
)


class JobState(enum.StrEnum):
    """Lifecycle of a job; the last three are final."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        """Whether the job can no longer change."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """One release of a job: its cost, mechanism and released value."""

    index: int
    dataset: str
    plan: Any
    epsilon: Decimal
    mechanism: str
    value: Any
    delta: Decimal = Decimal(0)
    rho: Decimal = Decimal(0)
    #: The dataset version it was computed on (None: recorded before versions).
    dataset_version: int | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored."""

    id: str
    principal: str
    request_id: str
    dataset: str
    script: str
    state: JobState
    result: Any
    printed: str
    error_code: str | None
    error_message: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    releases: tuple[ReleaseRecord, ...]

    @property
    def epsilon_spent(self) -> Decimal:
        """Total ε charged by this job (exact)."""
        return total(r.epsilon for r in self.releases)

    @property
    def delta_spent(self) -> Decimal:
        """Total δ charged by this job (exact)."""
        return total((r.delta for r in self.releases), quantum=DELTA_QUANTUM)

    @property
    def rho_spent(self) -> Decimal:
        """Total ρ charged by this job (exact; zCDP datasets only)."""
        return total(r.rho for r in self.releases)


# Statements built once: building and cache-keying a SQLAlchemy expression per
# call cost more Python time than running it (a job runs about ten of these).
_UNFINISHED = (JobState.QUEUED.value, JobState.RUNNING.value)
_GET_JOB = select(jobs_table).where(jobs_table.c.id == bindparam("b_id"))
_GET_JOB_OF = _GET_JOB.where(jobs_table.c.principal == bindparam("b_principal"))
_GET_RELEASES = (
    select(releases_table)
    .where(releases_table.c.job_id == bindparam("b_id"))
    .order_by(releases_table.c.idx)
)
_INSERT_JOB = insert(jobs_table)
_STATE = select(jobs_table.c.state).where(jobs_table.c.id == bindparam("b_id"))
_MARK_RUNNING = (
    update(jobs_table)
    .where(jobs_table.c.id == bindparam("b_id"), jobs_table.c.state == JobState.QUEUED.value)
    .values(state=JobState.RUNNING.value, started_at=bindparam("b_at"))
)
_FINISH = (
    update(jobs_table)
    .where(jobs_table.c.id == bindparam("b_id"), jobs_table.c.state.in_(_UNFINISHED))
    .values(
        state=bindparam("b_state"),
        result_json=bindparam("b_result"),
        printed=bindparam("b_printed"),
        error_code=bindparam("b_code"),
        error_message=bindparam("b_message"),
        finished_at=bindparam("b_at"),
    )
)
_INSERT_RELEASE = insert(releases_table)
_SET_RELEASE_VALUE = (
    update(releases_table)
    .where(releases_table.c.job_id == bindparam("b_id"), releases_table.c.idx == bindparam("b_idx"))
    .values(value_json=bindparam("b_value"))
)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JobStore:
    """Job and release rows on one engine."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], dt.datetime] = _utcnow,
        replica: str = "default",
    ) -> None:
        """``replica`` names this server among those sharing ``engine``'s database."""
        self._engine = engine
        self._clock = clock
        self.replica = replica

    def create_tables(self) -> None:
        """Create or upgrade the tables (Alembic, ``jobs/migrations``)."""
        upgrade_schema(self._engine, "jobs")

    def create(
        self, job_id: str, principal: str, request_id: str, dataset: str, script: str
    ) -> tuple[JobRecord, bool]:
        """Insert a QUEUED job, or return the existing one for this request_id.

        Returns:
            The job and whether it was created now.

        Raises:
            RequestConflict: the request_id was used for a different script/dataset.
        """
        created_at = self._clock()
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    _INSERT_JOB,
                    {
                        "id": job_id,
                        "principal": principal,
                        "request_id": request_id,
                        "dataset": dataset,
                        "script": script,
                        "state": JobState.QUEUED.value,
                        "created_at": created_at,
                        "replica": self.replica,
                    },
                )
            # What was just inserted, without reading it back.
            job = JobRecord(
                id=job_id,
                principal=principal,
                request_id=request_id,
                dataset=dataset,
                script=script,
                state=JobState.QUEUED,
                result=None,
                printed="",
                error_code=None,
                error_message=None,
                created_at=created_at,
                started_at=None,
                finished_at=None,
                releases=(),
            )
            return job, True
        except IntegrityError:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(jobs_table.c.id).where(
                        jobs_table.c.principal == principal, jobs_table.c.request_id == request_id
                    )
                ).first()
            if row is None:  # pragma: no cover - the conflict was on something else
                raise
            existing = self.get(row.id)
            if existing.script != script or existing.dataset != dataset:
                raise RequestConflict(
                    f"request_id {request_id!r} was already used for job {existing.id} with a "
                    "different script or dataset; use a new request_id for a new job"
                ) from None
            return existing, False

    def find(self, principal: str, request_id: str) -> JobRecord | None:
        """The job ``principal`` submitted with ``request_id``, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(jobs_table.c.id).where(
                    jobs_table.c.principal == principal, jobs_table.c.request_id == request_id
                )
            ).first()
        return None if row is None else self.get(row.id)

    def usage(self, dataset: str) -> tuple[int, int]:
        """(jobs submitted against ``dataset``, releases charged on it), any state."""
        from sqlalchemy import func

        with self._engine.connect() as conn:
            jobs = conn.execute(
                select(func.count()).select_from(jobs_table).where(jobs_table.c.dataset == dataset)
            ).scalar()
            releases = conn.execute(
                select(func.count())
                .select_from(releases_table)
                .where(releases_table.c.dataset == dataset)
            ).scalar()
        return int(jobs or 0), int(releases or 0)

    def is_final(self, job_id: str) -> bool:
        """Whether the job has ended (or is unknown), as the database says now."""
        with self._engine.connect() as conn:
            state = conn.execute(_STATE, {"b_id": job_id}).scalar()
        return state is None or JobState(state).final

    def mark_running(self, job_id: str) -> bool:
        """QUEUED → RUNNING; False if the job is no longer queued (e.g. cancelled)."""
        with self._engine.begin() as conn:
            return bool(
                conn.execute(_MARK_RUNNING, {"b_id": job_id, "b_at": self._clock()}).rowcount
            )

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        result: Any = None,
        printed: str = "",
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Move a job to a final state, once. False if it was already final."""
        params = {
            "b_id": job_id,
            "b_state": state.value,
            "b_result": None if result is None else json.dumps(result),
            "b_printed": printed,
            "b_code": error_code,
            "b_message": error_message,
            "b_at": self._clock(),
        }
        with self._engine.begin() as conn:
            return bool(conn.execute(_FINISH, params).rowcount)

    def fail_unfinished(self, message: str) -> int:
        """At start-up: jobs this replica left QUEUED/RUNNING when it stopped.

        They can never finish (their queue and workers died with it). Jobs of
        other replicas sharing the database are theirs: left alone.
        """
        mine = or_(jobs_table.c.replica == self.replica, jobs_table.c.replica.is_(None))
        with self._engine.begin() as conn:
            return int(
                conn.execute(
                    update(jobs_table)
                    .where(
                        jobs_table.c.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
                        mine,
                    )
                    .values(
                        state=JobState.FAILED.value,
                        error_code="ABORTED",
                        error_message=message,
                        finished_at=self._clock(),
                    )
                ).rowcount
            )

    def add_release(
        self,
        job_id: str,
        index: int,
        dataset: str,
        plan: Any,
        epsilon_q: int,
        mechanism: str,
        delta_q: int = 0,
        rho_q: int = 0,
        dataset_version: int | None = None,
    ) -> None:
        """Record a release right after its debit, before its value exists."""
        with self._engine.begin() as conn:
            conn.execute(
                _INSERT_RELEASE,
                {
                    "job_id": job_id,
                    "idx": index,
                    "dataset": dataset,
                    "plan_json": json.dumps(plan),
                    "epsilon_q": epsilon_q,
                    "delta_q": delta_q,
                    "rho_q": rho_q,
                    "mechanism": mechanism,
                    "value_json": None,
                    "created_at": self._clock(),
                    "dataset_version": dataset_version,
                },
            )

    def set_release_value(self, job_id: str, index: int, value: Any) -> None:
        """Attach the released (noisy) value to its record."""
        with self._engine.begin() as conn:
            conn.execute(
                _SET_RELEASE_VALUE, {"b_id": job_id, "b_idx": index, "b_value": json.dumps(value)}
            )

    def get(self, job_id: str, *, principal: str | None = None) -> JobRecord:
        """One job; with ``principal``, only if it belongs to them.

        Raises:
            JobNotFound: also when the job belongs to someone else, so that ids of
                other people's jobs are indistinguishable from wrong ids.
        """
        query, params = _GET_JOB, {"b_id": job_id}
        if principal is not None:
            query, params = _GET_JOB_OF, {"b_id": job_id, "b_principal": principal}
        with self._engine.connect() as conn:
            row = conn.execute(query, params).mappings().first()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            rels = conn.execute(_GET_RELEASES, {"b_id": job_id}).mappings().all()
        return _record(row, rels)

    def list(
        self, principal: str | None, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        """Jobs newest first; ``before`` is the id of the last job of the previous page."""
        query = select(jobs_table)
        if principal is not None:
            query = query.where(jobs_table.c.principal == principal)
        with self._engine.connect() as conn:
            if before is not None:
                anchor = conn.execute(
                    select(jobs_table.c.created_at).where(jobs_table.c.id == before)
                ).first()
                if anchor is not None:
                    query = query.where(
                        (jobs_table.c.created_at < anchor.created_at)
                        | (
                            (jobs_table.c.created_at == anchor.created_at)
                            & (jobs_table.c.id < before)
                        )
                    )
            rows = (
                conn.execute(
                    query.order_by(jobs_table.c.created_at.desc(), jobs_table.c.id.desc()).limit(
                        limit
                    )
                )
                .mappings()
                .all()
            )
            rels = (
                conn.execute(
                    select(releases_table)
                    .where(releases_table.c.job_id.in_([r["id"] for r in rows]))
                    .order_by(releases_table.c.job_id, releases_table.c.idx)
                )
                .mappings()
                .all()
            )
        by_job: dict[str, list[Any]] = {}
        for rel in rels:
            by_job.setdefault(rel["job_id"], []).append(rel)
        return [_record(r, by_job.get(r["id"], [])) for r in rows]


def _record(row: Any, rels: Any) -> JobRecord:
    return JobRecord(
        id=row["id"],
        principal=row["principal"],
        request_id=row["request_id"],
        dataset=row["dataset"],
        script=row["script"],
        state=JobState(row["state"]),
        result=None if row["result_json"] is None else json.loads(row["result_json"]),
        printed=row["printed"] or "",
        error_code=row["error_code"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        releases=tuple(
            ReleaseRecord(
                index=r["idx"],
                dataset=r["dataset"],
                plan=json.loads(r["plan_json"]),
                epsilon=from_quanta(r["epsilon_q"]),
                mechanism=r["mechanism"],
                value=None if r["value_json"] is None else json.loads(r["value_json"]),
                delta=from_quanta(r["delta_q"], quantum=DELTA_QUANTUM),
                rho=from_quanta(r["rho_q"]),
                dataset_version=r["dataset_version"],
            )
            for r in rels
        ),
    )
