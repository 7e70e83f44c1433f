"""Gradient-boosted baseline: LightGBM (CPU) on the same features, labels and folds as the nets.

Published benchmarks often find boosted trees on hand-made features beating deep sequence models,
so every comparison shows this baseline. Design:

* **Inputs**: each row's feature vector plus lagged copies (``gbm.lags``, e.g. 1 and 4 bars back,
  of the same symbol and only when the lagged row is exactly that many bars earlier — otherwise
  NaN, which LightGBM treats as missing). Lags look backwards only, so the design is causal.
  Trees need no scaling, so nothing is fitted outside the training window.
* **Training** on the fold's purged *fit* rows of every universe member (pooled), early stopping
  on the purged *validation* rows; seeded and deterministic (``deterministic=True``, column-wise
  histograms). By ``settings.target.kind``: ``vol_scaled_return`` -> L2 regression on the
  winsorised volatility-scaled forward return; ``classes`` -> multiclass (5 classes, index =
  label + 2, configured class weights); ``triple_barrier`` -> 3 classes weighted by label
  uniqueness.
* **Predictions** only for the fold's test window, in the one prediction schema
  (``modeling/predictions.py``): a regression forecast becomes ``expected_return =
  expm1(z * rv * sqrt(h))`` with the causal per-bar volatility ``rv_<vol_window>``, and its
  confidence is the rank of ``|z|`` among the model's own validation forecasts; a classifier's
  expected return is its probabilities times the class-conditional mean realised returns of the
  training rows; its confidence is the rank of |expected return| among validation forecasts.
* **Persistence**: LightGBM's own text model format (no pickle) + a JSON manifest carrying its
  sha256, verified on load.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import model_feature_columns
from cryptoml_pipeline.modeling.fold_training import (
    fold_from_dict,
    fold_masks,
    fold_to_dict,
)
from cryptoml_pipeline.modeling.folds import Fold, FoldMasks, strided
from cryptoml_pipeline.modeling.labels import scoring_returns
from cryptoml_pipeline.modeling.persistence import (
    ModelChecksumError,
    _atomic_write,
    file_sha256,
    to_jsonable,
)
from cryptoml_pipeline.modeling.predictions import (
    N_CLASSES,
    assemble,
    class_mean_returns,
    expected_from_probs,
    expected_from_scaled,
    label_to_class,
    rank_confidence,
)
from cryptoml_pipeline.modeling.training import inverse_frequency_weights
from cryptoml_pipeline.settings import GbmConfig, PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta

logger = logging.getLogger(__name__)

WINSOR = 5.0  # |vol-scaled target| clipped here for the regression fit
CONFIDENCE_QUANTILES = 201  # stored quantiles of |validation forecast| (confidence reference)
MODEL_FILE = "gbm.txt"
MANIFEST_FILE = "manifest.json"


@dataclass
class GbmFoldModel:
    fold: Fold
    booster: lgb.Booster
    feature_cols: list[str]
    manifest: dict


DESIGN_DTYPE = np.float32  # LightGBM's inputs: half the memory of float64 (bins are coarser)


def design_matrix(
    features: pd.DataFrame, feature_cols: list[str], lags: tuple[int, ...], timeframe: str
) -> tuple[np.ndarray, list[str]]:
    """``[n, F * (1 + len(lags))]`` float32: the features, then each lag's copy (NaN if the row
    ``k`` places back is another symbol or not exactly ``k`` bars earlier)."""
    base = features[feature_cols].to_numpy(dtype=DESIGN_DTYPE)
    names = list(feature_cols)
    blocks = [base]
    if lags:
        ts = pd.DatetimeIndex(features["timestamp"].astype("datetime64[ns, UTC]")).asi8
        sym = features["symbol"].astype(str).to_numpy()
        bar = timeframe_to_timedelta(timeframe).value
        n = len(features)
        for k in lags:
            if k <= 0:
                raise InputError(f"gbm.lags must be positive, got {k}")
            lagged = np.full_like(base, np.nan)
            if k < n:
                ok = (sym[k:] == sym[:-k]) & (ts[k:] - ts[:-k] == k * bar)
                lagged[k:][ok] = base[:-k][ok]
            blocks.append(lagged)
            names += [f"{c}__lag{k}" for c in feature_cols]
    return np.hstack(blocks), names


def _lagged_design(
    base: np.ndarray,
    ts: np.ndarray | None,
    sym: np.ndarray | None,
    lags: tuple[int, ...],
    timeframe: str,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`design_matrix`'s rows ``rows`` (all when None) of the table ``base`` (``[n, F]``,
    time stamps ``ts`` in ns and symbols ``sym`` per row): the same lag rule, evaluated at those
    rows only (their lags still come from every row of the table)."""
    take = np.arange(len(base)) if rows is None else np.asarray(rows, dtype=np.int64)
    blocks = [base[take]]
    if lags:
        assert ts is not None and sym is not None
        bar = timeframe_to_timedelta(timeframe).value
        for k in lags:
            if k <= 0:
                raise InputError(f"gbm.lags must be positive, got {k}")
            lagged = np.full((len(take), base.shape[1]), np.nan, dtype=base.dtype)
            back = take - k
            ok = back >= 0
            src = np.where(ok, back, 0)
            ok &= (sym[take] == sym[src]) & (ts[take] - ts[src] == k * bar)
            lagged[ok] = base[src[ok]]
            blocks.append(lagged)
    return np.hstack(blocks)


def design_names(feature_cols: list[str], lags: tuple[int, ...]) -> list[str]:
    """:func:`design_matrix`'s column names."""
    return list(feature_cols) + [f"{c}__lag{k}" for k in lags for c in feature_cols]


def _stamps(features: pd.DataFrame) -> np.ndarray:
    return pd.DatetimeIndex(features["timestamp"].astype("datetime64[ns, UTC]")).asi8


REQUIRED_MAX_NAN_SHARE = 0.2


def required_columns(features: pd.DataFrame, feature_cols: list[str]) -> list[str]:
    """Features a row must have to be used: those that are missing only during warm-up (at
    most 20 % NaN over the table). A family some universe members lack altogether (funding of a
    spot-only member, open interest) stays a LightGBM missing value instead of dropping those
    members from the pooled training set."""
    share = features[feature_cols].isna().mean()
    return [c for c in feature_cols if share[c] <= REQUIRED_MAX_NAN_SHARE]


def _complete(features: pd.DataFrame, columns: list[str]) -> np.ndarray:
    if not columns:
        return np.ones(len(features), dtype=bool)
    return np.isfinite(features[columns].to_numpy(dtype=np.float64)).all(axis=1)


def _rank_ic_eval(preds: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
    """Validation rank IC (Spearman of the forecast against the target), higher is better:
    early stopping on forecast skill instead of L2, which a weak signal barely moves."""
    y = np.asarray(data.get_label(), dtype=np.float64)
    p = np.asarray(preds, dtype=np.float64)
    if len(p) < 3 or p.std() == 0 or y.std() == 0:
        return "rank_ic", 0.0, True
    ranks_p, ranks_y = pd.Series(p).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    return "rank_ic", float(np.corrcoef(ranks_p, ranks_y)[0, 1]), True


def _params(cfg: GbmConfig, seed: int, *, n_classes: int | None) -> dict:
    metric = "l2" if cfg.stopping_metric == "l2" else "None"
    task = (
        {"objective": "regression", "metric": metric}
        if n_classes is None
        else {"objective": "multiclass", "num_class": n_classes}
    )
    return {
        **task,
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_child_samples": cfg.min_child_samples,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1 if cfg.bagging_fraction < 1 else 0,
        "lambda_l2": cfg.lambda_l2,
        "num_threads": cfg.num_threads,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def train_gbm_fold(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    *,
    masks: FoldMasks | None = None,
) -> GbmFoldModel:
    """Fit LightGBM on the fold's purged fit rows, early-stopping on its validation rows.

    ``masks``: explicit purged fit / validation rows instead of the fold's own (combinatorial
    purged CV trains on several groups around its test groups)."""
    cfg = settings.gbm
    feature_cols = model_feature_columns(features, settings.features)
    if not feature_cols:
        raise InputError("the feature table has no feature columns")
    names = design_names(feature_cols, cfg.lags)
    kind = settings.target.kind
    target = labels["target"].to_numpy(dtype=np.float64)
    realised = scoring_returns(labels)
    sample_w = labels["weight"].to_numpy(dtype=np.float64)
    required = required_columns(features, feature_cols)
    usable = np.isfinite(target) & _complete(features, required)
    masks = masks if masks is not None else fold_masks(features, fold, settings, timeframe)
    # one training row every training.row_stride bars per symbol (fit and validation rows)
    masks = strided(masks, features["timestamp"], timeframe, settings.training.row_stride)
    fit, val = masks.fit & usable, masks.val & usable
    if fit.sum() < 2 * cfg.min_child_samples:
        raise InputError(
            f"fold {fold.key}: {int(fit.sum())} usable fit rows, too few for LightGBM "
            f"(min_child_samples={cfg.min_child_samples})"
        )
    n_classes: int | None
    if kind == "vol_scaled_return":
        n_classes, y_all, w_all = None, np.clip(target, -WINSOR, WINSOR), np.ones(len(target))
        weights = None
    elif kind == "classes":
        n_classes = N_CLASSES
        y_all = np.where(usable, np.nan_to_num(target) + 2, -1).astype(np.int64)
        weights = (
            list(settings.training.class_weights)
            if settings.training.class_weights is not None
            else inverse_frequency_weights(label_to_class(target[fit]))
        )
        w_all = np.asarray(weights)[np.clip(y_all, 0, N_CLASSES - 1)]
    else:  # triple barrier: -1, 0, 1 -> 0, 1, 2, weighted by uniqueness
        n_classes, weights = 3, None
        y_all = np.where(usable, np.nan_to_num(target) + 1, -1).astype(np.int64)
        w_all = np.nan_to_num(sample_w, nan=0.0)
    # the design (float32) of the fit and validation rows only: never the whole pooled table
    base = features[feature_cols].to_numpy(dtype=DESIGN_DTYPE)
    ts, sym = _stamps(features), features["symbol"].astype(str).to_numpy()
    X_fit = _lagged_design(base, ts, sym, cfg.lags, timeframe, np.flatnonzero(fit))
    X_val = _lagged_design(base, ts, sym, cfg.lags, timeframe, np.flatnonzero(val))
    del base
    train_set = lgb.Dataset(
        X_fit, y_all[fit], weight=w_all[fit], feature_name=names, free_raw_data=True
    )
    valid_sets, callbacks, feval = [], [], None
    if n_classes is None and cfg.stopping_metric == "rank_ic":
        feval = _rank_ic_eval
    stop = n_classes is not None or cfg.stopping_metric != "none"
    if val.any() and stop:
        valid_sets = [lgb.Dataset(X_val, y_all[val], weight=w_all[val], reference=train_set)]
        callbacks = [lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)]
    start = time.perf_counter()
    booster = lgb.train(
        _params(cfg, settings.training.seed, n_classes=n_classes),
        train_set,
        num_boost_round=cfg.n_estimators,
        valid_sets=valid_sets,
        callbacks=callbacks,
        feval=feval,
    )
    seconds = time.perf_counter() - start
    best_iter = int(booster.best_iteration or booster.current_iteration())
    # class-conditional mean realised returns on the fit rows (classifiers' expected return)
    class_returns = None
    if n_classes is not None:
        class_returns = class_mean_returns(y_all[fit], realised[fit], n_classes).tolist()
    val_rank_ic, confidence_ref = None, []
    if val.any():
        raw_val = np.asarray(booster.predict(X_val, num_iteration=best_iter))
        score = raw_val if n_classes is None else raw_val @ np.asarray(class_returns)
        confidence_ref = np.quantile(np.abs(score), np.linspace(0, 1, CONFIDENCE_QUANTILES))
        ok = np.isfinite(realised[val])
        if ok.sum() > 2:
            val_rank_ic = float(
                pd.Series(score[ok]).rank().corr(pd.Series(realised[val][ok]).rank())
            )
    logger.info(
        "fold %s gbm (%s, pooled over %d symbols): %d fit / %d val rows, %d trees (best %d), "
        "validation rank IC %s, %.1fs",
        fold.key,
        kind,
        int(features.loc[fit, "symbol"].nunique()),
        int(fit.sum()),
        int(val.sum()),
        booster.current_iteration(),
        best_iter,
        f"{val_rank_ic:.3f}" if val_rank_ic is not None else "n/a",
        seconds,
    )
    manifest = to_jsonable(
        {
            "model_class": "LightGBM",
            "lightgbm_version": lgb.__version__,
            "fold": fold_to_dict(fold),
            "timeframe": timeframe,
            "target": settings.target.model_dump(mode="json"),
            "n_classes": n_classes,
            "class_returns": class_returns,
            "confidence_reference": list(map(float, confidence_ref)),
            "feature_cols": feature_cols,
            "required_cols": required,
            "design_columns": names,
            "gbm_config": cfg.model_dump(mode="json"),
            "best_iteration": best_iter,
            "n_train_samples": int(fit.sum()),
            "n_val_samples": int(val.sum()),
            "row_stride": settings.training.row_stride,
            "train_symbols": sorted(features.loc[fit, "symbol"].astype(str).unique().tolist()),
            "val_rank_ic": val_rank_ic,
            "class_weights": weights,
            "train_seconds": seconds,
            "device": "cpu",
        }
    )
    return GbmFoldModel(fold=fold, booster=booster, feature_cols=feature_cols, manifest=manifest)


def gbm_forecast(
    model: GbmFoldModel, features: pd.DataFrame, rows: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(expected_return, confidence, five-class probabilities or None)`` for ``rows``."""
    sigma = None
    if model.manifest.get("n_classes", N_CLASSES) is None:
        vol = f"rv_{model.manifest['target']['vol_window']}"
        sigma = features[vol].to_numpy(dtype=np.float64)[rows]
    return forecast_design_rows(model, X[rows], sigma)


def forecast_design_rows(
    model: GbmFoldModel,
    X: np.ndarray,
    sigma: np.ndarray | None,
    *,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`gbm_forecast` of design rows ``X`` (``sigma``: their ``rv_<vol_window>``, read by a
    regression model only); ``num_threads`` for LightGBM (1 for a handful of rows: starting
    threads costs more than the trees)."""
    m = model.manifest
    n_classes = m.get("n_classes", N_CLASSES)
    n = len(X)
    extra = {} if num_threads is None else {"num_threads": num_threads}
    raw = (
        np.asarray(model.booster.predict(X, num_iteration=int(m["best_iteration"]), **extra))
        if n
        else np.zeros((0,) if n_classes is None else (0, n_classes))
    )
    ref = np.asarray(m.get("confidence_reference") or [], dtype=np.float64)
    if n_classes is None:
        target = m["target"]
        if sigma is None:
            raise InputError(f"a regression gbm model needs rv_{target['vol_window']}")
        expected = expected_from_scaled(raw, sigma, int(target["horizon"]))
        return expected, rank_confidence(raw, ref), None
    raw = raw.reshape(n, n_classes)
    expected = expected_from_probs(raw, np.asarray(m["class_returns"]))
    if n_classes == N_CLASSES:
        probs = raw
    else:  # triple barrier (-1, 0, 1) into the middle three of the five class columns
        probs = np.zeros((n, N_CLASSES))
        probs[:, 1:4] = raw
    return expected, rank_confidence(expected, ref), probs


def forecast_table_rows(
    model: GbmFoldModel,
    columns: Mapping[str, np.ndarray],
    ts: np.ndarray,
    sym: np.ndarray,
    row_mask: np.ndarray,
    timeframe: str,
    *,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`predict_gbm_rows`' numbers without a DataFrame: the table is ``columns`` (name ->
    ``[n]`` float64, every feature column of the model), ``ts`` (ns) and ``sym`` per row, in
    the table's row order. Returns ``(rows, expected_return, confidence, probabilities)`` of the
    usable rows selected by ``row_mask``, as :func:`predict_gbm_rows` selects and computes
    them (before :func:`~cryptoml_pipeline.modeling.predictions.assemble`)."""
    missing = [c for c in model.feature_cols if c not in columns]
    if missing:
        raise InputError(f"feature table lacks the gbm model's features {missing}")
    m = model.manifest
    lags = tuple(m["gbm_config"]["lags"])
    required = m.get("required_cols", model.feature_cols)
    mask = np.asarray(row_mask, dtype=bool).copy()
    for c in required:
        mask &= np.isfinite(np.asarray(columns[c], dtype=np.float64))
    rows = np.flatnonzero(mask)
    base = np.empty((len(ts), len(model.feature_cols)), dtype=DESIGN_DTYPE)
    for j, c in enumerate(model.feature_cols):
        base[:, j] = columns[c]
    X = _lagged_design(base, ts, sym, lags, timeframe, rows)
    sigma = None
    if m.get("n_classes", N_CLASSES) is None:
        sigma = np.asarray(columns[f"rv_{m['target']['vol_window']}"], dtype=np.float64)[rows]
    return rows, *forecast_design_rows(model, X, sigma, num_threads=num_threads)


def predict_gbm_fold(
    model: GbmFoldModel,
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    *,
    traded: tuple[str, ...] | list[str] | None = None,
) -> pd.DataFrame:
    """Predictions for the usable rows of ``fold``'s test window (the prediction schema), for
    the ``traded`` symbols only when given.

    Raises :class:`InputError` if the test window starts before the model's own (leakage).
    """
    if fold.test_start < model.fold.test_start:
        raise InputError(
            f"fold {fold.key}: test window starts {fold.test_start}, before the end of the "
            f"training window of gbm model {model.fold.key} ({model.fold.test_start})"
        )
    missing = [c for c in model.feature_cols if c not in features.columns]
    if missing:
        raise InputError(f"fold {fold.key}: feature table lacks the gbm model's features {missing}")
    test = fold_masks(features, fold, settings, timeframe).test
    if traded is not None:
        test = test & features["symbol"].astype(str).isin(list(traded)).to_numpy()
    return predict_gbm_rows(model, features, labels, test, settings, timeframe, tag=fold.key)


def predict_gbm_rows(
    model: GbmFoldModel,
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    row_mask: np.ndarray,
    settings: PipelineSettings,
    timeframe: str,
    *,
    tag: str,
) -> pd.DataFrame:
    """Predictions (the prediction schema) for the usable rows selected by ``row_mask`` — no
    leakage guard: anything evaluated goes through :func:`predict_gbm_fold`."""
    missing = [c for c in model.feature_cols if c not in features.columns]
    if missing:
        raise InputError(f"{tag}: feature table lacks the gbm model's features {missing}")
    lags = tuple(model.manifest["gbm_config"]["lags"])
    required = model.manifest.get("required_cols", model.feature_cols)
    usable = _complete(features, required)
    rows = np.flatnonzero(np.asarray(row_mask, dtype=bool) & usable)
    # the design (float32) of the predicted rows only
    base = features[model.feature_cols].to_numpy(dtype=DESIGN_DTYPE)
    X = _lagged_design(
        base, _stamps(features), features["symbol"].astype(str).to_numpy(), lags, timeframe, rows
    )
    sigma = None
    if model.manifest.get("n_classes", N_CLASSES) is None:
        sigma = features[f"rv_{model.manifest['target']['vol_window']}"].to_numpy(np.float64)[rows]
    expected, confidence, probs = forecast_design_rows(model, X, sigma)
    return assemble(
        timestamps=features["timestamp"].iloc[rows],
        symbols=features["symbol"].iloc[rows].astype(str).to_numpy(),
        fold=tag,
        expected_return=expected,
        confidence=confidence,
        labels=settings.labels,
        probs=probs,
        label=labels["label"].to_numpy(dtype=np.float64)[rows] if labels is not None else None,
    )


def save_gbm(directory: Path, model: GbmFoldModel) -> Path:
    """``gbm.txt`` (LightGBM text format) + ``manifest.json`` with its sha256; atomic writes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = model.booster.model_to_string(num_iteration=int(model.manifest["best_iteration"]))
    path = directory / MODEL_FILE
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    manifest = {**model.manifest, "model_file": MODEL_FILE, "model_sha256": file_sha256(path)}
    body = json.dumps(to_jsonable(manifest), indent=2, sort_keys=True, allow_nan=False)
    _atomic_write(directory / MANIFEST_FILE, lambda fh: fh.write(body.encode("utf-8")))
    return directory


def load_gbm(directory: Path) -> GbmFoldModel:
    """Load after verifying the model file's sha256 against the manifest."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise InputError(f"no gbm manifest at {manifest_path}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("model_class") != "LightGBM":
        raise InputError(f"{manifest_path}: not a LightGBM model ({manifest.get('model_class')})")
    path = directory / str(manifest.get("model_file", MODEL_FILE))
    if not path.is_file():
        raise InputError(f"gbm model file missing: {path}")
    actual, expected = file_sha256(path), manifest.get("model_sha256")
    if actual != expected:
        raise ModelChecksumError(
            f"checksum mismatch for {path}: sha256 {actual} != manifest {expected}"
        )
    booster = lgb.Booster(model_str=path.read_text(encoding="utf-8"))
    return GbmFoldModel(
        fold=fold_from_dict(manifest["fold"]),
        booster=booster,
        feature_cols=list(manifest["feature_cols"]),
        manifest=manifest,
    )
