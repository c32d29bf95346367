"""A policy's per-researcher caps.

The most any one researcher may hold on a dataset (per period where the policy
refreshes). Each debit checks them beside the grant's own caps, so lowering
them binds grants already given. Nothing had them before: all are NULL.

Revision ID: budget_0003
Revises: budget_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "budget_0003"
down_revision: str | None = "budget_0002"
branch_labels: str | None = None
depends_on: str | None = None

_MEASURES = ("epsilon", "rho", "delta")


def upgrade() -> None:
    """Add the nullable cap columns."""
    with op.batch_alter_table("dataset_budgets") as batch:
        for measure in _MEASURES:
            batch.add_column(sa.Column(f"researcher_{measure}_cap_q", sa.BigInteger, nullable=True))


def downgrade() -> None:
    """Drop them (the policies' versions keep what they were)."""
    with op.batch_alter_table("dataset_budgets") as batch:
        for measure in _MEASURES:
            batch.drop_column(f"researcher_{measure}_cap_q")
