"""Initial schema: model registry, prediction tracker, paper trading.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(64), nullable=False, unique=True),
        sa.Column("stage", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("deployed_at", TS),
        sa.Column("artifact_dir", sa.Text, nullable=False),
        sa.Column("checksums", sa.JSON, nullable=False),
        sa.Column("data_start", TS),
        sa.Column("data_end", TS),
        sa.Column("timeframe", sa.String(16)),
        sa.Column("symbols", sa.JSON),
        sa.Column("feature_hash", sa.String(64), nullable=False),
        sa.Column("feature_cols", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "version", sa.String(64), sa.ForeignKey("model_versions.version"), nullable=False
        ),
        sa.Column("at", TS, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("model_version", sa.String(64), nullable=False, index=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timestamp", TS, nullable=False, index=True),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("pred_class", sa.Integer, nullable=False),
        sa.Column("signal", sa.Integer, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("p_max", sa.Float, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("outcome", sa.Integer),
        sa.Column("forward_return", sa.Float),
        sa.Column("correct", sa.Integer),
        sa.UniqueConstraint("model_version", "symbol", "timestamp", name="uq_prediction"),
    )
    op.create_table(
        "paper_runs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_bar", TS),
        sa.Column("cash", sa.Float, nullable=False),
        sa.Column("initial_equity", sa.Float, nullable=False),
    )
    op.create_table(
        "paper_orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run", sa.String(64), sa.ForeignKey("paper_runs.name"), nullable=False),
        sa.Column("client_order_id", sa.String(160), nullable=False, unique=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("bar", TS, nullable=False),
        sa.Column("side", sa.Integer, nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "paper_fills",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "order_id", sa.Integer, sa.ForeignKey("paper_orders.id"), nullable=False, unique=True
        ),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
        sa.Column("fee", sa.Float, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_table(
        "paper_positions",
        sa.Column("run", sa.String(64), sa.ForeignKey("paper_runs.name"), primary_key=True),
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("direction", sa.Integer, nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
        sa.Column("entry_price", sa.Float, nullable=False),
        sa.Column("entry_bar", TS, nullable=False),
        sa.Column("review_bar", TS, nullable=False),
        sa.Column("stop", sa.Float, nullable=False),
        sa.Column("risk_amount", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "paper_positions",
        "paper_fills",
        "paper_orders",
        "paper_runs",
        "predictions",
        "model_events",
        "model_versions",
    ):
        op.drop_table(table)
