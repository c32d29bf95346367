"""Baseline: the ledger's tables when Alembic was adopted.

Creates them on a new database. On a database created before migrations, it
adds the columns that earlier versions added in place (ρ, grant expiry), so
both arrive at the same schema. The definitions below are frozen: later changes
go in later revisions, never here.

Revision ID: budget_0001
Revises:
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from budget._db import add_missing_columns

revision = "budget_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

frozen = MetaData()

Table(
    "grants",
    frozen,
    Column("id", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("epsilon_cap_q", BigInteger, nullable=False),
    Column("epsilon_spent_q", BigInteger, nullable=False),
    Column("delta_cap_q", BigInteger, nullable=False),
    Column("delta_spent_q", BigInteger, nullable=False),
    Column("rho_cap_q", BigInteger, nullable=False, server_default="0"),
    Column("rho_spent_q", BigInteger, nullable=False, server_default="0"),
    Column("granted_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("dataset", "principal", name="uq_grant_dataset_principal"),
)
Table(
    "ledger_entries",
    frozen,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(20), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("job_id", String(64), nullable=False),
    Column("release_index", Integer, nullable=False),
    Column("epsilon_q", BigInteger, nullable=False),
    Column("delta_q", BigInteger, nullable=False),
    Column("rho_q", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Table(
    "policies",
    frozen,
    Column("id", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body_json", Text, nullable=False),
    Column("set_by", String(200), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dataset", "version", name="uq_policy_version"),
)
Table(
    "dataset_budgets",
    frozen,
    Column("dataset", String(200), primary_key=True),
    Column("epsilon_cap_q", BigInteger, nullable=True),
    Column("epsilon_spent_q", BigInteger, nullable=False),
    Column("rho_cap_q", BigInteger, nullable=True),
    Column("rho_spent_q", BigInteger, nullable=False),
    Column("delta_cap_q", BigInteger, nullable=True),
    Column("delta_spent_q", BigInteger, nullable=False),
)
Table(
    "ledger_head",
    frozen,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)


def upgrade() -> None:
    """Create what is missing, tables or columns."""
    bind = op.get_bind()
    frozen.create_all(bind)
    add_missing_columns(bind, *frozen.tables.values())


def downgrade() -> None:
    """Refused: the ledger is append-only; dropping it is an operator's act, not a migration."""
    raise NotImplementedError("the ledger's baseline cannot be downgraded")
