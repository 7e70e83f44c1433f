"""Jobs. The main job is split in three because fold partitions only exist once the plan exists:
``prepare_job`` (run_settings -> data -> features -> labels -> fold_plan) -> ``train_folds_job``
per fold partition -> ``evaluate_job`` (OOS predictions -> backtest -> candidate -> deploy gate ->
report). ``cryptoml run`` drives the three in order.

``run_settings`` (the run's resolved settings, group ``settings``) is materialized by the jobs
that start a chain or run alone (``prepare_job``, ``retrain_job``, ``nightly_job``); the fold,
evaluate and experiment runs load the value the chain's first run stored."""

import dagster as dg

from cryptoml_pipeline.modeling.models import ZOO

PREPARE_SELECTION = dg.AssetSelection.groups(
    "settings", "ingestion", "features"
) | dg.AssetSelection.assets("fold_plan")

prepare_job = dg.define_asset_job(
    "prepare_job",
    selection=PREPARE_SELECTION,
    description="Ingest, validate, build features and labels, plan walk-forward folds",
)
# every fold-scoped model of the zoo's registry trains in the fold run (a new model joins it
# by being registered in modeling/models/__init__.py); its asset emits predictions and card
FOLD_MODEL_ASSETS = [
    name for m in ZOO.values() if m.scope == "fold" for name in (m.asset_name, m.card_asset_name)
]
ALL_FOLD_MODEL_ASSETS = [
    name
    for m in ZOO.values()
    if m.scope == "all_folds"
    for name in (m.asset_name, m.card_asset_name)
]
train_folds_job = dg.define_asset_job(
    "train_folds_job",
    selection=dg.AssetSelection.assets(
        "fold_model",
        *FOLD_MODEL_ASSETS,
        "feature_importance",
        "shuffled_label_predictions",
    ),
    description="Train one fold's models (transformer, shuffled-label control, LightGBM, "
    "multi-scale LSTM-CNN, PPO) and predict its test window (fold partition)",
    tags={"cryptoml/fold_training": "true"},  # concurrency limit in deploy/dagster.postgres.yaml
)
evaluate_job = dg.define_asset_job(
    "evaluate_job",
    selection=dg.AssetSelection.assets(
        "oos_predictions",
        "backtest",
        *ALL_FOLD_MODEL_ASSETS,  # the stacking ensemble's predictions and cards
        "model_comparison",
        "candidate_model",
        "deployed_model",
        "backtest_report",
    ),
    description="Backtest OOS predictions with baselines, stack the ensemble, compare every "
    "model, gate and deploy, write the report",
)
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=PREPARE_SELECTION,
    description=(
        "Retrain on fresh data: ingest -> features -> fold plan; the retrain sensors then run "
        "every fold (train_folds_job) and evaluate_job (backtest, candidate, deploy gate, report)"
    ),
)
nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=dg.AssetSelection.groups("settings", "ingestion", "features")
    | dg.AssetSelection.assets("latest_signals", "prediction_log", "model_health"),
    description=(
        "Nightly: ingest new bars, features, the deployed model's latest signals, performance "
        "tracking (predictions stored, outcomes filled, model health)"
    ),
)
ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("landing"),
    description="Land one UTC day (partition) of raw candles, funding and open interest via ccxt; "
    "backfill a range of days from the UI or `dagster job backfill`",
)
experiment_job = dg.define_asset_job(
    "experiment_job",
    selection=dg.AssetSelection.assets("experiment_predictions"),
    description="Sweep: train one configuration on one split (a (configuration, split) "
    "partition); `cryptoml experiment --grid FILE` runs every missing partition, or launch a "
    "backfill over the partitions from the UI (through the run queue)",
    tags={"cryptoml/experiment": "true"},  # concurrency limit in deploy/dagster.postgres.yaml
)
experiment_leaderboard_job = dg.define_asset_job(
    "experiment_leaderboard_job",
    selection=dg.AssetSelection.assets("experiment_leaderboard"),
    description="Score every configuration of the sweep (walk-forward, CPCV paths), PBO and "
    "deflated Sharpe of the pick; leaderboard.json / .html and selected.yaml",
)
