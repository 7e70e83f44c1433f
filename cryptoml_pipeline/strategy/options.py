"""How every strategy is traded and scored: the simulator keywords, the feature columns the
sizer reads, the expected return per class and the KPI options, from one place, so the
walk-forward evaluation, the model comparison and paper trading run the same rules."""

from __future__ import annotations

from typing import Any

import numpy as np

from cryptoml_pipeline.modeling.predictions import class_returns
from cryptoml_pipeline.settings import PipelineSettings


def simulation_options(
    settings: PipelineSettings, timeframe: str, *, n_trials: int | None = None
) -> tuple[dict[str, Any], dict[str, str], np.ndarray, dict[str, Any]]:
    """The simulator keywords, the feature columns the sizer reads, the expected return per
    class and the KPI options: one place, so every strategy is backtested the same way."""
    common = {
        "costs": settings.costs,
        "risk": settings.risk,
        "min_hold_bars": settings.min_hold_bars,
        "timeframe": timeframe,
        "funding_interval_hours": settings.data.funding_interval_hours,
        "slippage": settings.slippage,
    }
    columns = {
        "vol_col": f"rv_{settings.risk.volatility_window}",
        "atr_col": f"atr_pct_{settings.risk.atr_period}",
    }
    returns_by_class = class_returns(
        settings.labels.weak_threshold, settings.labels.strong_threshold
    )
    ctl = settings.controls
    kpi_opts = {
        "n_trials": ctl.n_trials if n_trials is None else n_trials,
        "bootstrap_samples": ctl.bootstrap_samples,
        "bootstrap_block_days": ctl.bootstrap_block_days,
        "seed": ctl.seed,
    }
    return common, columns, returns_by_class, kpi_opts
