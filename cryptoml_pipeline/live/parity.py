"""``cryptoml parity``: a paper / live account's bars replayed through the backtest.

From the account's record (``paper_accounts``: data directory, traded symbols, universe,
timeframe, the served model; ``paper_bars``: the processed bars and, per bar, the model whose
decisions filled there) the BATCH pipeline is run again: the market of the account's window
(with the run's feature warm-up before it) through ``features.build_features``, each bar's
model's predictions (``predict_rows``), the backtest's decisions
(:func:`.paper_adapter.decisions`) and the backtest's simulator over the account's bars
(:func:`.paper_adapter.ledger_at`: no end-of-data close; a killed account is compared with the
backtest that ends at its last bar, :func:`.paper_adapter.close_out`). The fills and the equity
at every bar close are compared with what the account recorded.

Equal = the same fills (symbol, bar, side, reason; quantity, price and fee to 1e-9 relative)
and ``equity_max_abs_diff <= 1e-6 x initial equity``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.live import paper_adapter as core
from cryptoml_pipeline.live.loader import ServedModel, load_served, served_from
from cryptoml_pipeline.live.market_tail import needs_spot
from cryptoml_pipeline.live.paper import (
    account_bars,
    account_config,
    equity_marks,
    orders_frame,
    run_state,
)
from cryptoml_pipeline.market.source import load_market_data, perpetual_spot_closes
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.registry.candidates import load_verified
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline.timing import timeframe_to_timedelta

EQUITY_TOL = 1e-6  # x initial equity
FILL_RTOL = 1e-9


def _model(output_dir: Path, registry: ModelRegistry, version: str) -> ServedModel:
    try:
        served = load_served(output_dir)
        if served.version == version:
            return served
    except InputError:
        pass
    model = load_verified(registry, version)
    return served_from(model, deployed=False, reason=None)


def backtest_of_account(output_dir: Path, run_name: str) -> dict[str, Any]:
    """The backtest's fills and equity marks over the account's bars (module docstring)."""
    engine = open_database(output_dir)
    config = account_config(engine, run_name)
    if config is None:
        raise InputError(f"no paper/live account {run_name!r} in {output_dir}")
    lines = account_bars(engine, run_name)
    if not lines:
        raise InputError(f"account {run_name!r} has processed no bar yet")
    registry = ModelRegistry(engine)
    versions = list(dict.fromkeys(ln["model"] for ln in lines))
    models = {v: _model(output_dir, registry, v) for v in versions}
    first = models[versions[0]]
    tf, settings = first.timeframe, first.settings
    step = timeframe_to_timedelta(tf)
    symbols = list(config["symbols"])
    bars = pd.DatetimeIndex([pd.Timestamp(ln["bar"]) for ln in lines])
    start, end = bars[0], bars[-1] + step
    store = ParquetStore(Path(config["data_dir"]))
    market = load_market_data(
        store,
        list(first.symbols),
        tf,
        start - step,
        end,
        history=pd.Timedelta(days=settings.data.history_days),
        funding_interval_hours=settings.data.funding_interval_hours,
        universe=list(first.universe),
    )
    decisions = []
    for version, served in models.items():
        stamps = pd.DatetimeIndex(
            [pd.Timestamp(ln["stamp"]) for ln in lines if ln["model"] == version]
        )
        spot = (  # the pooled basis: the stored spot closes, as the run's feature table
            perpetual_spot_closes(
                store,
                list(first.symbols),
                tf,
                market.candles["timestamp"].min(),
                end,
            )
            if needs_spot(served)
            else None
        )
        table = build_features(
            market.candles, market.funding, served.settings.features, timeframe=tf, spot=spot
        ).table
        ts = pd.to_datetime(table["timestamp"], utc=True)
        mask = (ts.isin(stamps) & table["symbol"].astype(str).isin(symbols)).to_numpy()
        if not mask.any():
            continue
        preds = served.zoo.predict_rows(
            served.model, table, None, mask, served.settings, tf, tag="parity"
        )
        decisions.append(core.decisions(preds, table, timeframe=tf, settings=served.settings))
    decision_rows = pd.concat(decisions, ignore_index=True)
    candles = market.candles.assign(timestamp=pd.to_datetime(market.candles["timestamp"], utc=True))
    candles = candles[candles["symbol"].isin(symbols) & candles["timestamp"].isin(bars)]
    candles = candles[["timestamp", "symbol", *core.OHLC]].reset_index(drop=True)
    funding = market.funding
    funding = funding.assign(timestamp=pd.to_datetime(funding["timestamp"], utc=True))
    funding = funding[
        funding["symbol"].isin(symbols)
        & (funding["timestamp"] >= start)
        & (funding["timestamp"] < end)
    ][["timestamp", "symbol", "funding_rate"]].reset_index(drop=True)
    state = run_state(engine, run_name) or {}
    initial = float(state.get("initial_equity") or settings.paper.initial_equity)
    options = core.simulator_options(settings, tf, initial_equity=initial)
    if config.get("killed_at"):
        result = core.close_out(candles, funding, decision_rows, options=options)
        fills = core.trade_fills(result.trades, options["costs"], open_after=None)
        equity = result.equity
    else:
        ledger = core.ledger_at(candles, funding, decision_rows, options=options)
        fills, equity = ledger.fills, ledger.equity
    recorded_decisions = {
        (pd.Timestamp(ln["stamp"]), s): v for ln in lines for s, v in ln["decisions"].items()
    }
    return {
        "engine": engine,
        "bars": bars,
        "fills": fills,
        "equity": equity,
        "decisions": decision_rows,
        "recorded_decisions": recorded_decisions,
        "initial_equity": initial,
        "killed": bool(config.get("killed_at")),
    }


def _canonical(fills: pd.DataFrame) -> pd.DataFrame:
    out = fills[core.FILL_COLUMNS].copy()
    out["bar"] = pd.to_datetime(out["bar"], utc=True)
    out["side"] = out["side"].astype(np.int64)
    out["symbol"] = out["symbol"].astype(str)
    out["reason"] = out["reason"].astype(str)
    return out.sort_values(["bar", "symbol"], kind="stable").reset_index(drop=True)


def _why(bt: dict[str, Any], bar: pd.Timestamp, symbol: str, step: pd.Timedelta) -> str:
    """What differs in the decision that filled at ``bar`` (or a note that it is the same)."""
    stamp = bar - step
    mine = bt["recorded_decisions"].get((stamp, symbol))
    d = bt["decisions"]
    row = d[(pd.to_datetime(d["timestamp"], utc=True) == stamp) & (d["symbol"] == symbol)]
    theirs = None if row.empty else [float(row.iloc[0][c]) for c in core.DECISION_FIELDS]
    if mine is None and theirs is None:
        return "no decision filled there in either; an earlier difference in the account"
    if mine is None or theirs is None:
        return f"decision at {stamp.isoformat()}: account {mine}, backtest {theirs}"
    diffs = [
        f"{name} {a!r} vs {b!r}"
        for name, a, b in zip(core.DECISION_FIELDS, mine, theirs, strict=True)
        if not (a == b or (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-9 * max(1, abs(b)))
    ]
    if diffs:
        return f"decision at {stamp.isoformat()} (account vs backtest): " + "; ".join(diffs)
    return "same decision; the account state differed before (an earlier fill or funding)"


def parity(output_dir: Path, run_name: str) -> tuple[dict[str, Any], bool]:
    """``cryptoml parity``'s JSON object (module docstring) and whether the account equals the
    backtest."""
    bt = backtest_of_account(Path(output_dir), run_name)
    engine = bt["engine"]
    step = bt["bars"][1] - bt["bars"][0] if len(bt["bars"]) > 1 else pd.Timedelta(hours=1)
    mine = _canonical(orders_frame(engine, run_name))
    theirs = _canonical(bt["fills"])
    first = None
    n = max(len(mine), len(theirs))
    for i in range(n):
        a = mine.iloc[i] if i < len(mine) else None
        b = theirs.iloc[i] if i < len(theirs) else None
        if a is None or b is None:
            row = b if a is None else a
            what = "fill missing in the account" if a is None else "fill not in the backtest"
            first = {"bar": row["bar"], "symbol": row["symbol"], "what": what}
            break
        keys = ("symbol", "bar", "side", "reason")
        if any(a[k] != b[k] for k in keys):
            bar = min(a["bar"], b["bar"])
            symbol = a["symbol"] if a["bar"] <= b["bar"] else b["symbol"]
            first = {
                "bar": bar,
                "symbol": symbol,
                "what": f"fill {dict((k, str(a[k])) for k in keys)} vs backtest "
                f"{dict((k, str(b[k])) for k in keys)}",
            }
            break
        for col in ("quantity", "price", "fee"):
            x, y = float(a[col]), float(b[col])
            if abs(x - y) > FILL_RTOL * max(abs(y), 1e-12):
                first = {
                    "bar": a["bar"],
                    "symbol": a["symbol"],
                    "what": f"{a['reason']} fill {col} {x!r} vs backtest {y!r}",
                }
                break
        if first:
            break
    marks = equity_marks(engine, run_name)
    if bt["killed"] and len(marks):  # flattened at the last close: its cash is the final mark
        marks.iloc[-1] = float((run_state(engine, run_name) or {})["cash"])
    bt_equity = bt["equity"].reindex(marks.index)
    diff = (marks - bt_equity).abs()
    equity_max = float(diff.max()) if len(diff) and diff.notna().all() else None
    tol = EQUITY_TOL * bt["initial_equity"]
    if first is None and (equity_max is None or equity_max > tol):
        at = diff.idxmax() if diff.notna().all() else marks.index[int(np.argmax(diff.isna()))]
        first = {"bar": at, "symbol": None, "what": "equity mark differs"}
    if first is not None:
        first["why"] = (
            _why(bt, pd.Timestamp(first["bar"]), first["symbol"], step)
            if first.get("symbol")
            else "funding or marks differ with identical fills"
        )
        first["bar"] = pd.Timestamp(first["bar"]).isoformat()
    trades_equal = first is None or first["what"] == "equity mark differs"
    result = {
        "bars": len(marks),
        "trades_equal": bool(trades_equal and len(mine) == len(theirs)),
        "equity_max_abs_diff": equity_max,
        "first_divergence": first,
    }
    return result, bool(result["trades_equal"] and equity_max is not None and equity_max <= tol)
