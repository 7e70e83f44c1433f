"""The default configuration learns what can be learned: on the synthetic market with its planted
weak reversal it finds a significant rank IC and a positive result after costs; on pure noise
(strength 0) its IC is indistinguishable from zero and the evidence gate refuses to trade it."""

from __future__ import annotations

import pandas as pd
import pytest

from cryptoml_pipeline.experiments.study import study_configuration
from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.market.synthetic import DEFAULT_SIGNAL_STRENGTH, synthetic_market
from cryptoml_pipeline.monitoring.gate import evidence_failure
from cryptoml_pipeline.settings import GateConfig, profile_settings

TRADED = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
UNIVERSE = [*TRADED, "AVAX/USDT", "DOGE/USDT", "LINK/USDT", "DOT/USDT"]
START, END = pd.Timestamp("2024-10-01", tz="UTC"), pd.Timestamp("2025-10-01", tz="UTC")


def _study(strength: float) -> dict:
    settings = profile_settings("demo")
    market = synthetic_market(
        TRADED,
        "1h",
        START,
        END,
        seed=11,
        universe=UNIVERSE,
        signal_strength=strength,
        history=pd.Timedelta(days=settings.data.history_days),  # warm-up (all history: None)
    )
    features = build_features(market.candles, market.funding, settings.features).table
    return study_configuration(
        settings,
        candles=market.candles,
        funding=market.funding,
        features=features,
        traded=TRADED,
        start=START,
        end=END,
    )


@pytest.fixture(scope="module")
def planted() -> dict:
    return _study(DEFAULT_SIGNAL_STRENGTH)


@pytest.fixture(scope="module")
def noise() -> dict:
    return _study(0.0)


def test_default_configuration_finds_the_planted_signal(planted: dict) -> None:
    assert planted["rank_ic"] > 0.05
    assert planted["rank_ic_t"] > 3.0
    assert planted["n_trades"] >= 1  # the 2x-cost filter leaves few trades at this strength
    assert planted["total_return"] > 0  # after fees, slippage and funding


def test_on_pure_noise_there_is_no_edge(noise: dict, planted: dict) -> None:
    assert abs(noise["rank_ic_t"]) < 2.5
    assert abs(noise["rank_ic"]) < planted["rank_ic"]
    evidence = {"dsr": None, "rank_ic_t": noise["rank_ic_t"], "n_trades": noise["n_trades"]}
    assert evidence_failure(evidence, GateConfig()) is not None
