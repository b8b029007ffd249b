"""moderation: user roles, violations, moderators' reviews, photo labels

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NO_ANIMAL_VIOLATION_ID = "4cc11afb7f8944ab9b3c1573e85abbf3"


def upgrade() -> None:
    # Not a batch (a copy of the table on SQLite): both databases add a column in place.
    op.add_column(
        "users", sa.Column("role", sa.String(length=16), nullable=False, server_default="user")
    )
    # The type the classifier judges, with the seeded master data's id (the initial load's
    # upsert of the same row changes nothing).
    op.execute(
        sa.text(
            "INSERT INTO violation_types (id, name) SELECT :id, :name WHERE NOT EXISTS "
            "(SELECT 1 FROM violation_types WHERE id = :id OR name = :name)"
        ).bindparams(id=NO_ANIMAL_VIOLATION_ID, name="no_animal_violation")
    )
    op.create_table(
        "violations",
        sa.Column("id", ID, nullable=False),
        sa.Column("animal_id", sa.String(length=32), nullable=False),
        sa.Column("violation_type_id", sa.String(length=32), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=96), nullable=False),
        sa.Column("is_violation", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["animal_id"], ["animals.id"], name=op.f("fk_violations_animal_id_animals")
        ),
        sa.ForeignKeyConstraint(
            ["violation_type_id"], ["violation_types.id"],
            name=op.f("fk_violations_violation_type_id_violation_types"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_violations")),
        sa.UniqueConstraint(
            "animal_id", "violation_type_id", "model_version",
            name=op.f("uq_violations_animal_id"),
        ),
    )  # fmt: skip
    op.create_index(op.f("ix_violations_animal_id"), "violations", ["animal_id"])
    op.create_index(op.f("ix_violations_created_at"), "violations", ["created_at"])
    op.create_table(
        "violation_reviews",
        sa.Column("id", ID, nullable=False),
        sa.Column("violation_id", ID, nullable=False),
        sa.Column("reviewer_id", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["violation_id"], ["violations.id"],
            name=op.f("fk_violation_reviews_violation_id_violations"),
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_violation_reviews_reviewer_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_violation_reviews")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_violation_reviews_violation_id"), "violation_reviews", ["violation_id"]
    )
    op.create_table(
        "photo_labels",
        sa.Column("animal_id", sa.String(length=32), nullable=False),
        sa.Column("no_animal", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reviewer_id", sa.String(length=32), nullable=True),
        sa.Column("violation_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["animal_id"], ["animals.id"], name=op.f("fk_photo_labels_animal_id_animals")
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_photo_labels_reviewer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["violation_id"], ["violations.id"],
            name=op.f("fk_photo_labels_violation_id_violations"),
        ),
        sa.PrimaryKeyConstraint("animal_id", name=op.f("pk_photo_labels")),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("photo_labels")
    op.drop_index(op.f("ix_violation_reviews_violation_id"), table_name="violation_reviews")
    op.drop_table("violation_reviews")
    op.drop_index(op.f("ix_violations_created_at"), table_name="violations")
    op.drop_index(op.f("ix_violations_animal_id"), table_name="violations")
    op.drop_table("violations")
    op.drop_column("users", "role")
