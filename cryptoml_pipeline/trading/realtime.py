"""Real-time path of ``cryptoml signal``: the deployed model's signal for a symbol's latest
closed bar, built from a causal tail of its candles.

:func:`load_engine` loads the deployed model once (state_dict, ``weights_only``) into an
:class:`MLPredictionEngine`; :func:`latest_signal` builds features on the last ``tail`` bars
(declared warm-up + sequence length), scales the model's input window with the training scaler
and runs one forward pass.

Hot path (:class:`TailFeatures`): for one symbol's time-ordered candles it calls the same
per-family feature functions as :func:`features.build.build_features` (technical,
microstructure, temporal, volatility regime, funding, liquidation proxy), only for the
families the model's columns need, on plain arrays, and returns the ``[sequence, n_features]``
window directly: no feature frame, no ``merge_asof``. The column plan and the funding
settlement z-scores (they change every 8 h) are cached in the loaded model across calls. Inputs
it does not cover (other families, several symbols, unsorted or duplicate rows, missing
volume/funding for a needed column) go through ``build_features`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import technical as ta
from cryptoml_pipeline.features.build import (
    build_features,
    plan_features,
    technical_features,
    warmup_bars,
)
from cryptoml_pipeline.features.flow import (
    funding_extreme,
    funding_settlement_features,
    liquidation_cascade_proxy,
)
from cryptoml_pipeline.features.microstructure import microstructure_features, volume_spike_z
from cryptoml_pipeline.features.regimes import regime_features
from cryptoml_pipeline.features.temporal import CALENDAR_NAMES, SESSION_NAMES, temporal_features
from cryptoml_pipeline.management.deployment_store import deployed_dir
from cryptoml_pipeline.modeling.fold_training import FoldModel, fold_model_from_saved
from cryptoml_pipeline.modeling.persistence import load_model
from cryptoml_pipeline.settings import FeatureConfig
from cryptoml_pipeline.trading.prediction_engine import MLPredictionEngine, ModelMember


@dataclass(frozen=True)
class LoadedModel:
    fold_model: FoldModel
    engine: MLPredictionEngine
    timeframe: str
    sequence_length: int
    # per-process caches of the hot path (TailFeatures per feature config)
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _utc_ns(values: pd.Series) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(values.astype("datetime64[ns, UTC]")).asi8, dtype=np.int64)


class TailFeatures:
    """The model's input window from one symbol's candle tail (see the module docstring).

    ``window`` returns the last ``rows`` rows of ``build_features(candles, funding, config)``
    restricted to ``columns``, in that order, or ``None`` when the input needs the general path.
    """

    def __init__(self, config: FeatureConfig, columns: list[str]) -> None:
        self.config = config
        self.columns = list(columns)
        flow = config.sentiment_flow
        plan = plan_features(config, symbols=["X/USDT"], has_volume=True, with_funding=True)
        family = plan.family_of()
        self.zname = f"funding_zscore_{flow.funding_zscore_window}"
        funding_cols = {"funding_rate", self.zname, "funding_extreme", "liq_cascade_proxy"}
        calendar, regimes = (
            set(CALENDAR_NAMES),
            set(plan.families["temporal"]) - set(CALENDAR_NAMES),
        )
        wanted = set(self.columns)
        self.supported = wanted <= (
            set(plan.families["technical"])
            | set(plan.families["microstructure"])
            | set(plan.families["temporal"])
            | (funding_cols & set(plan.families["sentiment_flow"]))
        )
        self.need_technical = any(family.get(c) == "technical" for c in wanted)
        self.need_micro = any(family.get(c) == "microstructure" for c in wanted)
        self.need_calendar = bool(wanted & calendar)
        self.need_regime = bool(wanted & regimes)
        self.need_liq = "liq_cascade_proxy" in wanted
        self.need_funding = bool(wanted & funding_cols)
        self.need_volume = self.need_micro or self.need_liq
        self._settled: tuple[tuple[Any, ...], np.ndarray, np.ndarray, np.ndarray] | None = None

    def _settlements(self, funding: pd.DataFrame, symbol: str) -> tuple[np.ndarray, ...]:
        """Settlement times (ns), rates and z-scores of ``symbol``; cached while unchanged."""
        rows = funding
        if not (funding["symbol"] == symbol).all():
            rows = funding.loc[funding["symbol"].astype(str) == symbol]
        ts = _utc_ns(rows["timestamp"])
        rate = rows["funding_rate"].to_numpy(np.float64)
        key = (symbol, ts.tobytes(), rate.tobytes())
        if self._settled is None or self._settled[0] != key:
            settled = funding_settlement_features(
                rows, zscore_window=self.config.sentiment_flow.funding_zscore_window
            )
            self._settled = (
                key,
                _utc_ns(settled["timestamp"]),  # sorted by time
                settled["funding_rate"].to_numpy(np.float64),
                settled[self.zname].to_numpy(np.float64),
            )
        return self._settled[1:]

    def _calendar(self, ts: np.ndarray, timestamps: pd.Series) -> dict[str, np.ndarray]:
        """``temporal_features`` of the rows; plain integer arithmetic for the UTC timezone."""
        temporal = self.config.temporal
        if temporal.timezone != "UTC":
            return temporal_features(timestamps, self.config)
        minute_of_day = (ts // 60_000_000_000) % 1440
        hour_int = minute_of_day // 60
        hour = hour_int.astype(np.float64) + (minute_of_day % 60).astype(np.float64) / 60.0
        dow = ((ts // 86_400_000_000_000 + 3) % 7).astype(np.float64)  # 1970-01-01: Thursday
        hour_angle = 2.0 * np.pi * hour / 24.0
        dow_angle = 2.0 * np.pi * dow / 7.0
        out = {
            "hour_sin": np.sin(hour_angle),
            "hour_cos": np.cos(hour_angle),
            "dow_sin": np.sin(dow_angle),
            "dow_cos": np.cos(dow_angle),
        }
        for name in SESSION_NAMES:
            begin, end = getattr(temporal.session_boundaries, name)
            inside = (
                (hour_int >= begin) & (hour_int < end)
                if begin <= end
                else (hour_int >= begin) | (hour_int < end)
            )
            out[f"session_{name}"] = inside.astype(np.float64)
        return out

    def window(
        self, candles: pd.DataFrame, funding: pd.DataFrame | None, rows: int
    ) -> np.ndarray | None:
        if not self.supported or len(candles) == 0:
            return None
        if self.need_volume and "volume" not in candles.columns:
            return None
        flow = self.config.sentiment_flow
        with_funding = funding is not None and flow.enabled
        if self.need_funding and not with_funding:
            return None
        symbols = candles["symbol"].astype(str)
        symbol = str(symbols.iloc[0])
        if not (symbols == symbol).all():
            return None
        timestamps = candles["timestamp"]
        ts = _utc_ns(timestamps)
        if len(ts) > 1 and not (np.diff(ts) > 0).all():
            return None  # unsorted or duplicate rows: the general path orders / rejects them
        high = candles["high"].to_numpy(np.float64)
        low = candles["low"].to_numpy(np.float64)
        close = candles["close"].to_numpy(np.float64)
        volume = candles["volume"].to_numpy(np.float64) if self.need_volume else None
        out: dict[str, np.ndarray] = {}
        if self.need_technical:
            out.update(technical_features(high, low, close, self.config))
        if self.need_micro and volume is not None:
            out.update(
                microstructure_features(high, low, close, volume, self.config.market_microstructure)
            )
        if self.need_regime:
            out.update(regime_features(close, self.config.temporal))
        if self.need_funding and funding is not None:
            settle_ts, rate, zscore = self._settlements(funding, symbol)
            # as of each row: the last settlement stamped <= the row's open time
            idx = np.searchsorted(settle_ts, ts, side="right") - 1
            known = idx >= 0
            take = np.where(known, idx, 0)
            out["funding_rate"] = np.where(known, rate[take] if len(rate) else np.nan, np.nan)
            out[self.zname] = np.where(known, zscore[take] if len(zscore) else np.nan, np.nan)
            out["funding_extreme"] = funding_extreme(out[self.zname], flow.funding_extreme_z)
            if self.need_liq and volume is not None:
                # the same functions on the same arrays as the technical / microstructure
                # columns: reuse those where this config computed them
                micro = self.config.market_microstructure
                ret = out.get("ret_1")
                sigma = out.get(f"rv_{flow.liquidation_vol_window}")
                vz = out.get(f"volume_z_{micro.volume_spike_window}")
                out["liq_cascade_proxy"] = liquidation_cascade_proxy(
                    ta.log_returns(close, 1).to_numpy() if ret is None else ret,
                    ta.rolling_volatility(close, flow.liquidation_vol_window).to_numpy()
                    if sigma is None
                    else sigma,
                    volume_spike_z(volume, micro.volume_spike_window) if vz is None else vz,
                    out[self.zname],
                    flow.funding_extreme_z,
                )
        if self.need_calendar:
            out.update(self._calendar(ts[-rows:], timestamps.iloc[-rows:]))
        return np.column_stack([np.asarray(out[c], dtype=np.float64)[-rows:] for c in self.columns])


def tail_features(loaded: LoadedModel, config: FeatureConfig) -> TailFeatures:
    """The cached :class:`TailFeatures` of ``loaded`` for ``config``."""
    cached = loaded.cache.get("tail_features")
    if cached is None or not (cached.config is config or cached.config == config):
        cached = TailFeatures(config, list(loaded.fold_model.feature_cols))
        loaded.cache["tail_features"] = cached
    return cached


def _member(fold_model: FoldModel) -> ModelMember:
    model = fold_model.model.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.as_tensor(x, dtype=torch.float32))
            return torch.softmax(logits.float(), dim=1).numpy().astype(np.float64)

    return ModelMember(predict, kind="net")


def load_engine(output_dir: Path) -> LoadedModel:
    """The deployed model under ``output_dir`` as a one-member prediction engine."""
    directory = deployed_dir(output_dir)
    if not (directory / "manifest.json").exists():
        raise InputError(f"no deployed model in {directory}: run `cryptoml run` first")
    fold_model = fold_model_from_saved(*load_model(directory))
    seq = int(fold_model.manifest["model_config"]["sequence_length"])
    return LoadedModel(
        fold_model,
        MLPredictionEngine({"deployed": _member(fold_model)}),
        str(fold_model.manifest["timeframe"]),
        seq,
    )


def tail_bars(loaded: LoadedModel, config: FeatureConfig) -> int:
    """Bars of history needed for the latest input window: warm-up + sequence length."""
    return warmup_bars(config) + loaded.sequence_length + 1


def model_input(loaded: LoadedModel, features: pd.DataFrame | np.ndarray) -> np.ndarray:
    """``[1, L, F]`` scaled input window ending at the last feature row; raises on NaN.

    ``features``: a feature table, or the window matrix of :class:`TailFeatures`.
    """
    fm = loaded.fold_model
    if isinstance(features, np.ndarray):
        window = features[-loaded.sequence_length :]
    else:
        missing = [c for c in fm.feature_cols if c not in features.columns]
        if missing:
            raise InputError(f"the features lack the model's columns {missing}")
        window = features[fm.feature_cols].to_numpy(np.float64)[-loaded.sequence_length :]
    if len(window) < loaded.sequence_length:
        raise InputError(f"need {loaded.sequence_length} feature rows, have {len(window)}")
    x = fm.scaler.transform(window)
    if not np.isfinite(x).all():
        raise InputError("the latest input window has undefined features (too little history)")
    return x[None, :, :]


def latest_signal(
    loaded: LoadedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    config: FeatureConfig,
    *,
    tail_path: bool = True,
) -> dict[str, Any]:
    """Signal JSON for the last (closed) bar of ``candles`` (one symbol).

    ``tail_path=False`` forces the general ``build_features`` path (same values; for tests and
    the latency benchmark's comparison).
    """
    symbols = candles["symbol"].astype(str).unique()
    if len(symbols) != 1:
        raise InputError(f"latest_signal takes one symbol's candles, got {list(symbols)}")
    window = (
        tail_features(loaded, config).window(candles, funding, loaded.sequence_length)
        if tail_path
        else None
    )
    if window is not None:
        last = pd.Timestamp(candles["timestamp"].iloc[-1:].astype("datetime64[ns, UTC]").iloc[0])
        x = model_input(loaded, window)
    else:
        table = build_features(candles, funding, config, loaded.timeframe).table
        last = pd.Timestamp(table["timestamp"].iloc[-1])
        x = model_input(loaded, table)
    out = loaded.engine.generate_signal(x)
    return {
        "symbol": str(symbols[0]),
        "bar_open": last.isoformat(),
        "timeframe": loaded.timeframe,
        "signal": int(out.signal[0]),
        "confidence": float(out.confidence[0]),
        "probabilities": [float(v) for v in out.probabilities[0]],
        "individual_predictions": {
            name: {"signal": int(v["signal"][0]), "confidence": float(v["confidence"][0])}
            for name, v in out.individual.items()
        },
        "model_version": loaded.fold_model.manifest.get("version"),
    }
