"""registrations: sign-ups waiting for their address to be confirmed by a mailed link

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registrations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("handle_name", sa.String(length=64), nullable=False),
        sa.Column("email_address", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("age", sa.Integer(), nullable=False),
        sa.Column("gender", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("mailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_registrations_token_hash")),
    )
    op.create_index(
        op.f("ix_registrations_expires_at"), "registrations", ["expires_at"], unique=False
    )
    op.create_index(
        "ux_registrations_handle_name_lower",
        "registrations",
        [sa.text("lower(handle_name)")],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_registrations_handle_name_lower", table_name="registrations")
    op.drop_index(op.f("ix_registrations_expires_at"), table_name="registrations")
    op.drop_table("registrations")
