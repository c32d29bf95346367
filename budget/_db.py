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

from sqlalchemy import Connection, Engine, Table, event, inspect, text
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
        # Durable commits: a debit is on disk before its release exists (invariant 2).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def add_missing_columns(conn: Connection, *tables: Table) -> list[str]:
    """Add columns a table lacks on a database created before its baseline migration.

    Used only by the baseline revisions (see `budget._migrate`): databases
    created before Alembic was adopted had their columns added this way. It only
    adds nullable columns or those with a ``server_default`` (so existing rows
    get a value), on the caller's connection and transaction.
    """
    inspector = inspect(conn)
    added = []
    for table in tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            default = column.server_default
            if column.nullable:
                constraint = ""  # existing rows get NULL
            elif default is not None:
                constraint = f" NOT NULL DEFAULT {default.arg}"  # type: ignore[attr-defined]
            else:
                raise RuntimeError(
                    f"{table.name}.{column.name} is missing and cannot be added in place"
                )
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(
                text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{constraint}")
            )
            added.append(f"{table.name}.{column.name}")
    return added
