"""Schema migrations (Alembic): each package's history builds exactly the schema its
code declares, on SQLite and PostgreSQL, and an upgrade is idempotent."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

import budget
from budget import _ledger
from enclave import _auth, _catalog
from jobs import _store

PACKAGES: dict[str, list[MetaData]] = {
    "budget": [_ledger.metadata],
    "jobs": [_store.metadata],
    "enclave": [_auth.metadata, _catalog.metadata],
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_migrations_build_the_declared_schema(database_url: str, package: str) -> None:
    """If this fails, a table changed in code without a migration (or the reverse)."""
    engine = budget.create_engine(database_url)
    try:
        budget.upgrade_schema(engine, package)
        budget.upgrade_schema(engine, package)  # idempotent
        assert budget.schema_revision(engine, package) is not None
        merged = MetaData()
        for metadata in PACKAGES[package]:
            for table in metadata.tables.values():
                table.to_metadata(merged)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": f"alembic_version_{package}"}
            )
            diff = compare_metadata(context, merged)
        assert diff == []
    finally:
        engine.dispose()


def test_the_alembic_command_line_is_refused_with_a_pointer() -> None:
    """Migrations run through budget.upgrade_schema, which holds the upgrade lock."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "budget:migrations")
    with pytest.raises(RuntimeError, match=r"budget\.upgrade_schema"):
        command.upgrade(config, "head")
