"""Tables of the model-management database (SQLAlchemy Core). Migrations: ``migrations/``.

Timestamps are stored as timezone-aware UTC (``DateTime(timezone=True)``); SQLite stores them as
text and gives them back naive, so readers go through :func:`utc`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

STAGES = ("candidate", "deployed", "retired")

metadata = MetaData()

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(64), nullable=False, unique=True),
    Column("stage", String(16), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deployed_at", DateTime(timezone=True)),
    Column("artifact_dir", Text, nullable=False),
    Column("checksums", JSON, nullable=False),  # file name -> sha256
    Column("data_start", DateTime(timezone=True)),
    Column("data_end", DateTime(timezone=True)),
    Column("timeframe", String(16)),
    Column("symbols", JSON),
    Column("feature_hash", String(64), nullable=False),
    Column("feature_cols", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("code_version", String(64), nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("reason", Text),
)

model_events = Table(
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("event", String(32), nullable=False),
    Column("reason", Text),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("model_version", String(64), nullable=False, index=True),
    Column("symbol", String(32), nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False, index=True),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("pred_class", Integer, nullable=False),
    Column("signal", Integer, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("p_max", Float, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("outcome", Integer),  # realised label -2..2, filled once the horizon passed
    Column("forward_return", Float),
    Column("correct", Integer),
    UniqueConstraint("model_version", "symbol", "timestamp", name="uq_prediction"),
)

paper_runs = Table(
    "paper_runs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("model_version", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_bar", DateTime(timezone=True)),  # the last fully processed bar (the cursor)
    Column("cash", Float, nullable=False),
    Column("initial_equity", Float, nullable=False),
)

paper_orders = Table(
    "paper_orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", String(64), ForeignKey("paper_runs.name"), nullable=False),
    Column("client_order_id", String(160), nullable=False, unique=True),
    Column("symbol", String(32), nullable=False),
    Column("bar", DateTime(timezone=True), nullable=False),
    Column("side", Integer, nullable=False),  # +1 buy, -1 sell
    Column("quantity", Float, nullable=False),
    Column("reason", String(16), nullable=False),  # entry / time / flip / stop / end
    Column("created_at", DateTime(timezone=True), nullable=False),
)

paper_fills = Table(
    "paper_fills",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", Integer, ForeignKey("paper_orders.id"), nullable=False, unique=True),
    Column("price", Float, nullable=False),
    Column("quantity", Float, nullable=False),
    Column("fee", Float, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

paper_positions = Table(
    "paper_positions",
    metadata,
    Column("run", String(64), ForeignKey("paper_runs.name"), primary_key=True),
    Column("symbol", String(32), primary_key=True),
    Column("direction", Integer, nullable=False),
    Column("quantity", Float, nullable=False),
    Column("entry_price", Float, nullable=False),
    Column("entry_bar", DateTime(timezone=True), nullable=False),
    Column("review_bar", DateTime(timezone=True), nullable=False),
    Column("stop", Float, nullable=False),
    Column("risk_amount", Float, nullable=False),
)


# one row per processed bar of a paper / live account, written in the bar's transaction: the
# bar's inputs (candles, the decisions filling at it, funding) as JSON, the equity marked at its
# close, whether the account was flat at that close (a re-simulation window starts after such a
# bar) and the model whose decisions fill at the bar
paper_bars = Table(
    "paper_bars",
    metadata,
    Column("run", String(64), ForeignKey("paper_runs.name"), primary_key=True),
    Column("bar", DateTime(timezone=True), primary_key=True),
    Column("inputs", Text, nullable=False),  # JSON text (NaN allowed)
    Column("equity", Float, nullable=False),
    Column("flat", Boolean, nullable=False),
    Column("model_version", String(64), nullable=False),
)

# how an account was started (``cryptoml parity`` replays from it): mode, data source, window,
# traded symbols, the served model's version
paper_accounts = Table(
    "paper_accounts",
    metadata,
    Column("run", String(64), ForeignKey("paper_runs.name"), primary_key=True),
    Column("config", JSON, nullable=False),
)


def utc(value: datetime | None) -> datetime | None:
    """A stored timestamp as tz-aware UTC (SQLite returns naive datetimes)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
