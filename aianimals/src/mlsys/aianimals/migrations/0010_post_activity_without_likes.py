"""post_activity without likes: the API scores the like count the search engine holds
(fresher than any job's), so the column had two writers and no reader

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("post_activity") as table:  # SQLite copies the table
        table.drop_column("likes")


def downgrade() -> None:
    with op.batch_alter_table("post_activity") as table:
        table.add_column(sa.Column("likes", sa.Float(), nullable=False, server_default="0"))
