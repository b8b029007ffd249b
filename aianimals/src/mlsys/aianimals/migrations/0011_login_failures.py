"""login_failures: the login throttle's counts, moved out of Redis, whose LRU evicted
them to make room for cached searches

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_ends", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_failures")),
    )
    op.create_index(
        op.f("ix_login_failures_window_ends"), "login_failures", ["window_ends"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_login_failures_window_ends"), table_name="login_failures")
    op.drop_table("login_failures")
