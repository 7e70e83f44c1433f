"""The model zoo beside the transformer: one asset per model, partitioned by walk-forward fold.

``gbm_predictions[fold]``, ``lstm_cnn_predictions[fold]`` and ``ppo_predictions[fold]`` each train
their model on the fold's purged training window, save it under ``output/models/<model>/<fold>``
(tensors / LightGBM text, never pickles) with a model card, and return the test-window predictions.
So any one model, or any one fold of it, can be retrained alone from the UI: select the asset and
the fold partition. ``ensemble_predictions`` stacks the base models over all folds and
``model_comparison`` scores every model per fold and as a strategy.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.assets.evaluation import table_metadata
from cryptoml_pipeline.defs.assets.modeling import find_fold, heavy_fold, plan_folds, traded_only
from cryptoml_pipeline.defs.partitions import fold_partitions
from cryptoml_pipeline.defs.resources import MarketDataResource, PipelineResource
from cryptoml_pipeline.model_comparison import compare_models, comparison_markdown
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.persistence import to_jsonable
from cryptoml_pipeline.modeling.zoo import (
    ZooResult,
    run_ensemble,
    run_gbm,
    run_lstm_cnn,
    run_ppo,
    unavailable,
)
from cryptoml_pipeline.reporting.ui_metadata import model_fold_markdown, model_rows
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta

GROUP = "models"


def _model_dir(pipeline: PipelineResource, model: str, fold_key: str) -> Path:
    path = pipeline.output_path / "models" / model / fold_key
    path.mkdir(parents=True, exist_ok=True)
    return path


def _publish(context: dg.AssetExecutionContext, result: ZooResult, out_dir: Path | None) -> None:
    card = to_jsonable(result.card)
    if out_dir is not None:
        (out_dir / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True))
    metrics = card.get("test_metrics") or {}
    meta: dict[str, Any] = {
        "status": card.get("status"),
        "rows": len(result.predictions),
        "model_card": dg.MetadataValue.json(card),
    }
    if card.get("reason"):
        meta["reason"] = card["reason"]
    for key in ("accuracy", "macro_f1", "log_loss"):
        if metrics.get(key) is not None:
            meta[key] = float(metrics[key])
    for key in ("train_seconds", "device", "n_train_samples"):
        if card.get(key) is not None:
            meta[key] = card[key]
    context.add_output_metadata(meta)


def _train_fold_model(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    fold_plan: list[dict[str, Any]],
    model: str,
    enabled: bool,
    run: Callable[[Fold, PipelineSettings, Path], ZooResult],
) -> pd.DataFrame:
    """The shared shape of a zoo fold asset: find the fold, skip when disabled (with the reason),
    else train into ``output/models/<model>/<fold>``; publish the model card either way."""
    fold = find_fold(fold_plan, context.partition_key)
    if not enabled:
        result, out = unavailable(model, fold, f"disabled in settings ({model}.enabled)"), None
    else:
        out = _model_dir(pipeline, model, fold.key)
        result = run(fold, pipeline.settings(), out)
    _publish(context, result, out)
    return result.predictions


@dg.asset(group_name=GROUP, partitions_def=fold_partitions)
def gbm_predictions(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """LightGBM baseline (Optuna-tuned inside the training window when ``tuning.n_trials`` > 0)."""
    tf = dataset_info["timeframe"]
    return _train_fold_model(
        context,
        pipeline,
        fold_plan,
        "gbm",
        pipeline.settings().gbm.enabled,
        lambda fold, settings, out: run_gbm(
            feature_table, label_table, fold, settings, tf, out, traded=dataset_info["symbols"]
        ),
    )


@dg.asset(group_name=GROUP, partitions_def=fold_partitions)
def lstm_cnn_predictions(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    pipeline: PipelineResource,
    market: MarketDataResource,
) -> pd.DataFrame:
    """The spec's multi-timeframe LSTM-CNN; only where all its timeframes exist in the store."""

    def run(fold: Fold, settings: PipelineSettings, out: Path) -> ZooResult:
        fold = heavy_fold(fold, settings, dataset_info["timeframe"])
        cfg = settings.lstm_cnn
        # a traded symbol without the finer timeframes is skipped with its reason, never fatal
        have, skipped = market.symbols_with_timeframes(
            list(dataset_info["symbols"]), list(cfg.timeframes)
        )
        if not have:
            return unavailable(
                "lstm_cnn", fold, f"no traded symbol has {cfg.timeframes}: {skipped}"
            )
        longest = max(timeframe_to_timedelta(tf) for tf in cfg.timeframes)
        scales = market.candles_by_timeframe(
            have,
            list(cfg.timeframes),
            fold.train_start - (cfg.sequence_length + 2) * longest,
            fold.test_end + longest,
        )
        info = {"symbols": have}
        result = run_lstm_cnn(
            traded_only(feature_table, info),
            traded_only(label_table, info),
            fold,
            settings,
            dataset_info["timeframe"],
            scales,
            out,
        )
        result.card["skipped_symbols"] = skipped
        return result

    return _train_fold_model(
        context, pipeline, fold_plan, "lstm_cnn", pipeline.settings().lstm_cnn.enabled, run
    )


@dg.asset(group_name=GROUP, partitions_def=fold_partitions)
def ppo_predictions(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """PPO agent (Stable-Baselines3) in the Gymnasium trading environment with the backtester's
    costs and funding; its positions on the test window are the predictions' signals."""
    tf = dataset_info["timeframe"]
    return _train_fold_model(
        context,
        pipeline,
        fold_plan,
        "ppo",
        pipeline.settings().ppo.enabled,
        lambda fold, settings, out: run_ppo(
            traded_only(feature_table, dataset_info),
            traded_only(label_table, dataset_info),
            traded_only(ohlcv, dataset_info),
            funding,
            heavy_fold(fold, settings, tf),
            settings,
            tf,
            out,
        ),
    )


def _all_folds(value: Any) -> pd.DataFrame:
    """A partitioned upstream arrives as ``{fold: frame}``: concatenate the non-empty ones."""
    frames = [f for f in (value.values() if isinstance(value, dict) else [value]) if len(f)]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["timestamp"] = out["timestamp"].astype("datetime64[ns, UTC]")
    return out


@dg.asset(group_name=GROUP)
def ensemble_predictions(
    context: dg.AssetExecutionContext,
    fold_predictions: dict,
    gbm_predictions: dict,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """The stacking meta-learner, fold by fold, on earlier folds' out-of-fold predictions."""
    settings = pipeline.settings()
    base = {"transformer": _all_folds(fold_predictions), "gbm": _all_folds(gbm_predictions)}
    base = {k: v for k, v in base.items() if k in settings.ensemble.base_models and len(v)}
    folds = plan_folds(fold_plan)
    if not settings.ensemble.enabled or len(base) < len(settings.ensemble.base_models):
        reason = (
            "disabled in settings"
            if not settings.ensemble.enabled
            else f"base models without predictions: "
            f"{sorted(set(settings.ensemble.base_models) - set(base))}"
        )
        context.add_output_metadata({"status": "unavailable", "reason": reason})
        return unavailable("ensemble", folds[0], reason).predictions
    preds, cards = run_ensemble(
        base, feature_table, folds, settings, dataset_info["timeframe"], label_table
    )
    out_dir = pipeline.output_path / "models" / "ensemble"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cards.json").write_text(json.dumps(to_jsonable(cards), indent=2))
    context.add_output_metadata(
        {
            "rows": len(preds),
            "folds_trained": sum(c.get("status") == "trained" for c in cards),
            "model_cards": dg.MetadataValue.json(to_jsonable(cards)),
        }
    )
    return preds


@dg.asset(group_name=GROUP)
def model_comparison(
    context: dg.AssetExecutionContext,
    fold_predictions: dict,
    gbm_predictions: dict,
    lstm_cnn_predictions: dict,
    ppo_predictions: dict,
    ensemble_predictions: pd.DataFrame,
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    pipeline: PipelineResource,
) -> dict[str, Any]:
    """Rank IC / IC / t / hit rate, net Sharpe by year, break-even fee, accuracy, macro-F1,
    log-loss per model and fold; each model's strategy through the same
    engine and simulator; the ensemble's lift over its best base model."""
    settings = pipeline.settings()
    preds = {
        "transformer": _all_folds(fold_predictions),
        "gbm": _all_folds(gbm_predictions),
        "lstm_cnn": _all_folds(lstm_cnn_predictions),
        "ppo": _all_folds(ppo_predictions),
        "ensemble": ensemble_predictions,
    }
    for frame in preds.values():
        if len(frame):
            frame["timestamp"] = frame["timestamp"].astype("datetime64[ns, UTC]")
    cards = {name: read_cards(pipeline.output_path, name) for name in preds}
    cards["transformer"] = [{"status": "trained", "n_trials": 1}]
    comparison = compare_models(
        preds,
        cards,
        candles=ohlcv,
        funding=funding,
        features=feature_table,
        folds=plan_folds(fold_plan),
        settings=settings,
        timeframe=dataset_info["timeframe"],
        labels=label_table,
    )
    context.add_output_metadata(
        {
            "comparison": dg.MetadataValue.md(comparison_markdown(comparison)),
            "models": table_metadata(model_rows(comparison)),
            "per_fold_table": dg.MetadataValue.md(model_fold_markdown(comparison)),
            "configurations_tried": comparison["configurations_tried"],
        }
    )
    return to_jsonable(comparison)


def read_cards(output: Path, model: str) -> list[dict[str, Any]]:
    """Model cards of one zoo model (``card.json`` per fold; the ensemble's ``cards.json``)."""
    root = output / "models" / model
    if (root / "cards.json").is_file():
        return json.loads((root / "cards.json").read_text())
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/card.json"))]
