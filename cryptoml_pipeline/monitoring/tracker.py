"""ModelPerformanceTracker (spec "Model Performance Tracking"), backed by the database.

Every prediction of the deployed model is stored with its confidence; the realised outcome (the
5-class label and forward return) is filled in only once the horizon has passed
(``due_at = timestamp + (horizon + 1) bars``: the label's close is known at the end of bar
``t + horizon``). Rolling metrics cover the spec's list: accuracy, precision, recall, Sharpe,
max drawdown, win rate, average return per trade.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Engine

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.metrics import accuracy_windows
from cryptoml_pipeline.execution.decisions import bars_per_year
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS
from cryptoml_pipeline.registry.schema import predictions
from cryptoml_pipeline.timing import timeframe_to_timedelta

logger = logging.getLogger(__name__)

PREDICTION_INPUT = ("timestamp", "symbol", "pred_class", "signal", "confidence")
METRIC_NAMES = (
    "accuracy",
    "directional_accuracy",
    "precision",
    "recall",
    "win_rate",
    "avg_return_per_trade",
    "sharpe_ratio",
    "max_drawdown",
    "signal_frequency",
    "mean_confidence",
)


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


class ModelPerformanceTracker:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_predictions(
        self,
        model_version: str,
        frame: pd.DataFrame,
        *,
        horizon: int,
        timeframe: str,
        now: datetime | None = None,
    ) -> int:
        """Store predictions (idempotent per model, symbol and bar); returns rows inserted."""
        missing = [c for c in PREDICTION_INPUT if c not in frame.columns]
        if missing:
            raise InputError(f"predictions lack columns {missing}")
        if frame.empty:
            return 0
        bar = timeframe_to_timedelta(timeframe)
        data = frame.loc[:, list(PREDICTION_INPUT)].copy()
        data["timestamp"] = _utc(data["timestamp"])
        data["symbol"] = data["symbol"].astype(str)
        probs = [c for c in PROB_COLUMNS if c in frame.columns]
        data["p_max"] = frame[probs].max(axis=1).to_numpy() if probs else np.nan
        if not np.isfinite(data["confidence"].to_numpy(dtype=float)).all():
            raise InputError("predictions hold non-finite confidences")
        existing = self._existing_keys(model_version, data["timestamp"].min())
        keys = pd.MultiIndex.from_arrays([data["symbol"], data["timestamp"]])
        data = data.loc[~keys.isin(existing)].drop_duplicates(["symbol", "timestamp"])
        if data.empty:
            return 0
        stamp = now or datetime.now(UTC)
        rows = [
            {
                "model_version": model_version,
                "symbol": r.symbol,
                "timestamp": r.timestamp.to_pydatetime(),
                "due_at": (r.timestamp + (horizon + 1) * bar).to_pydatetime(),
                "pred_class": int(r.pred_class),
                "signal": int(r.signal),
                "confidence": float(r.confidence),
                "p_max": float(r.p_max) if np.isfinite(r.p_max) else float(r.confidence),
                "recorded_at": stamp,
            }
            for r in data.itertuples(index=False)
        ]
        with self.engine.begin() as conn:
            conn.execute(predictions.insert(), rows)
        return len(rows)

    def _existing_keys(self, model_version: str, since: pd.Timestamp) -> pd.MultiIndex:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(predictions.c.symbol, predictions.c.timestamp)
                .where(predictions.c.model_version == model_version)
                .where(predictions.c.timestamp >= since.to_pydatetime())
            ).all()
        if not rows:
            return pd.MultiIndex.from_arrays([[], []])
        symbols, stamps = zip(*rows, strict=True)
        return pd.MultiIndex.from_arrays([list(symbols), _utc(pd.Series(stamps))])

    def fill_outcomes(self, labels: pd.DataFrame, *, now: datetime | None = None) -> int:
        """Fill realised outcomes of predictions whose horizon has passed by ``now`` from a
        label table (timestamp, symbol, label, forward_return); returns rows updated."""
        missing = [c for c in ("timestamp", "symbol", "label", "forward_return") if c not in labels]
        if missing:
            raise InputError(f"label table lacks columns {missing}")
        cutoff = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            pending = pd.DataFrame(
                conn.execute(
                    sa.select(
                        predictions.c.id,
                        predictions.c.symbol,
                        predictions.c.timestamp,
                        predictions.c.pred_class,
                    )
                    .where(predictions.c.outcome.is_(None))
                    .where(predictions.c.due_at <= cutoff)
                ).all(),
                columns=["id", "symbol", "timestamp", "pred_class"],
            )
        if pending.empty:
            return 0
        pending["timestamp"] = _utc(pending["timestamp"])
        lab = labels.loc[:, ["timestamp", "symbol", "label", "forward_return"]].copy()
        lab["timestamp"] = _utc(lab["timestamp"])
        lab["symbol"] = lab["symbol"].astype(str)
        merged = pending.merge(lab, on=["symbol", "timestamp"], how="inner")
        merged = merged[np.isfinite(merged["label"].to_numpy(dtype=float))]
        if merged.empty:
            return 0
        outcome = merged["label"].astype(int)
        params = [
            {"pid": int(i), "o": int(o), "r": float(r), "c": int(o == pc - 2)}
            for i, o, r, pc in zip(
                merged["id"], outcome, merged["forward_return"], merged["pred_class"], strict=True
            )
        ]
        stmt = (
            predictions.update()
            .where(predictions.c.id == sa.bindparam("pid"))
            .values(
                outcome=sa.bindparam("o"),
                forward_return=sa.bindparam("r"),
                correct=sa.bindparam("c"),
            )
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, params)
        return len(params)

    def frame(self, model_version: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Stored predictions (oldest first), optionally for one model version / the latest N."""
        query = sa.select(predictions)
        if model_version is not None:
            query = query.where(predictions.c.model_version == model_version)
        query = query.order_by(predictions.c.timestamp.desc(), predictions.c.symbol)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = pd.DataFrame(rows, columns=[c.name for c in predictions.columns])
        for col in ("timestamp", "due_at", "recorded_at"):
            out[col] = _utc(out[col])
        return out.iloc[::-1].reset_index(drop=True)

    def accuracy_windows(
        self, model_version: str | None, recent: int = 50, prior: int = 150
    ) -> tuple[float | None, float | None]:
        """Spec windows over resolved predictions in time order (last ``recent`` vs ``prior``)."""
        frame = self.frame(model_version)
        resolved = frame[frame["correct"].notna()]
        return accuracy_windows(resolved["correct"].to_numpy(dtype=float), recent, prior)


def rolling_metrics(
    frame: pd.DataFrame, *, window: int = 100, timeframe: str = "1h", horizon: int = 5
) -> pd.DataFrame:
    """Rolling metrics over the last ``window`` resolved predictions, one row per prediction.

    A "trade" is a prediction with ``signal != 0``; its return is ``sign(signal) x forward
    return`` (gross, per horizon). precision = share of trades whose outcome has the signal's
    sign; recall = share of non-flat outcomes that a trade of the same sign called.
    """
    if window <= 0:
        raise InputError(f"window must be positive, got {window}")
    res = frame[frame["correct"].notna()].sort_values(["timestamp", "symbol"])
    if res.empty:
        return pd.DataFrame(columns=["timestamp", *METRIC_NAMES])
    sig = np.sign(res["signal"].to_numpy(dtype=float))
    out_sign = np.sign(res["outcome"].to_numpy(dtype=float))
    ret = sig * res["forward_return"].to_numpy(dtype=float)
    traded = sig != 0
    moving = out_sign != 0
    df = pd.DataFrame(
        {
            "correct": res["correct"].to_numpy(dtype=float),
            "dir_ok": np.where(moving | traded, (sig == out_sign).astype(float), np.nan),
            "prec_hit": np.where(traded, (sig == out_sign).astype(float), np.nan),
            "recall_hit": np.where(moving, (sig == out_sign).astype(float), np.nan),
            "win": np.where(traded, (ret > 0).astype(float), np.nan),
            "trade_ret": np.where(traded, ret, np.nan),
            "ret": ret,
            "traded": traded.astype(float),
            "confidence": res["confidence"].to_numpy(dtype=float),
        }
    )
    roll = df.rolling(window, min_periods=1)
    mean = roll.mean()
    std = df["ret"].rolling(window, min_periods=2).std()
    periods = bars_per_year(timeframe) / max(horizon, 1)
    equity = np.cumsum(ret)
    drawdown = (
        pd.Series(equity)
        .rolling(window, min_periods=1)
        .apply(lambda x: float(np.max(np.maximum.accumulate(np.r_[0.0, x])[1:] - x)), raw=True)
    )
    result = pd.DataFrame(
        {
            "timestamp": res["timestamp"].to_numpy(),
            "accuracy": mean["correct"],
            "directional_accuracy": mean["dir_ok"],
            "precision": mean["prec_hit"],
            "recall": mean["recall_hit"],
            "win_rate": mean["win"],
            "avg_return_per_trade": mean["trade_ret"],
            "sharpe_ratio": (mean["ret"] / std.replace(0, np.nan)) * np.sqrt(periods),
            "max_drawdown": drawdown.to_numpy(),
            "signal_frequency": mean["traded"],
            "mean_confidence": mean["confidence"],
        }
    )
    return result.reset_index(drop=True)


def model_age_days(deployed_at: datetime | None, now: datetime | None = None) -> float | None:
    if deployed_at is None:
        return None
    return ((now or datetime.now(UTC)) - deployed_at).total_seconds() / 86400.0
