"""Spec ``MLSignalIntegrator``: the rule strategy and the ML signal combined, vectorised.

Per row, with the rule direction ``t`` (-1/0/+1, strength ``s``) and the ML signal ``m``
(-2..2, confidence ``c``), exactly the spec's three cases in order:
1. ``t == m`` (agreement): direction ``t``, strength ``min(1, s + c)``, source
   ``combined_agreement``;
2. else ``c > override_confidence``: direction ``m``, strength ``c``, source ``ml_override``;
3. else: direction 0 (hold), strength ``conflict_strength``, source ``conflict_hold``.
The spec compares the rule's direction with the ML signal as values, so a weak ML signal (±1)
agrees with a rule direction of ±1 while a strong one (±2) does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.settings import IntegratorConfig

SOURCES: tuple[str, ...] = ("combined_agreement", "ml_override", "conflict_hold")


def combine_signals(
    rule_direction: np.ndarray,
    rule_strength: np.ndarray | float,
    ml_signal: np.ndarray,
    ml_confidence: np.ndarray,
    config: IntegratorConfig,
) -> pd.DataFrame:
    """Columns ``direction`` (int64), ``strength`` (float), ``source`` (str), one row per input."""
    t = np.asarray(rule_direction, dtype=np.int64)
    m = np.asarray(ml_signal, dtype=np.int64)
    c = np.nan_to_num(np.asarray(ml_confidence, dtype=np.float64), nan=0.0)
    s = np.broadcast_to(np.asarray(rule_strength, dtype=np.float64), t.shape)
    agree = t == m
    override = ~agree & (c > config.override_confidence)
    direction = np.where(agree, t, np.where(override, m, 0))
    strength = np.where(
        agree, np.minimum(1.0, s + c), np.where(override, c, config.conflict_strength)
    )
    source = np.where(agree, SOURCES[0], np.where(override, SOURCES[1], SOURCES[2]))
    return pd.DataFrame(
        {"direction": direction, "strength": strength, "source": source.astype(str)}
    )


def integrated_decisions(
    ml_decisions: pd.DataFrame, rule_signal: pd.DataFrame, config: IntegratorConfig
) -> pd.DataFrame:
    """ML decisions (timestamp, symbol, signal, confidence, volatility, atr_pct, ...) with the
    rule signal (timestamp, symbol, rule_signal) joined on the same row and the spec's combination
    applied: signal = combined direction, confidence = combined strength. A row without a rule
    signal counts rule direction 0. Hold rows get signal 0 (the simulator never enters them)."""
    merged = ml_decisions.merge(
        rule_signal[["timestamp", "symbol", "rule_signal"]],
        on=["timestamp", "symbol"],
        how="left",
        validate="one_to_one",
    )
    rule = merged["rule_signal"].fillna(0).to_numpy(np.int64)
    combined = combine_signals(
        rule, 1.0, merged["signal"].to_numpy(np.int64), merged["confidence"].to_numpy(), config
    )
    out = merged.drop(columns=["rule_signal"])
    out["signal"] = combined["direction"].to_numpy()
    out["confidence"] = combined["strength"].to_numpy()
    out["source"] = combined["source"].to_numpy()
    return out
