"""Refresh windows and lifetime caps.

A grant's cap becomes a cap per period when its dataset's policy refreshes
budgets; what a researcher spent over all periods is kept beside it and checked
against the policy's lifetime cap. Until now nothing refreshed, so the lifetime
spending of an existing grant is exactly what it has spent, and its current
period began when it was created.

Revision ID: budget_0002
Revises: budget_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "budget_0002"
down_revision: str | None = "budget_0001"
branch_labels: str | None = None
depends_on: str | None = None

_LIFETIME = ("epsilon", "rho", "delta")


def upgrade() -> None:
    """Add the columns and back-fill them from the grants' own spending."""
    with op.batch_alter_table("grants") as batch:
        for measure in _LIFETIME:
            batch.add_column(
                sa.Column(
                    f"lifetime_{measure}_spent_q", sa.BigInteger, nullable=False, server_default="0"
                )
            )
        batch.add_column(sa.Column("period_start", sa.DateTime(timezone=True), nullable=True))
    grants = sa.table(
        "grants",
        *(sa.column(f"{m}_spent_q", sa.BigInteger) for m in _LIFETIME),
        *(sa.column(f"lifetime_{m}_spent_q", sa.BigInteger) for m in _LIFETIME),
        sa.column("period_start", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        grants.update().values(
            period_start=grants.c.created_at,
            **{f"lifetime_{m}_spent_q": grants.c[f"{m}_spent_q"] for m in _LIFETIME},
        )
    )
    with op.batch_alter_table("grants") as batch:
        batch.alter_column("period_start", nullable=False)
    with op.batch_alter_table("dataset_budgets") as batch:
        batch.add_column(sa.Column("refresh", sa.String(10), nullable=False, server_default="none"))
        for measure in _LIFETIME:
            batch.add_column(sa.Column(f"lifetime_{measure}_cap_q", sa.BigInteger, nullable=True))


def downgrade() -> None:
    """Drop the columns (periods and lifetime spending are forgotten; the ledger keeps all)."""
    with op.batch_alter_table("dataset_budgets") as batch:
        batch.drop_column("refresh")
        for measure in _LIFETIME:
            batch.drop_column(f"lifetime_{measure}_cap_q")
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("period_start")
        for measure in _LIFETIME:
            batch.drop_column(f"lifetime_{measure}_spent_q")
