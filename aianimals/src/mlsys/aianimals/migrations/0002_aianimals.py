"""aianimals

Revision ID: 0002
Revises: (none; it followed 0001 while both products shared one chain)
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_logs",
        sa.Column("search_id", sa.String(length=32), nullable=False),
        sa.Column("animal_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column(
            "phrases", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("animal_category_id", sa.Integer(), nullable=True),
        sa.Column("animal_subcategory_id", sa.Integer(), nullable=True),
        sa.Column("sort_by", sa.String(length=16), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("search_id", "animal_id", "action", name=op.f("pk_access_logs")),
    )
    op.create_index(op.f("ix_access_logs_user_id"), "access_logs", ["user_id"], unique=False)
    op.create_table(
        "animal_categories",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=False),
        sa.Column("name_ja", sa.String(length=64), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_animal_categories")),
        sa.UniqueConstraint("name_en", name=op.f("uq_animal_categories_name_en")),
    )
    op.create_table(
        "consumer_offsets",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("last_message_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_consumer_offsets")),
    )
    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("handle_name", sa.String(length=64), nullable=False),
        sa.Column("email_address", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("age", sa.Integer(), nullable=False),
        sa.Column("gender", sa.Integer(), nullable=False),
        sa.Column("deactivated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email_address", name=op.f("uq_users_email_address")),
        sa.UniqueConstraint("handle_name", name=op.f("uq_users_handle_name")),
    )
    op.create_table(
        "violation_types",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_violation_types")),
        sa.UniqueConstraint("name", name=op.f("uq_violation_types_name")),
    )
    op.create_table(
        "animal_subcategories",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("animal_category_id", sa.Integer(), nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=False),
        sa.Column("name_ja", sa.String(length=64), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["animal_category_id"],
            ["animal_categories.id"],
            name=op.f("fk_animal_subcategories_animal_category_id_animal_categories"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_animal_subcategories")),
        sa.UniqueConstraint("name_en", name=op.f("uq_animal_subcategories_name_en")),
    )
    op.create_table(
        "animals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("animal_category_id", sa.Integer(), nullable=False),
        sa.Column("animal_subcategory_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("photo_key", sa.String(length=256), nullable=False),
        sa.Column("deactivated", sa.Boolean(), nullable=False),
        sa.Column("is_generated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["animal_category_id"],
            ["animal_categories.id"],
            name=op.f("fk_animals_animal_category_id_animal_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["animal_subcategory_id"],
            ["animal_subcategories.id"],
            name=op.f("fk_animals_animal_subcategory_id_animal_subcategories"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_animals_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_animals")),
    )
    op.create_index(op.f("ix_animals_created_at"), "animals", ["created_at"], unique=False)
    op.create_index(op.f("ix_animals_user_id"), "animals", ["user_id"], unique=False)
    op.create_table(
        "likes",
        sa.Column("animal_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["animal_id"], ["animals.id"], name=op.f("fk_likes_animal_id_animals")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_likes_user_id_users")),
        sa.PrimaryKeyConstraint("animal_id", "user_id", name=op.f("pk_likes")),
    )
    op.create_index(op.f("ix_likes_user_id"), "likes", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_likes_user_id"), table_name="likes")
    op.drop_table("likes")
    op.drop_index(op.f("ix_animals_user_id"), table_name="animals")
    op.drop_index(op.f("ix_animals_created_at"), table_name="animals")
    op.drop_table("animals")
    op.drop_table("animal_subcategories")
    op.drop_table("violation_types")
    op.drop_table("users")
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox")
    op.drop_table("dead_letters")
    op.drop_table("consumer_offsets")
    op.drop_table("animal_categories")
    op.drop_index(op.f("ix_access_logs_user_id"), table_name="access_logs")
    op.drop_table("access_logs")
