"""The model zoo's assets, built by one factory from the registry
(:data:`cryptoml_pipeline.modeling.models.ZOO`).

:func:`zoo_asset` turns a :class:`~cryptoml_pipeline.modeling.models.base.ZooModel` into its
``<asset_name>`` asset: the feature and label tables, the fold plan and the dataset info, plus
the extra inputs the model ``needs`` (``ohlcv``, ``funding``, the ``market`` resource, the
prediction assets of the models it stacks). A scope ``"fold"`` model's asset is partitioned by
walk-forward fold (``gbm_predictions[fold]``, ``lstm_cnn_predictions[fold]``,
``ppo_predictions[fold]``): it trains the model on the fold's purged training window, saves it
under ``output/models/<model>/<fold>`` (tensors / LightGBM text, never pickles) and returns the
test-window predictions — so any one model, or any one fold of it, can be retrained alone from the
UI. A scope ``"all_folds"`` model (``ensemble_predictions``) runs fold by fold in one unpartitioned
asset. Each model's asset also emits its model card as an asset of its own,
``<model>_model_card`` (:attr:`ZooModel.card_asset_name`; per fold, or the list of every fold's
card), shown in the metadata too; ``card.json`` / ``cards.json`` under ``output/models/<model>``
are copies for humans, never read back. ``model_comparison`` takes every registered model's
predictions and cards as inputs and scores each model per fold and as a strategy.

The transformer's assets (``fold_model`` -> ``fold_predictions``) stay hand-written in
``defs/assets/modeling.py`` (``OWN_ASSETS``): its trained model is an asset of its own (reused by
``feature_importance``, resumable from checkpoints); they call the same interface.
"""

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.assets.evaluation import table_metadata
from cryptoml_pipeline.defs.assets.modeling import find_fold, plan_folds
from cryptoml_pipeline.defs.assets.run_settings import RUN_SETTINGS
from cryptoml_pipeline.defs.partitions import fold_partitions
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.evaluation.model_comparison import compare_models, comparison_markdown
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.models import ZOO, FoldInputs, ZooModel, ZooResult, run_model
from cryptoml_pipeline.modeling.models.base import NEEDS, run_all_folds, unavailable
from cryptoml_pipeline.modeling.persistence import to_jsonable
from cryptoml_pipeline.reporting.ui_metadata import model_fold_markdown, model_rows
from cryptoml_pipeline.settings import PipelineSettings

GROUP = "models"
OWN_ASSETS = frozenset({"fold_predictions"})  # the transformer's (defs/assets/modeling.py)
BASE_INS = ("feature_table", "label_table", "fold_plan", "dataset_info", RUN_SETTINGS)


def _model_dir(pipeline: PipelineResource, model: str, fold_key: str) -> Path:
    path = pipeline.output_path / "models" / model / fold_key
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish(result: ZooResult, out_dir: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model card (also written next to the artifact, for humans) and the UI metadata of the
    predictions (the card and its headline)."""
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
    return card, meta


def all_folds(value: Any) -> pd.DataFrame:
    """A partitioned upstream arrives as ``{fold: frame}``: concatenate the non-empty ones."""
    frames = [f for f in (value.values() if isinstance(value, dict) else [value]) if len(f)]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["timestamp"] = out["timestamp"].astype("datetime64[ns, UTC]")
    return out


def model_ins(model: ZooModel, registry: Mapping[str, ZooModel]) -> dict[str, dg.AssetIn]:
    """The upstream assets of ``model``'s asset: the base ones plus what it ``needs``."""
    unknown = set(model.needs) - NEEDS
    if unknown:
        raise ValueError(f"{model.name} needs unknown inputs {sorted(unknown)}; known: {NEEDS}")
    names = [*BASE_INS, *(n for n in ("ohlcv", "funding") if n in model.needs)]
    if "base_predictions" in model.needs:
        names += [registry[m].asset_name for m in model.base_models]
    return {n: _asset_in(n) for n in names}


def _asset_in(name: str) -> dg.AssetIn:
    """``run_settings`` arrives as :class:`PipelineSettings` (the IO manager validates it)."""
    return (
        dg.AssetIn(name, dagster_type=PipelineSettings)
        if name == RUN_SETTINGS
        else dg.AssetIn(name)
    )


def fold_inputs(
    model: ZooModel,
    upstream: Mapping[str, Any],
    context: dg.AssetExecutionContext,
    fold: Fold,
    registry: Mapping[str, ZooModel],
) -> FoldInputs:
    info = upstream["dataset_info"]
    base = None
    if "base_predictions" in model.needs:
        base = {m: all_folds(upstream[registry[m].asset_name]) for m in model.base_models}
    return FoldInputs(
        features=upstream["feature_table"],
        labels=upstream["label_table"],
        fold=fold,
        settings=upstream[RUN_SETTINGS],
        timeframe=info["timeframe"],
        traded=tuple(info["symbols"]),
        candles=upstream.get("ohlcv"),
        funding=upstream.get("funding"),
        market=context.resources.market if "market" in model.needs else None,
        base_predictions=base,
    )


Outcome = tuple[pd.DataFrame, Any, dict[str, Any]]  # predictions, card(s), UI metadata


def _run_fold(
    context: dg.AssetExecutionContext, model: ZooModel, inputs: FoldInputs, n_folds: int
) -> Outcome:
    pipeline: PipelineResource = context.resources.pipeline
    skipped = model.skipped_fold(inputs.settings, inputs.fold, n_folds)
    if skipped:  # outside the model's recent folds: a card with the reason, no training
        result, out = unavailable(model.name, inputs.fold, skipped), None
    elif not model.enabled(inputs.settings):
        result, out = run_model(model, inputs, None), None  # the disabled card: no file written
    else:
        out = _model_dir(pipeline, model.name, inputs.fold.key)
        result = run_model(model, inputs, out)
    card, meta = publish(result, out)
    return result.predictions, card, meta


def _run_all_folds(
    context: dg.AssetExecutionContext, model: ZooModel, inputs: FoldInputs, folds: list[Fold]
) -> Outcome:
    reason = None if model.enabled(inputs.settings) else "disabled in settings"
    reason = reason or model.precondition(inputs)
    if reason:
        result = unavailable(model.name, folds[0], reason)
        meta = {"status": "unavailable", "reason": reason}
        return result.predictions, [to_jsonable(result.card)], meta
    preds, cards = run_all_folds(model, inputs, folds)
    cards = to_jsonable(cards)
    out_dir = context.resources.pipeline.output_path / "models" / model.name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cards.json").write_text(json.dumps(cards, indent=2))  # for humans
    meta = {
        "rows": len(preds),
        "folds_trained": sum(c.get("status") == "trained" for c in cards),
        "model_cards": dg.MetadataValue.json(cards),
    }
    return preds, cards, meta


def zoo_asset(
    model: ZooModel, registry: Mapping[str, ZooModel] | None = None
) -> dg.AssetsDefinition:
    """The ``model.asset_name`` asset of one zoo model (``registry``: where the models it stacks
    are found; default the zoo)."""
    registry = ZOO if registry is None else registry
    resources = {"pipeline"} | ({"market"} if "market" in model.needs else set())
    per_fold = model.scope == "fold"

    @dg.multi_asset(
        name=model.asset_name,
        partitions_def=fold_partitions if per_fold else None,
        ins=model_ins(model, registry),
        outs=model_outs(model),
        required_resource_keys=resources,
    )
    def _asset(context: dg.AssetExecutionContext, **upstream: Any) -> Iterator[dg.Output]:
        plan = upstream["fold_plan"]
        if per_fold:
            fold = find_fold(plan, context.partition_key)
            inputs = fold_inputs(model, upstream, context, fold, registry)
            preds, card, meta = _run_fold(context, model, inputs, len(plan_folds(plan)))
        else:
            folds = plan_folds(plan)
            inputs = fold_inputs(model, upstream, context, folds[0], registry)
            preds, card, meta = _run_all_folds(context, model, inputs, folds)
        yield dg.Output(preds, output_name=model.asset_name, metadata=meta)
        yield dg.Output(card, output_name=model.card_asset_name, metadata=card_metadata(card))

    return _asset


def model_outs(model: ZooModel) -> dict[str, dg.AssetOut]:
    """A zoo model's asset emits its predictions and its model card(s) (always both)."""
    return {
        model.asset_name: dg.AssetOut(group_name=GROUP, description=model.description),
        model.card_asset_name: dg.AssetOut(
            group_name=GROUP,
            description=f"The model card(s) of {model.name} (what {model.asset_name} was "
            "trained on, its test metrics, its artifact), read by model_comparison",
        ),
    }


def card_metadata(card: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    cards = card if isinstance(card, list) else [card]
    return {"status": ", ".join(sorted({str(c.get("status")) for c in cards}))}


def model_cards(model: ZooModel, value: Any) -> list[dict[str, Any]]:
    """A model's cards as its card asset arrives: ``{fold: card}`` (scope ``"fold"``, in fold-key
    order) or the all-fold model's list."""
    if model.scope == "fold":
        return [value[k] for k in sorted(value)]
    return list(value)


def comparison_asset(registry: Mapping[str, ZooModel]) -> dg.AssetsDefinition:
    """``model_comparison`` over every model of ``registry``."""
    ins = {m.asset_name: dg.AssetIn(m.asset_name) for m in registry.values()}
    ins |= {m.card_asset_name: dg.AssetIn(m.card_asset_name) for m in registry.values()}
    for name in ("ohlcv", "funding", *BASE_INS):
        ins[name] = _asset_in(name)

    @dg.asset(
        name="model_comparison",
        group_name=GROUP,
        ins=ins,
    )
    def model_comparison(context: dg.AssetExecutionContext, **upstream: Any) -> dict[str, Any]:
        """Rank IC / IC / t / hit rate, net Sharpe by year, break-even fee, accuracy, macro-F1,
        log-loss per model and fold; each model's strategy through the same
        engine and simulator; the ensemble's lift over its best base model."""
        preds = {}
        for m in registry.values():
            value = upstream[m.asset_name]
            preds[m.name] = all_folds(value) if m.scope == "fold" else value
        for frame in preds.values():
            if len(frame):
                frame["timestamp"] = frame["timestamp"].astype("datetime64[ns, UTC]")
        cards = {m.name: model_cards(m, upstream[m.card_asset_name]) for m in registry.values()}
        comparison = compare_models(
            preds,
            cards,
            candles=upstream["ohlcv"],
            funding=upstream["funding"],
            features=upstream["feature_table"],
            folds=plan_folds(upstream["fold_plan"]),
            settings=upstream[RUN_SETTINGS],
            timeframe=upstream["dataset_info"]["timeframe"],
            labels=upstream["label_table"],
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

    return model_comparison


# the module's assets: one per registered model (bar the transformer's own) and the comparison
ZOO_ASSETS = [zoo_asset(m) for m in ZOO.values() if m.asset_name not in OWN_ASSETS]
COMPARISON_ASSETS = [comparison_asset(ZOO)]
