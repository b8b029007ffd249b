"""beverage sales tables

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
        sa.UniqueConstraint("name", name=op.f("uq_items_name")),
    )
    op.create_table(
        "regions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regions")),
        sa.UniqueConstraint("name", name=op.f("uq_regions_name")),
    )
    op.create_table(
        "item_prices",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("applied_from", sa.Date(), nullable=False),
        sa.Column("applied_to", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_item_prices_item_id_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_prices")),
    )
    op.create_table(
        "stores",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("region_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("fk_stores_region_id_regions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stores")),
        sa.UniqueConstraint("name", name=op.f("uq_stores_name")),
    )
    op.create_table(
        "item_sales",
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("sales", sa.Integer(), nullable=False),
        sa.Column("total_sales_amount", sa.Integer(), nullable=False),
        sa.Column("is_generated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("date", "store_id", "item_id", name=op.f("pk_item_sales")),
    )
    op.create_table(
        "weekly_sales_predictions",
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("prediction", sa.Float(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_weekly_sales_predictions_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_weekly_sales_predictions_store_id_stores")
        ),
        sa.PrimaryKeyConstraint(
            "week_start",
            "store_id",
            "item_id",
            "model_version",
            name=op.f("pk_weekly_sales_predictions"),
        ),
    )
    op.create_table(
        "backtest_predictions",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("prediction", sa.Float(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_backtest_predictions_item_id_items")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_backtest_predictions_store_id_stores")
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "week_start", "store_id", "item_id", name=op.f("pk_backtest_predictions")
        ),
    )


def downgrade() -> None:
    op.drop_table("backtest_predictions")
    op.drop_table("weekly_sales_predictions")
    op.drop_table("item_sales")
    op.drop_table("stores")
    op.drop_table("item_prices")
    op.drop_table("regions")
    op.drop_table("items")
