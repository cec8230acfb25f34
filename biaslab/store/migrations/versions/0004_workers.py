"""Add the workers table and runs.waiting_reason.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: only a queued run held back by its owner's limit has a reason.
    op.add_column("runs", sa.Column("waiting_reason", sa.String(length=500), nullable=True))

    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("device", sa.String(length=255), nullable=False),
        sa.Column("queues", sa.String(length=255), nullable=False),
        sa.Column("current_run_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["current_run_id"],
            ["runs.id"],
            name="fk_workers_current_run_id_runs",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
        sa.UniqueConstraint("name", name="uq_workers_name"),
    )


def downgrade() -> None:
    op.drop_table("workers")
    # A plain ALTER TABLE, not a batch copy: on SQLite, with foreign keys on,
    # dropping the old runs table would cascade to every snapshot.
    op.drop_column("runs", "waiting_reason")
