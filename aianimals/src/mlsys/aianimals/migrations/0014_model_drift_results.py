"""model_drift_results: the drift checks of every AIAnimals model (the classifier's, now
the search ranker's too), formerly moderation_drift_results

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _rename_key(table: str, old: str, new: str) -> None:
    # SQLite (the local profile) cannot rename a constraint, nor uses its name.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}")


def upgrade() -> None:
    op.rename_table("moderation_drift_results", "model_drift_results")
    _rename_key("model_drift_results", "pk_moderation_drift_results", "pk_model_drift_results")


def downgrade() -> None:
    _rename_key("model_drift_results", "pk_model_drift_results", "pk_moderation_drift_results")
    op.rename_table("model_drift_results", "moderation_drift_results")
