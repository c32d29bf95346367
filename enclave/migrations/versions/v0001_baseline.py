"""Baseline: principals and the dataset catalog when Alembic was adopted.

Creates them on a new database and leaves an existing one as it is. Frozen:
later changes go in later revisions.

Revision ID: enclave_0001
Revises:
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text

revision = "enclave_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

frozen = MetaData()

Table(
    "principals",
    frozen,
    Column("name", String(200), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Table(
    "datasets",
    frozen,
    Column("name", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("schema_json", Text, nullable=False),
    Column("file", String(500), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def upgrade() -> None:
    """Create the tables that are missing."""
    frozen.create_all(op.get_bind())


def downgrade() -> None:
    """Refused: principals and the catalog are not dropped by a migration."""
    raise NotImplementedError("the baseline cannot be downgraded")
