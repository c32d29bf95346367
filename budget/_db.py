"""Database engines shared by every Enclave package.

SQLite is the embedded default. Two settings matter for the ledger:

* WAL journal, so readers (budget views, job status) never block the writer;
* ``BEGIN IMMEDIATE`` for transactions opened with ``execution_options(immediate=True)``:
  the debit takes SQLite's write lock *before* it reads the grant, so two
  concurrent debits are serialised instead of both reading the same balance.
  (pysqlite's own transaction handling issues a deferred ``BEGIN`` lazily, which
  is why we switch it off and issue ``BEGIN`` ourselves.)

Any other SQLAlchemy URL (PostgreSQL) gets the library defaults; there the debit
locks the ledger's head row (``SELECT ... FOR UPDATE``) and then makes its
conditional ``UPDATE``, which is atomic on its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as _sa_create_engine


def create_engine(url: str) -> Engine:
    """Open an engine with Enclave's settings for its backend."""
    if not url.startswith("sqlite"):
        return _sa_create_engine(url, pool_pre_ping=True)
    engine = _sa_create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
