"""index posts by photo: the API serves a photo only while an active post (or the
owner's own) uses it

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_animals_photo_key"), "animals", ["photo_key"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_animals_photo_key"), table_name="animals")
