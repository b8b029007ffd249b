"""users: a token version (revocation), handles and addresses unique whatever their case

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("token_version", sa.Integer(), nullable=False, server_default="0")
        )
    # Fails, naming the index, if a database holds handles or addresses that differ only
    # in case: which account keeps the name is a decision for a person, not a migration.
    op.create_index(
        "ux_users_handle_name_lower", "users", [sa.text("lower(handle_name)")], unique=True
    )
    op.create_index(
        "ux_users_email_address_lower", "users", [sa.text("lower(email_address)")], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_users_email_address_lower", table_name="users")
    op.drop_index("ux_users_handle_name_lower", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_version")
