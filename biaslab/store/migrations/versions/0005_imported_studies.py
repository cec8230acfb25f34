"""Add studies.imported_from, the origin of a study loaded from a bundle.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: only imported studies have an origin.
    op.add_column("studies", sa.Column("imported_from", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE, not a batch copy: on SQLite, with foreign keys on,
    # dropping the old studies table would cascade to every run.
    op.drop_column("studies", "imported_from")
