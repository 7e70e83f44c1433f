"""Per-fold permutation importance on the test window, and scalers fitted on training rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.features import compute_features, feature_columns
from cryptoml_pipeline.modeling.fold_training import train_fold
from cryptoml_pipeline.modeling.folds import fold_row_masks, walk_forward_folds
from cryptoml_pipeline.modeling.importance import permutation_importance, summarise_importance
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.models import TRANSFORMER
from cryptoml_pipeline.settings import profile_settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")


@pytest.fixture(scope="module")
def trained():
    settings = profile_settings("tiny")
    c = pd.read_parquet(DATA / "market" / "BTC_USDT-1h.parquet")
    c = c[c["timestamp"] >= pd.Timestamp("2024-01-01", tz="UTC")].iloc[: 24 * 130]
    c = c.reset_index(drop=True)
    features = compute_features(c, None, settings.features)
    features["constant_probe"] = 1.0  # permuting a constant cannot change anything
    labels = make_labels(c, settings.target, settings.labels)
    start = c["timestamp"].iloc[24 * 30]
    end = c["timestamp"].iloc[-1]
    wf = settings.walk_forward.model_copy(update={"max_folds": 1})
    (fold,) = walk_forward_folds(start, end, wf)
    model = train_fold(features, labels, fold, settings, "1h")
    return settings, features, labels, fold, model


def test_scaler_is_fitted_on_the_fold_training_rows_only(trained) -> None:
    settings, features, _, fold, model = trained
    masks = fold_row_masks(
        features["timestamp"],
        fold,
        horizon=settings.target.reach,
        timeframe="1h",
        embargo_bars=settings.walk_forward.embargo_bars,
    )
    cols = feature_columns(features)
    x = features[cols].to_numpy()
    fit_mean = np.nanmean(x[masks.fit], axis=0)  # atol: columns centred at 0 differ by 1e-17 sums
    np.testing.assert_allclose(model.scaler.mean, fit_mean, rtol=1e-12, atol=1e-14)
    full_mean = np.nanmean(x, axis=0)
    assert not np.allclose(model.scaler.mean, full_mean)  # the test window did not leak in


def test_permutation_importance_on_the_test_window(trained) -> None:
    settings, features, labels, fold, model = trained
    table = permutation_importance(
        TRANSFORMER.fitted(model), features, labels, fold, settings, "1h"
    )
    assert sorted(table["feature"]) == sorted(model.feature_cols)
    assert table.loc[table["feature"] == "constant_probe", "importance_logloss"].item() == 0.0
    assert (table["importance_logloss"].abs() > 0).sum() >= len(table) // 2
    assert table["n_rows"].iloc[0] <= settings.features.importance.max_rows
    assert set(table["family"]) <= {
        "technical",
        "microstructure",
        "temporal",
        "sentiment_flow",
        "pooled",
        "other",
    }
    assert table["importance_logloss"].is_monotonic_decreasing
    summary = summarise_importance(pd.concat([table, table.assign(fold="x")]))
    assert len(summary) == len(table) and summary["std_importance"].fillna(0).max() == 0
