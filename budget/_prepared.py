"""SQLAlchemy Core statements compiled once and run on the DB-API cursor.

Why: a debit must be durable before its release, so the ledger's speed is
measured against the database's bare commit rate (``bench/ledger_debits.py``).
Building and executing Core statements per call cost ~1 ms of Python per debit
(measured: 6 statements, 3.1 ms per debit under cProfile, 0.3 ms of it the
commit), more than the commit itself. Compiling each statement once per dialect
and passing only its parameters to the driver keeps SQLAlchemy's SQL generation
(quoting, paramstyle, ``FOR UPDATE`` per dialect, bind processing such as
SQLite's datetime format) and drops the per-call cost.

The statements run inside the caller's SQLAlchemy transaction, on the same
DB-API connection, so commit and rollback stay SQLAlchemy's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class Prepared:
    """One statement for one dialect.

    Args:
        statement: a Core statement whose varying values are ``bindparam`` s.
        dialect: the engine's dialect.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql: str = compiled.string
        self._positional = bool(compiled.positional)
        # The names the SQL uses, in order for positional paramstyles.
        rendered = {name: bind for bind, name in compiled.bind_names.items()}
        self._names: list[str] = (
            list(compiled.positiontup or ()) if self._positional else list(rendered)
        )
        # Literal values in the statement (e.g. ``id == 1``) are binds with a value.
        self._defaults = {n: b.value for n, b in rendered.items() if b.value is not None}
        self._processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in rendered.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors[name] = processor
        escaped: dict[str, str] = compiled.escaped_bind_names or {}
        self._driver_names = {n: escaped.get(n, n) for n in rendered}

    def run(self, conn: Connection, **params: Any) -> Any:
        """Execute on ``conn``'s DB-API connection; returns the DB-API cursor."""
        values = self._defaults | params
        for name, processor in self._processors.items():
            if name in values:
                values[name] = processor(values[name])
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if self._positional:
            cursor.execute(self.sql, tuple(values[n] for n in self._names))
        else:
            cursor.execute(self.sql, {self._driver_names[n]: values[n] for n in self._names})
        return cursor
