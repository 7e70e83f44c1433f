"""The one prediction schema every model emits, and the rules that fill it.

Columns (:data:`PREDICTION_COLUMNS`): ``timestamp`` (candle open time of the row predicted from,
UTC), ``symbol``, ``fold``, ``expected_return`` (the expected simple return over the target's
horizon, from the next bar's open, as a fraction), ``confidence`` in [0, 1], ``signal`` (the
spec's integer -2..2, derived once by :func:`signal_from_expected`), the five class
probabilities ``p_m2 .. p_p2`` (NaN for models without them), ``pred_class`` (class index 0..4 =
label + 2: the argmax for classifiers, the class of ``expected_return`` otherwise) and ``label``
(the realised class when known, for the class metrics).

The label <-> class mapping (``class index = label + 2``), the probability column names and the
probability math (confidence from entropy or top-two margin, signal from the argmax, the class
returns and the expected move) are defined here once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.labels import classify_returns
from cryptoml_pipeline.settings import LabelConfig

LABEL_VALUES: tuple[int, ...] = (-2, -1, 0, 1, 2)
PROB_COLUMNS: list[str] = ["p_m2", "p_m1", "p_0", "p_p1", "p_p2"]
N_CLASSES = len(LABEL_VALUES)  # class k = label k - 2
PREDICTION_COLUMNS: list[str] = [
    "timestamp",
    "symbol",
    "fold",
    "expected_return",
    "confidence",
    "signal",
    *PROB_COLUMNS,
    "pred_class",
    "label",
]
STRONG_CONFIDENCE = 0.5  # confidence at or above which a signal is "strong" (|signal| = 2)

_prob = pa.Column(float, pa.Check.in_range(0.0, 1.0), nullable=True)
PREDICTION_SCHEMA = pa.DataFrameSchema(
    {
        "timestamp": pa.Column("datetime64[ns, UTC]"),
        "symbol": pa.Column(str),
        "fold": pa.Column(str),
        "expected_return": pa.Column(float, pa.Check.gt(-1.0), nullable=True),
        "confidence": pa.Column(float, pa.Check.in_range(0.0, 1.0), nullable=True),
        "signal": pa.Column("int64", pa.Check.isin(list(LABEL_VALUES))),
        **{c: _prob for c in PROB_COLUMNS},
        "pred_class": pa.Column("int64", pa.Check.in_range(0, 4)),
        "label": pa.Column(float, nullable=True),
    },
    strict=True,
    ordered=True,
)


def label_to_class(label: np.ndarray) -> np.ndarray:
    """Label in {-2..2} -> class index in {0..4} (int64). Labels must be finite."""
    arr = np.asarray(label, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InputError("label_to_class: labels contain NaN/inf; drop unlabelled rows first")
    return (np.rint(arr) + 2).astype(np.int64)


def class_to_signal(cls: np.ndarray) -> np.ndarray:
    """Class index in {0..4} -> signal in {-2..2} (int64)."""
    return np.asarray(cls).astype(np.int64) - 2


def validate_predictions(frame: pd.DataFrame, *, what: str = "predictions") -> pd.DataFrame:
    """Validate against :data:`PREDICTION_SCHEMA`; one-line :class:`InputError` on failure."""
    try:
        return PREDICTION_SCHEMA.validate(frame, lazy=False)
    except (pa.errors.SchemaError, pa.errors.SchemaErrors) as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"{what} do not follow the prediction schema: {first}") from None


def empty_predictions() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype="float64") for c in PREDICTION_COLUMNS})
    out["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
    out["symbol"] = pd.Series(dtype=str)
    out["fold"] = pd.Series(dtype=str)
    out["signal"] = pd.Series(dtype="int64")
    out["pred_class"] = pd.Series(dtype="int64")
    return out[PREDICTION_COLUMNS]


def signal_from_expected(expected_return: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """The spec's integer signal, derived once: ``sign(expected_return)`` times 2 when
    ``confidence >= STRONG_CONFIDENCE`` else 1; 0 where the expected return is 0 or unknown.
    Whether a signal is traded (the cost filter, hysteresis, minimum hold) is decided by the
    execution core, not here."""
    er = np.asarray(expected_return, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    strength = np.where(np.nan_to_num(conf, nan=0.0) >= STRONG_CONFIDENCE, 2, 1)
    sign = np.sign(np.nan_to_num(er, nan=0.0)).astype(np.int64)
    return (sign * strength).astype(np.int64)


def class_mean_returns(
    classes: np.ndarray, realised: np.ndarray, n_classes: int = 5, *, shrink: float = 50.0
) -> np.ndarray:
    """Mean realised return per class on TRAINING rows, shrunk towards the overall mean with a
    prior weight of ``shrink`` rows (a class with few rows keeps the overall mean)."""
    cls = np.asarray(classes, dtype=np.int64)
    r = np.asarray(realised, dtype=np.float64)
    ok = np.isfinite(r) & (cls >= 0) & (cls < n_classes)
    cls, r = cls[ok], r[ok]
    overall = float(r.mean()) if len(r) else 0.0
    sums = np.bincount(cls, weights=r, minlength=n_classes)[:n_classes]
    counts = np.bincount(cls, minlength=n_classes)[:n_classes].astype(np.float64)
    return (sums + shrink * overall) / (counts + shrink)


def expected_from_probs(probs: np.ndarray, returns_by_class: np.ndarray) -> np.ndarray:
    """``sum_k p_k * r_k`` per row."""
    p = np.asarray(probs, dtype=np.float64)
    r = np.asarray(returns_by_class, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(r):
        raise InputError(f"{p.shape} class probabilities but {len(r)} class returns")
    return p @ r


def expected_from_scaled(scaled: np.ndarray, sigma: np.ndarray, horizon: int) -> np.ndarray:
    """A volatility-scaled log-return forecast back to a simple return over the horizon:
    ``expm1(scaled * sigma * sqrt(h))`` with ``sigma`` the causal per-bar volatility."""
    z = np.asarray(scaled, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    return np.expm1(z * s * np.sqrt(float(horizon)))


def rank_confidence(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1]: the share of ``reference`` magnitudes (e.g. the model's own
    validation forecasts) below each ``|value|``. NaN stays NaN; no reference gives 0.5."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    ref = np.sort(np.abs(np.asarray(reference, dtype=np.float64)))
    ref = ref[np.isfinite(ref)]
    if len(ref) == 0:
        return np.where(np.isfinite(v), 0.5, np.nan)
    out = np.searchsorted(ref, v, side="right") / len(ref)
    return np.where(np.isfinite(v), out, np.nan)


def assemble(
    *,
    timestamps: pd.Series | np.ndarray,
    symbols: pd.Series | np.ndarray,
    fold: str,
    expected_return: np.ndarray,
    confidence: np.ndarray,
    labels: LabelConfig,
    probs: np.ndarray | None = None,
    label: np.ndarray | None = None,
) -> pd.DataFrame:
    """A frame in the prediction schema from a model's raw outputs (the one constructor)."""
    n = len(expected_return)
    er = np.asarray(expected_return, dtype=np.float64)
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    out = pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
            .as_unit("ns")
            .to_numpy()
            if n
            else pd.Series(dtype="datetime64[ns, UTC]"),
            "symbol": np.asarray(symbols, dtype=object).astype(str),
            "fold": np.full(n, fold, dtype=object),
        }
    )
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    out["symbol"] = out["symbol"].astype(str)
    out["fold"] = out["fold"].astype(str)
    out["expected_return"] = er
    out["confidence"] = conf
    out["signal"] = signal_from_expected(er, conf)
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64).reshape(n, len(PROB_COLUMNS))
        for j, col in enumerate(PROB_COLUMNS):
            out[col] = p[:, j]
        pred_class = p.argmax(axis=1).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    else:
        for col in PROB_COLUMNS:
            out[col] = np.nan
        cls = classify_returns(
            er, weak_threshold=labels.weak_threshold, strong_threshold=labels.strong_threshold
        )
        pred_class = (np.nan_to_num(cls, nan=0.0) + 2).astype(np.int64)
    out["pred_class"] = pred_class
    out["label"] = np.asarray(label, dtype=np.float64) if label is not None else np.full(n, np.nan)
    return out[PREDICTION_COLUMNS]


def conform(
    frame: pd.DataFrame,
    *,
    labels: LabelConfig,
    class_returns: np.ndarray | list[float] | None = None,
    keep_signal: bool = False,
) -> pd.DataFrame:
    """Bring a model's raw prediction frame (``timestamp, symbol, fold``, probabilities or an
    ``expected_return``, ``confidence``, ``label``) into the prediction schema: the expected
    return from the probabilities and ``class_returns`` when the frame has none; the signal
    derived by :func:`signal_from_expected` unless ``keep_signal`` (a policy model's position,
    which has no expected return)."""
    out = frame.copy()
    has_probs = all(c in out.columns for c in PROB_COLUMNS)
    if "expected_return" not in out.columns:
        if has_probs and class_returns is not None and len(out):
            out["expected_return"] = expected_from_probs(
                out[PROB_COLUMNS].to_numpy(np.float64), np.asarray(class_returns)
            )
        else:
            out["expected_return"] = np.nan
    for col in PROB_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    if "confidence" not in out.columns:
        out["confidence"] = np.nan
    out["confidence"] = np.clip(out["confidence"].to_numpy(np.float64), 0.0, 1.0)
    if not keep_signal or "signal" not in out.columns:
        out["signal"] = signal_from_expected(
            out["expected_return"].to_numpy(np.float64), out["confidence"].to_numpy(np.float64)
        )
    if "pred_class" not in out.columns:
        cls = classify_returns(
            out["expected_return"].to_numpy(np.float64),
            weak_threshold=labels.weak_threshold,
            strong_threshold=labels.strong_threshold,
        )
        out["pred_class"] = (np.nan_to_num(cls, nan=0.0) + 2).astype(np.int64)
    if "label" not in out.columns:
        out["label"] = np.nan
    out["signal"] = out["signal"].astype(np.int64)
    out["pred_class"] = out["pred_class"].astype(np.int64)
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    out["symbol"] = out["symbol"].astype(str)
    out["fold"] = out["fold"].astype(str)
    return out[PREDICTION_COLUMNS].reset_index(drop=True)


# --- probability math: [n, 5] arrays whose column k is class k = label k - 2 ---


def _as_rows(probs: np.ndarray) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InputError(f"probabilities must be [n, K>=2], got shape {np.shape(probs)}")
    return arr


def entropy_confidence(probs: np.ndarray) -> np.ndarray:
    """``1 - H(p) / ln(K)`` per row: 0 for a uniform distribution, 1 for a one-hot one.

    ``0 * ln 0`` is taken as 0 (no epsilon bias); the result is clipped to ``[0, 1]``.
    Rows containing NaN give NaN.
    """
    p = _as_rows(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    plogp = np.where(np.isnan(p), np.nan, plogp)
    entropy = -plogp.sum(axis=1)
    return np.clip(1.0 - entropy / np.log(p.shape[1]), 0.0, 1.0)


def margin_confidence(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row (the spec's ``predict_proba`` branch)."""
    p = _as_rows(probs)
    top2 = np.sort(p, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def probs_to_signal(probs: np.ndarray) -> np.ndarray:
    """``argmax - 2`` as int64: the 5-class prediction as a signal in ``-2..2``."""
    p = _as_rows(probs)
    if p.shape[1] != N_CLASSES:
        raise InputError(f"probs_to_signal needs {N_CLASSES} classes, got {p.shape[1]}")
    return (np.argmax(p, axis=1) - 2).astype(np.int64)


def class_returns(weak_threshold: float, strong_threshold: float) -> np.ndarray:
    """Representative forward return of each class (labels -2..2), from the label thresholds.

    Conservative: a strong class counts its boundary ``±strong`` (the least it moved), a weak
    class the middle of its band ``±(weak + strong) / 2``, the flat class 0.
    """
    mid = (weak_threshold + strong_threshold) / 2.0
    return np.array([-strong_threshold, -mid, 0.0, mid, strong_threshold], dtype=np.float64)


def expected_move(probs: np.ndarray, returns_by_class: np.ndarray) -> np.ndarray:
    """Probability-weighted forward return per row: ``sum_k p_k * r_k``."""
    p = _as_rows(probs)
    r = np.asarray(returns_by_class, dtype=np.float64)
    if p.shape[1] != len(r):
        raise InputError(f"{p.shape[1]} class probabilities but {len(r)} class returns")
    return p @ r
