"""The dataset version each release was computed on.

A provider may upload new versions of a dataset; a researcher reading a job
must know which data a result came from. Releases from before: NULL.

Revision ID: jobs_0003
Revises: jobs_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "jobs_0003"
down_revision: str | None = "jobs_0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable column."""
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("dataset_version", sa.Integer, nullable=True))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("dataset_version")
