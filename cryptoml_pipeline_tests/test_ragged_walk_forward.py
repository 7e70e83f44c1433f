"""The multi-year, ragged walk-forward (issue 19, milestone 3): the default window is all the
data the traded symbols have, a perpetual whose data begin later joins there (nothing filled),
expanding folds train on every purged row from each member's first bar, and training rows are
thinned by ``training.row_stride``. Small parquet stores of seeded random walks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.evaluation.walk_forward import evaluate_walk_forward
from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.market import ParquetStore, load_market_data, resolve_window
from cryptoml_pipeline.market.source import symbol_starts
from cryptoml_pipeline.modeling.folds import (
    fold_row_masks,
    stride_mask,
    strided,
    walk_forward_plan,
)
from cryptoml_pipeline.modeling.gbm import predict_gbm_fold, train_gbm_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.settings import PipelineSettings, WalkForwardConfig, profile_settings

END = pd.Timestamp("2024-05-01", tz="UTC")
# AAA trades from January; BBB's perpetual (and its funding) begin six weeks later; CCC is a
# spot-only universe member with a longer history than either
FIRST = {
    "AAA/USDT:USDT": pd.Timestamp("2024-01-01", tz="UTC"),
    "BBB/USDT:USDT": pd.Timestamp("2024-02-15", tz="UTC"),
    "CCC/USDT": pd.Timestamp("2023-11-01", tz="UTC"),
}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _walk(first: pd.Timestamp, seed: int) -> pd.DataFrame:
    stamps = pd.date_range(first, END - pd.Timedelta(hours=1), freq="1h", tz="UTC")
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(stamps))))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.003, len(stamps))) * close
    return pd.DataFrame(
        {
            "timestamp": stamps,
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(10, 100, len(stamps)),
        }
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ParquetStore:
    root: Path = tmp_path_factory.mktemp("ragged")
    store = ParquetStore(root)
    for i, (symbol, first) in enumerate(FIRST.items()):
        store.write_candles(_walk(first, seed=i), symbol, "1h")
        if ":" in symbol:
            settlements = pd.date_range(first, END - pd.Timedelta(hours=8), freq="8h", tz="UTC")
            funding = pd.DataFrame({"timestamp": settlements, "funding_rate": 1e-4})
            store.write_funding(funding, symbol)
    return store


TRADED = ["AAA/USDT", "BBB/USDT"]


def test_default_window_starts_at_the_earliest_traded_symbol(store: ParquetStore) -> None:
    start, end = resolve_window(store, TRADED, "1h", None, None, None)
    assert (start, end) == (FIRST["AAA/USDT:USDT"], END)  # not BBB's later first bar
    # lookback_days is still a setting (never before the earliest first bar)
    assert resolve_window(store, TRADED, "1h", None, None, 30) == (END - pd.Timedelta(days=30), END)
    assert resolve_window(store, TRADED, "1h", None, None, 5000)[0] == FIRST["AAA/USDT:USDT"]
    starts = symbol_starts(store, TRADED, "1h", start)
    assert starts == {"AAA/USDT": FIRST["AAA/USDT:USDT"], "BBB/USDT": FIRST["BBB/USDT:USDT"]}


def test_a_later_perpetual_joins_at_its_first_bar_with_nothing_filled(
    store: ParquetStore,
) -> None:
    start, end = resolve_window(store, TRADED, "1h", None, None, None)
    data = load_market_data(store, TRADED, "1h", start, end, history=None, universe=["CCC/USDT"])
    candles = data.candles
    first = candles.groupby("symbol")["timestamp"].min()
    assert first["BBB/USDT"] == FIRST["BBB/USDT:USDT"]
    # all history: the spot member's bars before the window come along (training history)
    assert first["CCC/USDT"] == FIRST["CCC/USDT"] < start
    bbb = candles[candles["symbol"] == "BBB/USDT"]
    # one row per stored bar, none before its first one, none invented
    assert len(bbb) == len(store.read_candles("BBB/USDT:USDT", "1h", start, end))
    assert bbb["timestamp"].is_unique
    assert (
        data.funding.loc[data.funding["symbol"] == "BBB/USDT", "timestamp"].min()
        == (FIRST["BBB/USDT:USDT"])
    )
    assert data.symbol_starts() == {
        "AAA/USDT": FIRST["AAA/USDT:USDT"],
        "BBB/USDT": FIRST["BBB/USDT:USDT"],
    }


def test_expanding_folds_train_on_every_purged_row_from_each_members_first_bar() -> None:
    config = WalkForwardConfig(train_days=30, test_days=10, step_days=10)
    assert config.expanding  # the default
    start = utc("2024-01-01")
    origin = FIRST["CCC/USDT"]  # the first loaded bar (training_history_days=None)
    folds = walk_forward_plan(start, END, config, training_history_days=None, train_from=origin)
    # the first test window follows a first training period inside the window
    assert folds[0].test_start >= start + pd.Timedelta(days=30)
    assert folds[0].test_start - pd.Timedelta(days=10) < start + pd.Timedelta(days=30)
    assert all(f.train_start == origin for f in folds)
    # the validation slice stays the rolling fold's (20 % of train_days): the fit slice grows
    assert all(f.test_start - f.val_start == pd.Timedelta(days=6) for f in folds)
    # a given history: the origin is start - N days; rolling folds keep train_days
    assert walk_forward_plan(start, END, config, training_history_days=10)[0].train_start == (
        start - pd.Timedelta(days=10)
    )
    rolling = config.model_copy(update={"expanding": False})
    assert all(
        f.test_start - f.train_start == pd.Timedelta(days=30)
        for f in walk_forward_plan(
            start, END, rolling, training_history_days=None, train_from=origin
        )
    )
    # rows of two members with different first bars: every row before the purge is a fit row
    stamps = {
        s: pd.date_range(first, END, freq="1h", inclusive="left") for s, first in FIRST.items()
    }
    frame = pd.concat(
        [pd.DataFrame({"timestamp": t, "symbol": s}) for s, t in stamps.items()], ignore_index=True
    )
    fold, reach = folds[-1], 9
    masks = fold_row_masks(frame["timestamp"], fold, horizon=reach, timeframe="1h", embargo_bars=0)
    ts = frame["timestamp"]
    expected_fit = ts + pd.Timedelta(hours=reach) < fold.val_start
    np.testing.assert_array_equal(masks.fit, expected_fit.to_numpy())
    for symbol, first in FIRST.items():
        own = (frame["symbol"] == symbol).to_numpy()
        assert frame.loc[masks.fit & own, "timestamp"].min() == first  # from its first bar


def test_row_stride_keeps_one_row_every_k_bars_per_symbol() -> None:
    rows = []
    for symbol, first in (("A", "2024-01-01 03:00"), ("B", "2024-01-02 00:00")):
        t = pd.date_range(utc(first), periods=50, freq="1h")
        t = t.delete([10, 11])  # a gap: the grid, not the row count, decides
        rows.append(pd.DataFrame({"timestamp": t, "symbol": symbol}))
    frame = pd.concat(rows, ignore_index=True)
    keep = stride_mask(frame["timestamp"], "1h", 4)
    kept = frame[keep]
    for _, grp in kept.groupby("symbol"):
        steps = grp["timestamp"].diff().dropna()
        assert (steps % pd.Timedelta(hours=4) == pd.Timedelta(0)).all()
        assert (steps >= pd.Timedelta(hours=4)).all()
        assert (grp["timestamp"].dt.hour % 4 == 0).all()
    # every 4-bar block of a symbol's bars holds exactly one kept row
    a = frame[frame["symbol"] == "A"].reset_index(drop=True)
    assert stride_mask(a["timestamp"], "1h", 4).sum() == (a["timestamp"].dt.hour % 4 == 0).sum()
    assert stride_mask(frame["timestamp"], "1h", 1).all()
    # fit and validation rows are thinned, test rows never
    fold = walk_forward_plan(
        utc("2024-01-01"), utc("2024-01-05"), WalkForwardConfig(train_days=2, test_days=1)
    )[-1]
    masks = fold_row_masks(frame["timestamp"], fold, horizon=1, timeframe="1h", embargo_bars=0)
    thin = strided(masks, frame["timestamp"], "1h", 4)
    np.testing.assert_array_equal(thin.test, masks.test)
    np.testing.assert_array_equal(thin.fit, masks.fit & keep)
    np.testing.assert_array_equal(thin.val, masks.val & keep)


def _settings(stride: int) -> PipelineSettings:
    base = profile_settings("tiny")
    return base.model_copy(
        update={
            "walk_forward": WalkForwardConfig(train_days=30, test_days=14, step_days=14),
            "training": base.training.model_copy(update={"row_stride": stride}),
            "gbm": base.gbm.model_copy(update={"n_estimators": 20, "min_child_samples": 20}),
            "controls": base.controls.model_copy(update={"random_paths": 5}),
            # no edge filter: the random walks should trade both symbols
            "risk": base.risk.model_copy(update={"edge_cost_multiple": None}),
        }
    )


def test_end_to_end_two_traded_symbols_with_different_start_dates(store: ParquetStore) -> None:
    """Load -> features -> labels -> expanding folds -> pooled LightGBM (strided training rows)
    -> one account backtest: BBB has no prediction, trade or equity before its data begin."""
    settings = _settings(stride=4)
    start, end = resolve_window(store, TRADED, "1h", None, None, None)
    data = load_market_data(store, TRADED, "1h", start, end, history=None, universe=["CCC/USDT"])
    candles = data.candles
    features = build_features(candles, data.funding, settings.features, timeframe="1h").table
    labels = make_labels(candles, settings.target, settings.labels, timeframe="1h")
    folds = walk_forward_plan(
        start,
        end,
        settings.walk_forward,
        timeframe="1h",
        training_history_days=None,
        train_from=candles["timestamp"].min(),
    )
    assert len(folds) >= 3 and folds[0].test_start < FIRST["BBB/USDT:USDT"]
    parts, manifests = [], []
    for fold in folds:
        model = train_gbm_fold(features, labels, fold, settings, "1h")
        manifests.append(model.manifest)
        parts.append(predict_gbm_fold(model, features, labels, fold, settings, "1h", traded=TRADED))
    predictions = pd.concat(parts, ignore_index=True)
    # expanding + all history: the spot member's rows before the window train every fold
    assert all("CCC/USDT" in m["train_symbols"] for m in manifests)
    assert manifests[-1]["n_train_samples"] > manifests[0]["n_train_samples"]
    # one row in four: a stride of 1 trains on about four times as many rows
    dense = train_gbm_fold(features, labels, folds[-1], _settings(stride=1), "1h")
    ratio = dense.manifest["n_train_samples"] / manifests[-1]["n_train_samples"]
    assert 3.5 < ratio < 4.5
    bbb = predictions[predictions["symbol"] == "BBB/USDT"]
    assert len(bbb) and bbb["timestamp"].min() >= FIRST["BBB/USDT:USDT"]
    aaa = predictions[predictions["symbol"] == "AAA/USDT"]
    assert aaa["timestamp"].min() < FIRST["BBB/USDT:USDT"]  # AAA is traded before BBB exists
    evaluation = evaluate_walk_forward(
        candles=candles,
        funding=data.funding,
        features=features,
        predictions=predictions,
        folds=folds,
        settings=settings,
        timeframe="1h",
        labels=labels,
    )
    trades = evaluation.trades
    late = trades[trades["symbol"] == "BBB/USDT"]
    assert len(late) and len(trades) > len(late)  # one account trades whatever is listed
    assert (pd.to_datetime(late["entry_time"], utc=True) > FIRST["BBB/USDT:USDT"]).all()
    assert np.isfinite(evaluation.equity["strategy"]).all()
    assert evaluation.baselines["buy_and_hold"]["n_trades"] == 2  # each symbol, from its start


def test_window_days_is_a_rolling_window_on_the_full_history_test_folds() -> None:
    config = WalkForwardConfig(train_days=30, test_days=10, step_days=10)
    start = utc("2024-01-01")
    origin = FIRST["CCC/USDT"]
    full = walk_forward_plan(start, END, config, training_history_days=None, train_from=origin)
    capped_config = config.model_copy(update={"window_days": 20})
    capped = walk_forward_plan(
        start, END, capped_config, training_history_days=None, train_from=origin
    )
    # the same test windows and validation slices as full history
    assert [(f.test_start, f.test_end, f.val_start) for f in capped] == [
        (f.test_start, f.test_end, f.val_start) for f in full
    ]
    # each fold trains on the last 20 days before its test window (never before the origin)
    for f in capped:
        assert f.train_start == max(origin, f.test_start - pd.Timedelta(days=20))
    # while a plain rolling walk-forward of 20 days would start testing earlier
    rolling = config.model_copy(update={"expanding": False, "train_days": 20})
    assert walk_forward_plan(start, END, rolling)[0].test_start < full[0].test_start


def test_recent_folds_policy_names_the_folds_a_model_skips() -> None:
    from cryptoml_pipeline.modeling.models import ZOO

    config = WalkForwardConfig(train_days=30, test_days=10, step_days=10)
    folds = walk_forward_plan(utc("2024-01-01"), END, config)
    settings = PipelineSettings()
    assert settings.ppo.recent_folds == 4
    ppo, gbm = ZOO["ppo"], ZOO["gbm"]
    reasons = [ppo.skipped_fold(settings, f, len(folds)) for f in folds]
    assert [r is None for r in reasons] == [i >= len(folds) - 4 for i in range(len(folds))]
    assert "ppo.recent_folds = 4" in next(r for r in reasons if r)
    # models without the setting train on every fold; None trains PPO on every fold too
    assert all(gbm.skipped_fold(settings, f, len(folds)) is None for f in folds)
    every = settings.model_copy(
        update={"ppo": settings.ppo.model_copy(update={"recent_folds": None})}
    )
    assert all(ppo.skipped_fold(every, f, len(folds)) is None for f in folds)
