"""The composition root: one data dir, one database, the stores and services on it.

Used by the server and by ``enclave admin ... --data-dir``, which works on the
files directly so that the first admin can be created before any token exists.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import budget
from jobs import JobStore, Limits

from ._auth import PrincipalStore
from ._catalog import Catalog, sweep_leftovers
from ._proposal import Drafts

if TYPE_CHECKING:
    from jobs import JobService

log = logging.getLogger(__name__)


class Enclave:
    """Everything behind the gRPC surface.

    Args:
        data_dir: where the SQLite ledger (by default) and the Parquet files live.
        database_url: any SQLAlchemy URL; default ``sqlite:///DATA_DIR/enclave.db``.
        replica: this server's name among replicas sharing the database (jobs it
            left unfinished when it stopped are failed when it starts again);
            default: the host name.
    """

    def __init__(
        self, data_dir: Path, database_url: str | None = None, replica: str | None = None
    ) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{data_dir / 'enclave.db'}"
        self.engine = budget.create_engine(self.database_url)
        self.principals = PrincipalStore(self.engine)
        self.ledger = budget.Ledger(self.engine)
        self.catalog = Catalog(self.engine, data_dir / "datasets")
        self.drafts = Drafts(data_dir / "drafts")
        self.job_store = JobStore(self.engine, replica=replica or default_replica())
        for part in (self.principals, self.ledger, self.catalog, self.job_store):
            part.create_tables()
        sweep_leftovers(data_dir)
        self._equivalent_delta: dict[str, float | None] = {}

    def start_jobs(
        self,
        limits: Limits | None = None,
        max_concurrent: int = 4,
        max_per_researcher: int = 16,
        max_queued: int = 256,
        strict: bool = False,
    ) -> JobService:
        """Create the job service (loads OpenDP); fail jobs a previous run left behind."""
        from jobs import JobService
        from jobs._sandbox import Isolation

        from ._status import code_name

        stale = self.job_store.fail_unfinished(
            "the server stopped while this job was queued or running; releases it made "
            "before that stay charged and recorded"
        )
        if stale:
            log.warning("marked %d unfinished job(s) from a previous run as failed", stale)
        self.jobs = JobService(
            self.job_store,
            self.ledger,
            self.catalog,
            code_name,
            limits,
            max_concurrent,
            max_active_per_principal=max_per_researcher,
            max_active=max_queued,
            isolation=Isolation(hide=str(self.data_dir), strict=strict),
        )
        return self.jobs

    def equivalent_delta(self, dataset: str) -> float | None:
        """The δ at which a zCDP dataset's ρ is shown as (ε, δ); None for pure DP.

        Asked for every cost of every job listed, so it is remembered: a
        registered dataset's schema never changes under its name.
        """
        if dataset not in self._equivalent_delta:
            entry = self.catalog.get(dataset)
            if entry is None:
                return None  # not remembered: the name may be registered later
            schema = entry.schema
            self._equivalent_delta[dataset] = schema.equivalent_delta if schema.zcdp else None
        return self._equivalent_delta[dataset]

    def close(self) -> None:
        """Release the database connections."""
        self.ledger.close()
        self.engine.dispose()


def default_replica() -> str:
    """This server's name among replicas sharing a database: the host's name.

    Two replicas on one host must be given distinct names (``serve --replica``).
    """
    import socket

    return socket.gethostname() or "default"
