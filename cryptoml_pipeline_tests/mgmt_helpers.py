"""Test helper: a REAL tiny model (tiny profile, 1 epoch) trained on the shared Binance data,
saved, registered and promoted in a registry database — the starting point of the paper
trading and dashboard tests."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline.market.source import load_market_data
from cryptoml_pipeline.modeling.folds import final_training_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.models import ZOO, FoldInputs
from cryptoml_pipeline.registry.candidates import save_and_register
from cryptoml_pipeline.registry.db import make_engine, upgrade
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline.settings import PipelineSettings, profile_settings


@dataclass
class Deployed:
    engine: Engine
    url: str
    version: str
    settings: PipelineSettings
    features: pd.DataFrame
    labels: pd.DataFrame


@functools.cache
def _train(data_dir: Path, end: str):
    settings = profile_settings("tiny", symbols=("BTC/USDT",))
    end_ts = pd.Timestamp(end, tz="UTC")
    start = end_ts - pd.Timedelta(days=settings.walk_forward.train_days)
    market = load_market_data(
        ParquetStore(data_dir),
        ["BTC/USDT"],
        "1h",
        start,
        end_ts,
        history=pd.Timedelta(days=settings.data.history_days),
    )
    features = build_features(market.candles, market.funding, settings.features, "1h").table
    labels = make_labels(market.candles, settings.target, settings.labels, timeframe="1h")
    fold = final_training_fold(end_ts, settings.walk_forward, timeframe="1h")
    model = ZOO["transformer"].fit_window(FoldInputs(features, labels, fold, settings, "1h"))
    model.manifest["version"] = f"tiny-{end_ts:%Y%m%d}"
    # what defs/assets/deployment.candidate_model adds: the serving fields (live.loader)
    model.manifest.update(
        {
            "symbols": ["BTC/USDT"],
            "universe": ["BTC/USDT"],
            "timeframe": "1h",
            "settings": settings.model_dump(mode="json"),
            "data": {"source": "parquet", "synthetic": False, "train_end": end_ts.isoformat()},
        }
    )
    return settings, features, labels, model


def deploy_tiny_model(
    data_dir: Path, output_dir: Path, end: str = "2025-06-01", url: str | None = None
) -> Deployed:
    """Train (once per process and end date), save, register and promote."""
    settings, features, labels, model = _train(Path(data_dir), end)
    url = url or f"sqlite:///{output_dir / 'cryptoml.db'}"
    engine = make_engine(url)
    upgrade(engine)
    registry = ModelRegistry(engine)
    entry = save_and_register(
        registry, output_dir, model, {"feature_importance": ZOO[model.name].importance(model)}
    )
    registry.promote(entry.version, "test deployment")
    return Deployed(engine, url, entry.version, settings, features, labels)
