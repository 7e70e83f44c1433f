"""Paper / live accounts: per-bar inputs and marks (``paper_bars``) and the account's start
record (``paper_accounts``), written in each bar's one transaction.

Revision ID: 0002
Revises: 0001
Create Date: 2027-01-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "paper_bars",
        sa.Column("run", sa.String(64), sa.ForeignKey("paper_runs.name"), primary_key=True),
        sa.Column("bar", TS, primary_key=True),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("equity", sa.Float, nullable=False),
        sa.Column("flat", sa.Boolean, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
    )
    op.create_table(
        "paper_accounts",
        sa.Column("run", sa.String(64), sa.ForeignKey("paper_runs.name"), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("paper_accounts")
    op.drop_table("paper_bars")
