"""Add audit_log.attempted_user, the user name that a failed sign-in tried.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: only sign-in requests that identified no user have one.
    op.add_column("audit_log", sa.Column("attempted_user", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_log", "attempted_user")
