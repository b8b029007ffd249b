"""post_embeddings: posts' photos as each image-embedding version sees them

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "post_embeddings",
        sa.Column("id", ID, nullable=False),
        sa.Column("model_version", sa.String(length=96), nullable=False),
        sa.Column("animal_id", sa.String(length=32), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["animal_id"], ["animals.id"], name=op.f("fk_post_embeddings_animal_id_animals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_post_embeddings")),
        sa.UniqueConstraint(
            "model_version", "animal_id", name=op.f("uq_post_embeddings_model_version")
        ),
    )


def downgrade() -> None:
    op.drop_table("post_embeddings")
