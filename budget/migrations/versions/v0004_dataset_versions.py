"""Dataset versions in the ledger.

Each entry records the dataset version it concerns (a release's data, or the
version a ``version``/``new_period`` entry opened); entries written before
have none, and their hashes, which never covered it, still verify. Each
dataset's budget row records the version that started its current budget
period, which debits check.

Revision ID: budget_0004
Revises: budget_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "budget_0004"
down_revision: str | None = "budget_0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable version columns."""
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("dataset_version", sa.Integer, nullable=True))
    with op.batch_alter_table("dataset_budgets") as batch:
        batch.add_column(sa.Column("period_version", sa.Integer, nullable=True))


def downgrade() -> None:
    """Drop them (entries that recorded a version then no longer verify)."""
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("dataset_version")
    with op.batch_alter_table("dataset_budgets") as batch:
        batch.drop_column("period_version")
