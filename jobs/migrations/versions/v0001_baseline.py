"""Baseline: the job store's tables when Alembic was adopted.

Creates them on a new database; on a database created before migrations, adds
the columns earlier versions added in place (ρ per release). Frozen: later
changes go in later revisions.

Revision ID: jobs_0001
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

from budget import add_missing_columns

revision = "jobs_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

frozen = MetaData()

Table(
    "jobs",
    frozen,
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
    UniqueConstraint("principal", "request_id", name="uq_job_request"),
)
Table(
    "releases",
    frozen,
    Column("job_id", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("plan_json", Text, nullable=False),
    Column("epsilon_q", BigInteger, nullable=False),
    Column("delta_q", BigInteger, nullable=False),
    Column("rho_q", BigInteger, nullable=False, server_default="0"),
    Column("mechanism", String(200), nullable=False),
    Column("value_json", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def upgrade() -> None:
    """Create what is missing, tables or columns."""
    bind = op.get_bind()
    frozen.create_all(bind)
    add_missing_columns(bind, *frozen.tables.values())


def downgrade() -> None:
    """Refused: job records are the audit's evidence."""
    raise NotImplementedError("the job store's baseline cannot be downgraded")
