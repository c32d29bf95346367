"""Which server replica runs a job.

Several `enclave serve` replicas may share one database. At start-up a
replica fails the jobs *it* left queued or running when it stopped; without
knowing whose a job is, it failed every replica's. Jobs from before: NULL,
which every replica treats as its own (there was only one server then).

Revision ID: jobs_0002
Revises: jobs_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "jobs_0002"
down_revision: str | None = "jobs_0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable column."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("replica", sa.String(200), nullable=True))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("replica")
