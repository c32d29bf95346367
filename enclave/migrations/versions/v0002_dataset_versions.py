"""Dataset versions.

``datasets.version`` is the current version; ``dataset_versions`` keeps every
version a name has had. Datasets registered before are version 1, uploaded by
their owner when they were registered.

Revision ID: enclave_0002
Revises: enclave_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "enclave_0002"
down_revision: str | None = "enclave_0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the column and the table; record each existing dataset as its version 1."""
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    versions = op.create_table(
        "dataset_versions",
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("file", sa.String(500), nullable=True),
        sa.Column("uploaded_by", sa.String(200), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("new_period", sa.Boolean, nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("dataset", "version", name="pk_dataset_versions"),
    )
    datasets = sa.table(
        "datasets",
        sa.column("name", sa.String),
        sa.column("owner", sa.String),
        sa.column("file", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        versions.insert().from_select(
            ["dataset", "version", "file", "uploaded_by", "uploaded_at", "new_period"],
            sa.select(
                datasets.c.name,
                sa.literal(1),
                datasets.c.file,
                datasets.c.owner,
                datasets.c.created_at,
                sa.false(),
            ),
        )
    )


def downgrade() -> None:
    """Drop them (a dataset then has only its current file)."""
    op.drop_table("dataset_versions")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("version")
