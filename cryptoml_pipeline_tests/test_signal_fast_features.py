"""The signal's fast feature rows (``serving.fast_features``) equal the batch pipeline's
(``features.build.compute_features``) on a multi-symbol synthetic universe with cross-asset
features: to 1e-9 on the same tail, and within the declared warm-up tolerance of the WHOLE
history's table (so a window or warm-up truncated by the tail would fail)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.features.build import compute_features, warmup_period
from cryptoml_pipeline.live import fast_features
from cryptoml_pipeline.live.fast_features import signal_features
from cryptoml_pipeline.market.synthetic import synthetic_market
from cryptoml_pipeline.settings import FeatureConfig, PooledConfig

TRADED = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
UNIVERSE = (*TRADED, "DOGE/USDT", "LINK/USDT", "BCH/USDT")
START = pd.Timestamp("2025-03-01", tz="UTC")
END = pd.Timestamp("2025-03-10", tz="UTC")
BAR = pd.Timedelta(hours=1)
HISTORY_ROWS = 4
CONFIG = FeatureConfig()  # the default windows: corr 720, regime 720, funding z 90 x 8h


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = synthetic_market(
        TRADED, "1h", START, END, seed=11, universe=UNIVERSE, history=pd.Timedelta(days=45)
    )
    candles = data.candles
    # a gap inside the windows: an untraded member and a traded one each miss a bar
    drop = ((candles["symbol"] == "DOGE/USDT") & (candles["timestamp"] == END - 300 * BAR)) | (
        (candles["symbol"] == "SOL/USDT") & (candles["timestamp"] == END - 40 * BAR)
    )
    return candles.loc[~drop].reset_index(drop=True), data.funding


def _tail(
    candles: pd.DataFrame, funding: pd.DataFrame, last: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The signal's tail (as ``serving.market.tail_span`` / ``signal.signal_tail`` cut it)."""
    first = last + BAR - (warmup_period(CONFIG, "1h") + (HISTORY_ROWS + 2) * BAR)
    ts, fts = candles["timestamp"], funding["timestamp"]
    tail = candles.loc[(ts >= first) & (ts <= last)]
    return tail, funding.loc[(fts >= first - pd.Timedelta(hours=8)) & (fts <= last)]


def _compare(
    fast: pd.DataFrame, batch: pd.DataFrame, *, rtol: float, atol: float
) -> dict[str, float]:
    """Worst absolute difference per column; asserts rows, columns and NaN positions match."""
    assert list(fast.columns) == list(batch.columns)
    merged = fast.merge(batch, on=["timestamp", "symbol"], suffixes=("", "_batch"), how="left")
    assert len(merged) == len(fast)
    worst = {}
    for col in fast.columns[2:]:
        a, b = merged[col].to_numpy(), merged[f"{col}_batch"].to_numpy()
        assert (np.isnan(a) == np.isnan(b)).all(), col
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=col)
        worst[col] = float(np.nanmax(np.abs(a - b), initial=0.0))
    return worst


@pytest.mark.parametrize("back", [0, 1, 7, 40, 41])
def test_fast_rows_equal_the_batch_features_of_the_tail_and_of_the_whole_history(
    market: tuple[pd.DataFrame, pd.DataFrame], back: int
) -> None:
    candles, funding = market
    last = END - BAR - back * BAR
    tail, funding_tail = _tail(candles, funding, last)
    bars = dict.fromkeys(TRADED, last)
    fast = signal_features(tail, funding_tail, CONFIG, "1h", bars, TRADED, HISTORY_ROWS)
    # every traded symbol's rows from HISTORY_ROWS bars back to the signal bar (SOL's gap aside)
    assert set(fast["symbol"]) == set(TRADED)
    assert fast["timestamp"].max() == last
    assert fast["timestamp"].min() == last - HISTORY_ROWS * BAR
    cross = [c for c in fast.columns if c.startswith(("corr_", "beta_", "rs_", "sector_"))]
    assert {"corr_btc_720", "corr_eth_168", "beta_btc_168", "sector_rot_meme_168"} <= set(cross)
    at_bar = fast[(fast["timestamp"] == last) & (fast["symbol"] != "SOL/USDT")]
    assert at_bar.drop(columns=["timestamp", "symbol"]).notna().all().all()  # warm-up is over
    batch_tail = compute_features(tail, funding_tail, CONFIG, timeframe="1h")
    _compare(fast, batch_tail, rtol=0.0, atol=1e-9)
    batch_full = compute_features(candles, funding, CONFIG, timeframe="1h")
    # recursive smoothers settle to warmup_tolerance (1e-9, relative); pandas' online rolling
    # moments carry rounding from the series' start: the warm-up checks' tolerance
    _compare(fast, batch_full, rtol=1e-6, atol=1e-9)


def test_the_fast_rows_for_one_symbol_equal_those_of_a_batched_call(
    market: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    candles, funding = market
    last = END - BAR
    tail, funding_tail = _tail(candles, funding, last)
    bars = dict.fromkeys(TRADED, last)
    every = signal_features(tail, funding_tail, CONFIG, "1h", bars, TRADED, HISTORY_ROWS)
    one = signal_features(tail, funding_tail, CONFIG, "1h", bars, ["ETH/USDT"], HISTORY_ROWS)
    pd.testing.assert_frame_equal(
        one, every[every["symbol"] == "ETH/USDT"].reset_index(drop=True), check_exact=True
    )


def test_a_cross_asset_window_cut_short_is_caught(
    market: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The equality check is sensitive: cutting the cross-asset lookback by a bar, or the tail
    by two bars, changes the read rows' values."""
    candles, funding = market
    last = END - BAR
    tail, funding_tail = _tail(candles, funding, last)
    bars = dict.fromkeys(TRADED, last)
    batch = compute_features(candles, funding, CONFIG, timeframe="1h")
    lookback = fast_features.cross_lookback(CONFIG.cross_asset)
    monkeypatch.setattr(fast_features, "cross_lookback", lambda _config: lookback - 2)
    cut = signal_features(tail, funding_tail, CONFIG, "1h", bars, TRADED, HISTORY_ROWS)
    with pytest.raises(AssertionError):
        _compare(cut, batch, rtol=1e-6, atol=1e-9)
    monkeypatch.undo()
    short = tail.loc[tail["timestamp"] > tail["timestamp"].min() + BAR]
    fast = signal_features(short, funding_tail, CONFIG, "1h", bars, TRADED, HISTORY_ROWS)
    with pytest.raises(AssertionError):
        _compare(fast, batch, rtol=1e-6, atol=1e-9)


POOLED = FeatureConfig(pooled=PooledConfig(enabled=True))


def _with_spot(candles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The traded rows' perpetual-spot pairs: a spot close near each perpetual close (a seeded
    basis), one spot bar missing inside the z-score window; as the tail's ``spot_close`` column
    and as the batch's ``spot`` frame."""
    rng = np.random.default_rng(5)
    traded = candles["symbol"].isin(TRADED).to_numpy()
    spot = np.full(len(candles), np.nan)
    spot[traded] = candles["close"].to_numpy()[traded] * (1 + rng.normal(0, 4e-4, traded.sum()))
    hole = (candles["symbol"] == "ETH/USDT") & (candles["timestamp"] == END - 60 * BAR)
    spot[hole.to_numpy()] = np.nan
    tail = candles.assign(spot_close=spot)
    frame = tail.loc[np.isfinite(spot), ["timestamp", "symbol"]].assign(
        close=spot[np.isfinite(spot)]
    )
    return tail, frame.reset_index(drop=True)


@pytest.mark.parametrize("back", [0, 3, 59, 61])
def test_the_pooled_family_at_the_read_rows_equals_the_batch_table(
    market: tuple[pd.DataFrame, pd.DataFrame], back: int
) -> None:
    """Every pooled column (vol units, ranges, extremes, volume, market / BTC moves, ranks,
    basis and its z-score, funding carry) at the read rows equals the batch family's on the
    same tail (numpy windows vs pandas' online rolling: float rounding) and on the whole
    history; the basis window around the missing spot bar is NaN in both."""
    candles, funding = market
    with_spot, spot = _with_spot(candles)
    last = END - BAR - back * BAR
    first = last + BAR - (warmup_period(POOLED, "1h") + (HISTORY_ROWS + 2) * BAR)
    ts, fts = with_spot["timestamp"], funding["timestamp"]
    tail = with_spot.loc[(ts >= first) & (ts <= last)]
    funding_tail = funding.loc[(fts >= first - pd.Timedelta(hours=8)) & (fts <= last)]
    bars = dict.fromkeys(TRADED, last)
    fast = signal_features(tail, funding_tail, POOLED, "1h", bars, TRADED, HISTORY_ROWS)
    pooled = [c for c in fast.columns if c.startswith("pool_")]
    assert {"pool_basis", "pool_basis_z_168", "pool_rank_ret_720", "pool_btc_ret_24"} <= set(pooled)
    assert {"pool_funding_ph", "pool_funding_z_90", "pool_volume_720"} <= set(pooled)
    at_bar = fast[fast["timestamp"] == last]
    assert at_bar[["pool_ret_720", "pool_rank_ret_720", "pool_mkt_ret_168"]].notna().all().all()
    plain = tail.drop(columns="spot_close")
    batch_tail = compute_features(plain, funding_tail, POOLED, timeframe="1h", spot=spot)
    worst = _compare(fast, batch_tail, rtol=1e-9, atol=1e-9)
    assert set(pooled) <= set(worst)
    batch_full = compute_features(
        candles, funding, POOLED, timeframe="1h", spot=spot[spot["timestamp"] <= last]
    )
    _compare(fast, batch_full, rtol=1e-6, atol=1e-9)
    eth = fast[fast["symbol"] == "ETH/USDT"]
    hole = END - 60 * BAR
    window = (eth["timestamp"] >= hole) & (eth["timestamp"] < hole + 168 * BAR)
    assert eth.loc[window, "pool_basis_z_168"].isna().all()
    assert eth.loc[eth["timestamp"] == hole, "pool_basis"].isna().all()
