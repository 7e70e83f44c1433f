"""The shuffled-label control's power: the same model and decision rule, trained on labels
permuted inside each training window, scored like the real model.

* :func:`quantile_mapped_predictions` — when the decision rule leaves the control near-flat, its
  expected returns are mapped onto the real model's distribution (ranks kept, per
  :func:`trading.controls.quantile_map`) and its signal re-derived, so that the control trades
  as much as the real model would with forecasts of no skill.
* :func:`shuffled_power` — rank IC of the control's and of the real model's expected return
  against the realised return, each with a day-block bootstrap 95 % interval; the control has
  power when the real model's IC lies above the control's interval on a learnable signal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.evaluation.controls import quantile_map, rank_ic_interval
from cryptoml_pipeline.evaluation.forecast_section import scored_predictions
from cryptoml_pipeline.modeling.predictions import signal_from_expected


def quantile_mapped_predictions(control: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    out = control.copy()
    mapped = quantile_map(
        out["expected_return"].to_numpy(np.float64), real["expected_return"].to_numpy(np.float64)
    )
    out["expected_return"] = mapped
    conf = quantile_map(out["confidence"].to_numpy(np.float64), real["confidence"].to_numpy())
    out["confidence"] = np.clip(conf, 0.0, 1.0)
    out["signal"] = signal_from_expected(mapped, out["confidence"].to_numpy(np.float64))
    return out


def _interval(preds: pd.DataFrame, labels: pd.DataFrame, seed: int) -> dict[str, Any]:
    scored = scored_predictions(preds, labels).dropna(subset=["realised_return"])
    return rank_ic_interval(scored, seed=seed)


def shuffled_power(
    control: pd.DataFrame,
    real: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    n_trades: int,
    quantile_mapped: bool,
    model: str,
    seed: int = 0,
    control_ic: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``rank_ic``, ``rank_ic_ci`` and ``n_trades`` of the control, the real model's IC and
    interval on the same rows, and whether the real IC lies above the control's interval.
    ``control_ic``: the control's own :func:`rank_ic_interval` result when already computed
    (by :func:`controls.shuffled_label_verdict`, same seed), else it is computed here."""
    same = real.merge(control[["timestamp", "symbol"]], on=["timestamp", "symbol"])
    ctl = control_ic if control_ic is not None else _interval(control, labels, seed)
    ref = _interval(same, labels, seed)
    ci = ctl.get("rank_ic_ci")
    real_ic = ref.get("rank_ic")
    above = bool(ci is not None and real_ic is not None and real_ic > ci[1])
    return {
        "model": model,
        "folds": sorted(control["fold"].astype(str).unique().tolist()),
        "rank_ic": ctl.get("rank_ic"),
        "rank_ic_ci": ci,
        "n_days": ctl.get("n_days"),
        "n_trades": int(n_trades),
        "quantile_mapped": quantile_mapped,
        "quantile_mapping": (
            "control expected returns mapped onto the real model's distribution (ranks kept)"
            if quantile_mapped
            else None
        ),
        "real_rank_ic": real_ic,
        "real_rank_ic_ci": ref.get("rank_ic_ci"),
        "real_above_control_interval": above,
    }
