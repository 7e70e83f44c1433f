"""The real-time signal: features on the universe's causal tail, the served model's prediction
for each symbol's last closed bar, and the backtest's decision on it.

The tail is :func:`serving.market.tail_span` of every universe member (gap filling as in the
run's ``ohlcv`` asset when ``ingest.max_fill_bars`` asks for it). The features are the rows of
``features.build.compute_features`` on that tail that the model reads — each requested symbol
from ``history_rows`` bars before its bar on — computed for those rows only
(:func:`signal_table`, :mod:`.fast_features`; equal to :func:`tail_features`' rows to 1e-9); the
prediction is the served model's on them with the values its zoo model's ``predict_rows`` gives
(the one prediction schema; :func:`forecast_rows` evaluates a model with an array path —
``predict_arrays``: LightGBM — on the rows' arrays, equal to ``predict_rows`` exactly:
``test_signal_fast_prediction.py``), so the signal equals the
run's own prediction for the bar up to the declared warm-up tolerance of recursive smoothers
(``features.warmup_tolerance``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.execution.decisions import annualise_volatility
from cryptoml_pipeline.features.build import compute_features
from cryptoml_pipeline.live.decision import decide
from cryptoml_pipeline.live.fast_features import SignalRows, signal_rows
from cryptoml_pipeline.live.loader import ServedModel
from cryptoml_pipeline.live.market_tail import check_symbols, closed_bars, tail_span
from cryptoml_pipeline.market.repair import repair_candles
from cryptoml_pipeline.market.schemas import CANDLE_COLUMNS
from cryptoml_pipeline.market.source import SPOT_CLOSE, with_spot_close
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS, signal_from_expected
from cryptoml_pipeline.timing import timeframe_to_timedelta


def _ns(values: pd.Series) -> np.ndarray:
    return np.asarray(values.astype("datetime64[ns, UTC]").array.asi8)


def signal_tail(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    bars: dict[str, pd.Timestamp],
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The repaired universe candles and the funding from the tail's start on."""
    settings = served.settings
    first = min(bars.values()) + timeframe_to_timedelta(served.timeframe) - tail_span(served)
    last = max(bars.values())
    ts = _ns(candles["timestamp"])
    inside = (ts >= first.value) & (ts <= last.value)
    tail = candles if inside.all() else candles.loc[inside]
    ingest = settings.ingest
    if ingest.max_fill_bars:  # the run's ohlcv asset fills short gaps: the same repair here
        repaired, _ = repair_candles(
            tail,
            served.timeframe,
            source="signal candles",
            max_fill_bars=ingest.max_fill_bars,
            outlier_k=ingest.outlier_k_sigma,
            outlier_window=ingest.outlier_window,
        )
        tail = repaired[[*CANDLE_COLUMNS, "is_filled"]]
        if SPOT_CLOSE in candles.columns:
            # the spot closes ride on the rows they came with: a bar the repair filled has none
            # here, where the batch basis could find the stored spot bar (max_fill_bars > 0)
            spot = candles.loc[candles[SPOT_CLOSE].notna(), ["timestamp", "symbol", SPOT_CLOSE]]
            tail = with_spot_close(tail, spot.rename(columns={SPOT_CLOSE: "close"}))
    # otherwise the repair changes no value: store reads and the synthetic market are validated
    # candles already, and compute_features orders rows and refuses duplicates itself
    interval = pd.Timedelta(hours=settings.data.funding_interval_hours)
    funding_tail = None
    if funding is not None:
        fts = _ns(funding["timestamp"])
        inside = (fts >= (first - interval).value) & (fts <= last.value)
        funding_tail = funding if inside.all() else funding.loc[inside]
    return tail, funding_tail


def tail_features(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    bars: dict[str, pd.Timestamp],
) -> pd.DataFrame:
    """``compute_features`` of the repaired universe candles from the tail's start on: the batch
    pipeline's whole table, which :func:`signal_table` reproduces at the rows the signal reads."""
    tail, funding_tail = signal_tail(served, candles, funding, bars)
    return compute_features(
        tail, funding_tail, served.settings.features, timeframe=served.timeframe
    )


def signal_table(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    bars: dict[str, pd.Timestamp],
    symbols: Sequence[str],
) -> pd.DataFrame:
    """The rows of :func:`tail_features` the signal reads (each symbol from ``history_rows``
    bars before its bar on), computed for those rows only (:mod:`.fast_features`)."""
    return signal_arrays(served, candles, funding, bars, symbols).frame()


def signal_arrays(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    bars: dict[str, pd.Timestamp],
    symbols: Sequence[str],
) -> SignalRows:
    """:func:`signal_table` as arrays (:class:`~.fast_features.SignalRows`)."""
    tail, funding_tail = signal_tail(served, candles, funding, bars)
    return signal_rows(
        tail,
        funding_tail,
        served.settings.features,
        served.timeframe,
        bars,
        symbols,
        served.history_rows,
    )


def forecast_rows(
    served: ServedModel, rows: SignalRows, bars: dict[str, pd.Timestamp], symbols: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per symbol with a usable row at its bar: the served model's prediction of that row —
    ``signal``, ``confidence``, ``expected_return`` and ``probabilities`` as the zoo model's
    ``predict_rows`` gives them (the prediction schema's values: confidence clipped to [0, 1],
    the signal by ``signal_from_expected``). A model with an array path (``predict_arrays``:
    LightGBM, one thread) is evaluated on the rows' arrays (no DataFrame); other models through
    ``predict_rows``."""
    missing = [c for c in served.model.feature_cols if c not in rows.columns]
    if missing:  # e.g. open interest / trades / sentiment sources: not read by the signal yet
        raise InputError(f"the signal's features lack the model's columns {missing}")
    at = {s: np.flatnonzero((rows.symbols == s) & (rows.stamps == bars[s].value)) for s in symbols}
    mask = np.zeros(len(rows.stamps), dtype=bool)
    for idx in at.values():
        mask[idx] = True
    model, zoo, settings, tf = served.model, served.zoo, served.settings, served.timeframe
    fast = zoo.predict_arrays(model, rows.columns, rows.stamps, rows.symbols, mask, tf)
    if fast is not None:
        picked, er, conf, probs = fast
        conf = np.clip(conf, 0.0, 1.0)
        sig = signal_from_expected(er, conf)
        p = np.full((len(picked), len(PROB_COLUMNS)), np.nan) if probs is None else probs
        by_row = {int(r): i for i, r in enumerate(picked)}
        out = {}
        for symbol, idx in at.items():
            if len(idx) and int(idx[0]) in by_row:
                i = by_row[int(idx[0])]
                out[symbol] = {
                    "row": int(idx[0]),
                    "signal": int(sig[i]),
                    "confidence": float(conf[i]),
                    "expected_return": float(er[i]),
                    "probabilities": dict(zip(PROB_COLUMNS, map(float, p[i]), strict=True)),
                }
        return out
    table = rows.frame()
    preds = zoo.predict_rows(model, table, None, mask, settings, tf, tag="signal")
    out = {}
    for i, symbol in enumerate(preds["symbol"].astype(str)):
        pred = preds.iloc[i]
        out[symbol] = {
            "row": int(at[symbol][0]),
            "signal": int(pred["signal"]),
            "confidence": float(pred["confidence"]),
            "expected_return": float(pred["expected_return"]),
            "probabilities": {c: float(pred[c]) for c in PROB_COLUMNS},
        }
    return out


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def signals(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    symbols: Sequence[str] = (),
    *,
    position: dict[str, int] | None = None,
    equity: float | None = None,
) -> list[dict[str, Any]]:
    """One signal record per symbol (default: every traded symbol), in the given order."""
    symbols = check_symbols(served, symbols)
    bars = closed_bars(served, candles, funding, symbols)
    rows = signal_arrays(served, candles, funding, bars, symbols)
    preds = forecast_rows(served, rows, bars, symbols)
    return signal_records(served, rows, preds, bars, symbols, position=position, equity=equity)


def signal_records(
    served: ServedModel,
    rows: SignalRows,
    preds: dict[str, dict[str, Any]],
    bars: dict[str, pd.Timestamp],
    symbols: Sequence[str],
    *,
    position: dict[str, int] | None = None,
    equity: float | None = None,
    day_open_equity: float | None = None,
    day_low_equity: float | None = None,
) -> list[dict[str, Any]]:
    """The signal records (``cryptoml signal``'s JSON) of :func:`forecast_rows`' predictions
    (``day_open_equity`` / ``day_low_equity``: the account's UTC day for the daily loss limit,
    :func:`.decision.decide`; the live service passes its paper account's)."""
    settings, tf = served.settings, served.timeframe
    vol = rows.columns[f"rv_{settings.risk.volatility_window}"]
    atr = rows.columns[f"atr_pct_{settings.risk.atr_period}"]
    bar = timeframe_to_timedelta(tf)
    out = []
    for symbol in symbols:
        if symbol not in preds:
            raise InputError(
                f"{symbol}: the model's features are undefined at {bars[symbol]} "
                "(too little history before it?)"
            )
        p = preds[symbol]
        volatility = float(annualise_volatility(np.array([vol[p["row"]]]), tf)[0])
        atr_pct = float(atr[p["row"]])
        decision = decide(
            signal=p["signal"],
            confidence=p["confidence"],
            expected_return=p["expected_return"],
            volatility=volatility,
            atr_pct=atr_pct,
            settings=settings,
            timeframe=tf,
            position=(position or {}).get(symbol, 0),
            equity=equity,
            day_open_equity=day_open_equity,
            day_low_equity=day_low_equity,
        )
        out.append(
            {
                "symbol": symbol,
                "bar_open": bars[symbol].isoformat(),
                "fills_at": (bars[symbol] + bar).isoformat(),
                "timeframe": tf,
                "signal": p["signal"],
                "confidence": p["confidence"],
                "expected_return": p["expected_return"],
                "probabilities": {c: _number(v) for c, v in p["probabilities"].items()},
                "decision": {k: v for k, v in decision.as_dict().items()},
                "volatility": _number(volatility),
                "atr_pct": _number(atr_pct),
                "model": {
                    "version": served.version,
                    "model_class": served.manifest.get("model_class", "CryptoTransformer"),
                    "deployed": served.deployed,
                },
                "data": {
                    "source": served.manifest["data"].get("source"),
                    "synthetic": served.synthetic,
                },
            }
        )
    return out
