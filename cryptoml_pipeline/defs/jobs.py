"""Jobs. The main job is split in three because fold partitions only exist once the plan exists:
``prepare_job`` (data -> features -> labels -> fold_plan) -> ``train_folds_job`` per fold partition
-> ``evaluate_job`` (OOS predictions -> backtest -> candidate -> deploy gate -> report).
``cryptoml run`` drives the three in order."""

import dagster as dg

PREPARE_SELECTION = dg.AssetSelection.groups("ingestion", "features") | dg.AssetSelection.assets(
    "fold_plan"
)

prepare_job = dg.define_asset_job(
    "prepare_job",
    selection=PREPARE_SELECTION,
    description="Ingest, validate, build features and labels, plan walk-forward folds",
)
train_folds_job = dg.define_asset_job(
    "train_folds_job",
    selection=dg.AssetSelection.assets("fold_model", "fold_predictions"),
    description="Train one fold's model and predict its test window (fold partition)",
)
evaluate_job = dg.define_asset_job(
    "evaluate_job",
    selection=dg.AssetSelection.assets(
        "oos_predictions", "backtest", "candidate_model", "deployed_model", "backtest_report"
    ),
    description="Backtest OOS predictions with baselines, gate and deploy, write the report",
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
    selection=dg.AssetSelection.groups("ingestion", "features")
    | dg.AssetSelection.assets("latest_signals"),
    description="Nightly: ingest new bars, features, the deployed model's latest signals",
)
