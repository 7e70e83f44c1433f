"""The ML risk layer as small pure functions (spec "Risk Management Integration").

Stop-based risk per trade, portfolio heat and leverage live in the execution core
(:func:`cryptoml_pipeline.execution.kernel.size_entry`, used by the backtest and the live
decision alike); this module adds the ML-specific controls: the confidence threshold, ensemble
disagreement, switching off a degraded model and regime-dependent model weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features.regimes import trend_strength
from cryptoml_pipeline.features.technical import rolling_volatility

REGIMES: tuple[str, ...] = ("trend", "range", "high_vol")


def atr_stop_distance(atr_pct: float, multiple: float) -> float:
    """Stop distance as a fraction of price: ``multiple * atr_pct`` (NaN when not in (0, 1))."""
    distance = multiple * atr_pct
    return distance if 0.0 < distance < 1.0 else float("nan")


def passes_confidence(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """True where a signal is confident enough to trade (NaN -> False)."""
    c = np.asarray(confidence, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (c >= threshold) & (c > 0)


def disagreement_multiplier(agreement: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Size multiplier from the ensemble's agreement (share of weight agreeing, 0..1):
    ``max(floor, agreement)``; a unanimous ensemble keeps full size."""
    a = np.clip(np.asarray(agreement, dtype=np.float64), 0.0, 1.0)
    return np.maximum(floor, a)


def model_enabled(acc_recent: float | None, acc_prior: float | None, ratio: float) -> bool:
    """False when the model's tracked accuracy degraded: ``recent < ratio * prior`` (spec
    should_retrain); True while either window is unknown (not enough outcomes yet)."""
    if acc_recent is None or acc_prior is None:
        return True
    return not acc_recent < ratio * acc_prior


def detect_regime(
    close: pd.Series, *, window: int = 168, trend_threshold: float = 0.3, vol_quantile: float = 0.8
) -> pd.Series:
    """Causal regime label per bar: ``high_vol`` when the rolling volatility is above its own
    expanding ``vol_quantile``; else ``trend`` when the efficiency ratio (|net move| / path
    length over ``window``) exceeds ``trend_threshold``; else ``range``. NaN-free after warm-up;
    warm-up rows are ``range``."""
    if window < 2:
        raise InputError(f"regime window must be >= 2, got {window}")
    c = np.asarray(close, dtype=np.float64)
    # the feature layer's realised volatility and (log-price) efficiency ratio
    vol = pd.Series(np.asarray(rolling_volatility(c, window), dtype=np.float64))
    vol_cut = vol.expanding(min_periods=window).quantile(vol_quantile).to_numpy()
    efficiency, _ = trend_strength(np.log(c), window)
    with np.errstate(invalid="ignore"):
        regime = np.where(
            vol.to_numpy() > vol_cut,
            "high_vol",
            np.where(np.abs(efficiency) > trend_threshold, "trend", "range"),
        )
    return pd.Series(regime, index=close.index, name="regime").astype(str)


def regime_weights(
    regime: str,
    base: Mapping[str, float],
    table: Mapping[str, Mapping[str, float]],
) -> dict[str, float]:
    """Model weights for ``regime``: ``base[m] * table[regime].get(m, 1)``."""
    if regime not in table and regime not in REGIMES:
        raise InputError(f"unknown regime {regime!r}")
    adjust = table.get(regime, {})
    return {m: w * float(adjust.get(m, 1.0)) for m, w in base.items()}
