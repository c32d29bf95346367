"""Schema migrations with Alembic: one history per package, run at start-up.

Each package that owns tables (``budget``, ``jobs``, ``enclave``) keeps its own
migration scripts in ``<package>/migrations`` and its own version table
(``alembic_version_<package>``), so the import rule of DESIGN.md holds for the
schema too: a package's migrations know only its own tables.

`upgrade` runs in one transaction that first takes a lock no other upgrader can
hold at the same time (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL), so several replicas started together on one database upgrade it
once and the others find it current. DDL is transactional on both backends: a
failed upgrade leaves the schema as it was.

Each history starts with a *baseline* revision that creates the tables as they
were when Alembic was adopted, or, on a database created before that, adds the
columns it lacks: databases from before migrations upgrade in place like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only when a schema is upgraded: every process that imports
# `budget` (sandbox workers among them) would otherwise pay for it.


def _config(package: str, version_table: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    config.attributes["version_table"] = version_table
    return config


def upgrade(engine: Engine, package: str) -> None:
    """Bring ``package``'s tables to its newest revision; a no-op when current."""
    from alembic import command

    version_table = f"alembic_version_{package}"
    config = _config(package, version_table)
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": version_table})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def current(engine: Engine, package: str) -> str | None:
    """The revision a database is at for ``package`` (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": f"alembic_version_{package}"}
        )
        return context.get_current_revision()


def run_env(context: Any) -> None:
    """The body of every package's ``migrations/env.py``.

    Migrations run only through `upgrade`, which hands over a connection
    already in its locked transaction; Alembic sees that transaction and joins it.
    """
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "Enclave's migrations run through budget.upgrade_schema (the server does it at "
            "start-up), not the alembic command line"
        )
    context.configure(
        connection=connection,
        version_table=config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
