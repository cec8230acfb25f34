"""Add snapshots.scores: the dataset family's summary numbers of each snapshot.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: snapshots stored before this revision have no scores.
    op.add_column("snapshots", sa.Column("scores", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE, not a batch copy of the table: on SQLite, with foreign keys
    # on, dropping the old table would cascade to the events of its snapshots.
    # SQLite has had DROP COLUMN since 3.35.
    op.drop_column("snapshots", "scores")
