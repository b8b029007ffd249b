"""post_activity: the online features of learning to rank

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COUNTS = ("likes", "impressions", "examinations", "selects", "see_longs", "logged_likes",
          "owner_posts")  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "post_activity",
        sa.Column("animal_id", sa.String(length=32), nullable=False),
        sa.Column("feature_set_version", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in COUNTS),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("animal_id", name=op.f("pk_post_activity")),
    )


def downgrade() -> None:
    op.drop_table("post_activity")
