"""One (configuration, split) of a sweep, and one configuration's scores — no Dagster.

A sweep's *splits* are the walk-forward folds of the run (``wf-00`` …, the headline result) and
the combinatorial purged CV splits (``cpcv-00`` …, the robustness view). Each split trains the
grid's model (LightGBM pooled over the universe) on its purged training rows and predicts its
test rows for the traded symbols, in the one prediction schema (:func:`train_split`).

Configurations that differ only in decision settings (``risk``, ``costs``, ``slippage``, …)
train identical models: :func:`training_fingerprint` names what a training depends on, so the
runner can reuse a finished split's predictions for every configuration with the same
fingerprint (and says so).

:func:`score_configuration` turns a configuration's split predictions into its leaderboard
entry: walk-forward net Sharpe, rank IC and t, turnover, break-even fee through the model
comparison's own :func:`~cryptoml_pipeline.evaluation.model_comparison.strategy_kpis` (costs
always on),
and the net Sharpe and rank IC of each CPCV path.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.forecast_section import forecast_stats, scored_predictions
from cryptoml_pipeline.evaluation.model_comparison import strategy_kpis
from cryptoml_pipeline.experiments.cpcv import (
    CpcvSplit,
    cpcv_paths,
    cpcv_splits,
    path_frame,
    test_mask,
    train_mask,
)
from cryptoml_pipeline.experiments.leaderboard import ConfigResult
from cryptoml_pipeline.experiments.tuning import cpcv_validation_masks
from cryptoml_pipeline.features import feature_columns
from cryptoml_pipeline.features.build import family_of_column
from cryptoml_pipeline.modeling.fold_training import fold_masks
from cryptoml_pipeline.modeling.folds import Fold, FoldMasks, walk_forward_plan
from cryptoml_pipeline.modeling.gbm import predict_gbm_rows, train_gbm_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.settings import FeatureConfig, PipelineSettings

logger = logging.getLogger(__name__)

WF_PREFIX = "wf"
CPCV_PREFIX = "cpcv"
# the settings a model's training reads; everything else (risk, costs, slippage, gate, …)
# only changes decisions on the same predictions
TRAINING_SECTIONS = (
    "data",
    "features",
    "target",
    "labels",
    "walk_forward",
    "gbm",
    "tuning",
    "training",
)


@dataclass(frozen=True)
class SweepData:
    """What every configuration shares: the universe's candles and feature table, the traded
    perpetuals' funding, and the run's window."""

    candles: pd.DataFrame
    funding: pd.DataFrame
    features: pd.DataFrame
    traded: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp
    timeframe: str


FAMILY_SWITCHES = ("market_microstructure", "cross_asset", "temporal", "sentiment_flow", "pooled")


def families_turned_off(base: FeatureConfig, config: FeatureConfig) -> tuple[str, ...]:
    """The feature families a configuration turns off: its feature set is the shared feature
    table without their columns. Anything else that differs in ``features.*`` (a window, a
    family the shared table lacks) needs another table: :class:`InputError`."""
    off = tuple(
        fam
        for fam in FAMILY_SWITCHES
        if getattr(base, fam).enabled and not getattr(config, fam).enabled
    )
    restored = config.model_copy(
        update={fam: getattr(config, fam).model_copy(update={"enabled": True}) for fam in off}
    )
    # which columns the models see (features.pooled.exclude_raw_scale) is no table change
    restored = restored.model_copy(
        update={
            "pooled": restored.pooled.model_copy(
                update={"exclude_raw_scale": base.pooled.exclude_raw_scale}
            )
        }
    )
    if restored != base:
        changed = sorted(
            k for k, v in restored.model_dump().items() if v != base.model_dump().get(k)
        )
        raise InputError(
            f"features.{', features.'.join(changed)} differ from the shared feature table's: a "
            "sweep shares one table, so a configuration may only turn families off "
            f"(features.<{'|'.join(FAMILY_SWITCHES)}>.enabled: false)"
        )
    return off


def feature_set_view(features: pd.DataFrame, off: tuple[str, ...]) -> pd.DataFrame:
    """The shared feature table without the columns of the families in ``off``."""
    if not off:
        return features
    drop = [c for c in feature_columns(features) if family_of_column(c) in off]
    return features.drop(columns=drop)


def training_fingerprint(settings: PipelineSettings, search: dict | None = None) -> str:
    """A 12-hex digest of the settings a training depends on (see ``TRAINING_SECTIONS``) and of
    the hyper-parameter ``search`` (the grid's Optuna trials and space) when there is one."""
    dump = settings.model_dump(mode="json")
    part = {k: dump[k] for k in TRAINING_SECTIONS}
    if search:
        part["search"] = search
    text = json.dumps(part, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def wf_key(i: int) -> str:
    return f"{WF_PREFIX}-{i:02d}"


def cpcv_key(i: int) -> str:
    return f"{CPCV_PREFIX}-{i:02d}"


def walk_forward_folds(settings: PipelineSettings, data: SweepData) -> list[Fold]:
    return walk_forward_plan(
        data.start,
        data.end,
        settings.walk_forward,
        timeframe=data.timeframe,
        training_history_days=settings.data.training_history_days,
        train_from=data.candles["timestamp"].min() if len(data.candles) else None,
    )


def combinatorial_splits(
    settings: PipelineSettings, data: SweepData, n_groups: int, k_test: int
) -> list[CpcvSplit]:
    """CPCV over the run's window, purged by the target's reach and the walk-forward embargo."""
    return cpcv_splits(
        data.start,
        data.end,
        n_groups=n_groups,
        k_test=k_test,
        timeframe=data.timeframe,
        reach_bars=settings.target.reach,
        embargo_bars=settings.walk_forward.embargo_bars,
    )


def split_keys(n_walk_forward: int, n_cpcv: int) -> list[str]:
    return [wf_key(i) for i in range(n_walk_forward)] + [cpcv_key(i) for i in range(n_cpcv)]


def sweep_labels(settings: PipelineSettings, data: SweepData) -> pd.DataFrame:
    return make_labels(data.candles, settings.target, settings.labels, timeframe=data.timeframe)


def _traded_mask(data: SweepData) -> np.ndarray:
    return data.features["symbol"].astype(str).isin(list(data.traded)).to_numpy()


# (settings, fold, fit/validation masks) -> settings with tuned hyper-parameters
Tuner = Callable[[PipelineSettings, Fold, FoldMasks], PipelineSettings]


def train_split(
    settings: PipelineSettings,
    data: SweepData,
    labels: pd.DataFrame,
    key: str,
    *,
    n_groups: int,
    k_test: int,
    tuner: Tuner | None = None,
) -> pd.DataFrame:
    """Train on split ``key``'s purged training rows, predict its test rows (traded symbols).

    A walk-forward fold trains exactly as ``cryptoml run`` does (its own fit / validation
    slices). A CPCV split trains on all its purged training rows with a fixed number of trees
    (``gbm.stopping_metric`` "none", the default) and takes its confidence scale from them.
    ``tuner`` (the grid's Optuna search) picks hyper-parameters first, on validation rows only:
    the fold's validation slice, or the CPCV split's last training group."""
    prefix, _, index = key.partition("-")
    if not index.isdigit() or prefix not in (WF_PREFIX, CPCV_PREFIX):
        raise InputError(f"unknown split {key!r}: expected {WF_PREFIX}-NN or {CPCV_PREFIX}-NN")
    i, tf, feats = int(index), data.timeframe, data.features
    nothing = np.zeros(len(feats), dtype=bool)
    if prefix == WF_PREFIX:
        folds = walk_forward_folds(settings, data)
        if i >= len(folds):
            raise InputError(f"split {key}: the walk-forward plan has {len(folds)} folds")
        fold = folds[i]
        masks = fold_masks(feats, fold, settings, tf)
        tuning = FoldMasks(fit=masks.fit, val=masks.val, test=nothing)
    else:
        splits = combinatorial_splits(settings, data, n_groups, k_test)
        if i >= len(splits):
            raise InputError(f"split {key}: CPCV N={n_groups}, k={k_test} has {len(splits)}")
        split = splits[i]
        fit = train_mask(split, feats["timestamp"])
        groups = split.groups
        first_test = groups[split.test_groups[0]][0]
        fold = Fold(
            key=key,
            index=i,
            train_start=groups[0][0],
            val_start=first_test,
            test_start=first_test,
            test_end=groups[split.test_groups[-1]][1],
        )
        masks = FoldMasks(fit=fit, val=fit, test=test_mask(split, feats["timestamp"]))
        inner_fit, inner_val = cpcv_validation_masks(split, feats["timestamp"], fit)
        tuning = FoldMasks(fit=inner_fit, val=inner_val, test=nothing)
    if tuner is not None:
        settings = tuner(settings, fold, tuning)
    model = train_gbm_fold(feats, labels, fold, settings, tf, masks=masks)
    test = masks.test & _traded_mask(data)
    preds = predict_gbm_rows(model, feats, labels, test, settings, tf, tag=fold.key)
    return preds.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)


def _traded_rows(frame: pd.DataFrame, traded: tuple[str, ...]) -> pd.DataFrame:
    return frame[frame["symbol"].astype(str).isin(list(traded))]


def _kpis(
    preds: pd.DataFrame,
    settings: PipelineSettings,
    data: SweepData,
    labels: pd.DataFrame,
    *,
    with_break_even: bool,
) -> dict[str, Any]:
    lo, hi = preds["timestamp"].min(), preds["timestamp"].max() + pd.Timedelta(data.timeframe)
    stats = strategy_kpis(
        preds,
        _traded_rows(data.candles, data.traded),
        data.funding,
        _traded_rows(data.features, data.traded),
        lo,
        hi,
        settings,
        data.timeframe,
        1,
        labels if with_break_even else None,
    )
    if not with_break_even:
        forecast = forecast_stats(
            scored_predictions(preds, labels),
            horizon=settings.target.horizon,
            timeframe=data.timeframe,
            with_folds=False,
        )
        stats["forecast"] = {k: forecast.get(k) for k in ("rank_ic", "rank_ic_t")}
    return stats


def score_configuration(
    name: str,
    params: dict[str, Any],
    settings: PipelineSettings,
    data: SweepData,
    predictions: dict[str, pd.DataFrame],
    *,
    n_groups: int,
    k_test: int,
) -> ConfigResult:
    """The leaderboard entry of one configuration from its split predictions
    (``{split key: predictions}``; every walk-forward and CPCV split must be present)."""
    labels = sweep_labels(settings, data)
    n_wf = len(walk_forward_folds(settings, data))
    splits = combinatorial_splits(settings, data, n_groups, k_test)
    needed = split_keys(n_wf, len(splits))
    missing = [k for k in needed if k not in predictions]
    if missing:
        raise InputError(f"configuration {name}: no predictions for splits {missing}")
    wf = pd.concat([predictions[wf_key(i)] for i in range(n_wf)], ignore_index=True)
    stats = _kpis(wf, settings, data, labels, with_break_even=True)
    forecast = stats.get("forecast") or {}
    walk_forward = {
        "net_sharpe": stats.get("sharpe"),
        "total_return": stats.get("total_return"),
        "n_trades": stats.get("n_trades"),
        "turnover": stats.get("turnover"),
        "break_even_taker_fee": stats.get("break_even_taker_fee"),
        **{k: forecast.get(k) for k in ("rank_ic", "rank_ic_t", "ic", "hit_rate")},
    }
    by_key = {s.key: predictions[cpcv_key(s.index)] for s in splits}
    path_sharpes, path_rank_ics = [], []
    for p, path in enumerate(cpcv_paths(n_groups, k_test)):
        frame = path_frame(by_key, splits, path)
        if frame.empty:
            path_sharpes.append(float("nan"))
            path_rank_ics.append(float("nan"))
            continue
        pstats = _kpis(frame, settings, data, labels, with_break_even=False)
        path_sharpes.append(_num(pstats.get("sharpe")))
        path_rank_ics.append(_num((pstats.get("forecast") or {}).get("rank_ic")))
        logger.info(
            "%s CPCV path %d: net Sharpe %s, rank IC %s",
            name,
            p,
            _fmt(path_sharpes[-1]),
            _fmt(path_rank_ics[-1]),
        )
    return ConfigResult(
        name=name,
        params=params,
        status="ok",
        walk_forward=walk_forward,
        daily_returns=stats.get("_daily"),
        path_sharpes=path_sharpes,
        path_rank_ics=path_rank_ics,
    )


def _num(value: Any) -> float:
    return float(value) if value is not None and np.isfinite(value) else float("nan")


def _fmt(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a"
