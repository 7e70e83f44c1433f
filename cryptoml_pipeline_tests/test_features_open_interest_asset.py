"""Open interest landed in the store feeds the pipeline's open-interest features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.defs.resources import MarketDataResource
from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline.settings import profile_settings


def test_stored_open_interest_reaches_the_feature_table(tmp_path, shared_data):
    start = pd.Timestamp("2025-08-01", tz="UTC")
    end = start + pd.Timedelta(days=40)
    src = ParquetStore(shared_data)
    candles = src.read_candles("BTC/USDT:USDT", "1h", start, end, as_symbol="BTC/USDT")
    store = ParquetStore(tmp_path)
    # made-up open interest (the shared data has none): a smooth positive series
    oi = pd.DataFrame(
        {
            "timestamp": candles["timestamp"],
            "open_interest": 1e5 + np.arange(len(candles), dtype=float),
        }
    )
    oi["open_interest_value"] = oi["open_interest"] * 100.0
    store.replace_open_interest_range(oi, "BTC/USDT:USDT", "1h", start, end)
    market = MarketDataResource(kind="parquet", data_dir=str(tmp_path))
    got = market.open_interest(["BTC/USDT"], "1h", start, end)
    assert got is not None and list(got.columns) == ["timestamp", "symbol", "open_interest"]
    assert (got["symbol"] == "BTC/USDT").all() and len(got) == len(candles)
    settings = profile_settings("tiny")
    with_oi = build_features(candles, None, settings.features, open_interest=got)
    without = build_features(candles, None, settings.features)
    assert "oi_change_1" in with_oi.table.columns
    assert "oi_change_1" not in without.table.columns
    assert "oi_change_*" in without.plan.unavailable
    # the change over one bar of a series rising by 1 per bar
    last = with_oi.table["oi_change_1"].iloc[-1]
    expected = np.log(got["open_interest"].iloc[-1] / got["open_interest"].iloc[-2])
    assert np.isclose(last, expected) or np.isclose(
        last, got["open_interest"].iloc[-1] / got["open_interest"].iloc[-2] - 1
    )
    assert market.open_interest(["ETH/USDT"], "1h", start, end) is None
