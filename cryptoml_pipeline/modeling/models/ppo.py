"""PPO (Stable-Baselines3) trained on the fold's fit window of the traded symbols (every symbol in
turn, in the Gymnasium trading environment with the backtester's costs and funding), rolled out
on its test window. The agent's action becomes the prediction's signal (-2 short, 0 flat, 2 long;
confidence 1; no class probabilities)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import model_feature_columns
from cryptoml_pipeline.modeling.fold_training import fold_masks
from cryptoml_pipeline.modeling.models.base import (
    Fitted,
    FoldInputs,
    Unavailable,
    ZooModel,
    empty_predictions,
    heavy_fold,
    model_card,
    traded_only,
)
from cryptoml_pipeline.modeling.persistence import to_jsonable
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS, conform
from cryptoml_pipeline.modeling.scaling import fit_scaler


class PpoModel(ZooModel):
    """PPO agent (Stable-Baselines3) in the Gymnasium trading environment with the backtester's
    costs and funding; its positions on the test window are the predictions' signals."""

    name = "ppo"
    asset_name = "ppo_predictions"
    needs = frozenset({"ohlcv", "funding"})

    def fit(self, inputs: FoldInputs, out_dir: Path | None) -> Fitted | Unavailable:
        import gymnasium as gym

        from cryptoml_pipeline.modeling.rl import TradingEnv, make_episode, save_policy, train_ppo

        settings, cfg = inputs.settings, inputs.settings.ppo
        fold = heavy_fold(inputs.fold, settings, inputs.timeframe)
        traded = inputs.traded or sorted(inputs.features["symbol"].astype(str).unique())
        features = traded_only(inputs.features, traded)
        candles = traded_only(inputs.candles, traded)
        cols = model_feature_columns(features, settings.features)
        masks = fold_masks(features, fold, settings, inputs.timeframe)
        fit_x = features.loc[masks.fit, cols].to_numpy(dtype=np.float64)
        fit_x = fit_x[np.isfinite(fit_x).all(axis=1)]
        if len(fit_x) < 100:
            return Unavailable(f"only {len(fit_x)} complete training rows", fold)
        scaler = fit_scaler(fit_x)
        symbols = sorted(features["symbol"].astype(str).unique())
        train_eps, test_eps = [], {}
        for symbol in symbols:
            episode = (features, cols, candles, inputs.funding, symbol)
            try:
                train_eps.append(make_episode(*episode, masks.fit, scaler))
            except InputError:
                continue
            with contextlib.suppress(InputError):
                test_eps[symbol] = make_episode(*episode, masks.test, scaler)
        if not train_eps or not test_eps:
            return Unavailable("no symbol has a usable training and test episode", fold)

        class RoundRobin(gym.Wrapper):
            """Each reset moves to the next symbol's training episode."""

            def __init__(self) -> None:
                self.envs = [
                    TradingEnv(ep, settings.costs, max_leverage=settings.risk.max_leverage)
                    for ep in train_eps
                ]
                self.i = -1
                super().__init__(self.envs[0])

            def reset(self, **kwargs):
                self.i = (self.i + 1) % len(self.envs)
                self.env = self.envs[self.i]
                return self.env.reset(**kwargs)

        start = time.perf_counter()
        model, result = train_ppo(
            train_eps[0],
            settings.costs,
            total_timesteps=cfg.total_timesteps,
            seed=settings.training.seed,
            max_leverage=settings.risk.max_leverage,
            n_steps=cfg.n_steps,
            env=RoundRobin(),
        )
        seconds = time.perf_counter() - start
        if out_dir is not None:
            save_policy(out_dir / "policy.pt", result)
            meta = {"scaler": scaler.to_dict(), "feature_cols": cols, **result.manifest}
            (out_dir / "manifest.json").write_text(json.dumps(to_jsonable(meta), indent=2))
        info = {
            "config": cfg.model_dump(mode="json"),
            "data_range": {"train_start": fold.train_start, "test_end": fold.test_end},
            "train_bars": int(sum(len(ep.obs) for ep in train_eps)),
            "train_seconds": seconds,
            "device": "cpu",
            "n_trials": 1,
        }
        return Fitted((model, test_eps), fold, info, out_dir, "policy.pt")

    def predict(self, fitted: Fitted, inputs: FoldInputs) -> pd.DataFrame:
        from cryptoml_pipeline.modeling.rl import run_policy

        settings, labels = inputs.settings, inputs.labels
        model, test_eps = fitted.model
        parts, env_equity = [], {}
        label_by_key = labels.assign(
            timestamp=labels["timestamp"].astype("datetime64[ns, UTC]"),
            symbol=labels["symbol"].astype(str),
        ).set_index(["timestamp", "symbol"])["label"]
        for symbol, ep in test_eps.items():
            roll = run_policy(model, ep, settings.costs, settings.risk.max_leverage)
            env_equity[symbol] = float(roll["equity"].iloc[-1]) if len(roll) else 1.0
            frame = pd.DataFrame(
                {
                    "timestamp": pd.to_datetime(roll["timestamp"], utc=True).astype(
                        "datetime64[ns, UTC]"
                    ),
                    "symbol": symbol,
                    "fold": fitted.fold.key,
                }
            )
            position = np.sign(roll["position"].to_numpy(dtype=np.float64))
            for col in PROB_COLUMNS:
                frame[col] = np.nan
            frame["pred_class"] = (2 * position + 2).astype(np.int64)
            frame["signal"] = frame["pred_class"] - 2
            frame["confidence"] = 1.0
            keys = pd.MultiIndex.from_arrays([frame["timestamp"], frame["symbol"]])
            frame["label"] = label_by_key.reindex(keys).to_numpy(dtype=np.float64)
            # a policy has a position, not an expected return: the cost filter cannot apply
            parts.append(conform(frame, labels=settings.labels, keep_signal=True))
        # the agent's own environment equity on the test window belongs in its card
        fitted.info["env_test_equity"] = env_equity
        return pd.concat(parts, ignore_index=True) if parts else empty_predictions()

    def card(self, fitted: Fitted, predictions: pd.DataFrame) -> dict[str, Any]:
        return model_card(
            self.name,
            fitted,
            predictions,
            note="signals are the agent's positions (x2); its own environment equity per symbol "
            "on the test window is env_test_equity (same fees, slippage and funding)",
        )
