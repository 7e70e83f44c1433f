"""Reinforcement learning (spec ``ModelTraining/ReinforcementLearning``): a Gymnasium trading
environment and a PPO agent (Stable-Baselines3), trained per fold like every other model.

:class:`TradingEnv` walks one symbol's bars with the backtester's timing and costs:

* the observation at bar ``t`` is the scaled feature row ``t`` (known at the bar's close) plus the
  current position;
* the action (``0`` short, ``1`` flat, ``2`` long) is the target position, filled at the *next*
  bar's open: ``|Δposition| × notional`` pays the taker fee plus slippage (``costs.taker_fee``,
  ``costs.slippage_bps``) — never the close that produced the signal;
* the position is held to the following open; its return is ``position × (open[t+2]/open[t+1] - 1)``
  and a perpetual position pays ``position × funding_rate`` for every funding settlement inside the
  holding interval (the same "carried into the settlement" rule as the backtester);
* the position size is ``position_fraction`` of equity, capped by ``risk.max_leverage``;
* the reward is the step's log equity growth, so the agent maximises net compounded return.

Weights are saved as a ``state_dict`` (tensors only) and loaded with ``weights_only=True``; SB3's
own zip format (which pickles) is never used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from gymnasium import spaces

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.settings import CostConfig

logger = logging.getLogger(__name__)

POSITIONS = np.array([-1.0, 0.0, 1.0])


@dataclass(frozen=True)
class Episode:
    """One symbol's bars: ``obs[t]`` scaled features, ``open_[t]`` open prices and
    ``funding[t]`` the summed funding rate of settlements in ``(open time t, open time t+1]``."""

    obs: np.ndarray  # [T, F] float32
    open_: np.ndarray  # [T]
    funding: np.ndarray  # [T]
    timestamps: np.ndarray  # [T] datetime64[ns]

    def __post_init__(self) -> None:
        n = len(self.obs)
        if not (len(self.open_) == len(self.funding) == len(self.timestamps) == n):
            raise InputError("episode arrays must have the same length")
        if n < 3:
            raise InputError(f"an episode needs at least 3 bars, got {n}")
        if not np.isfinite(self.obs).all() or not (np.asarray(self.open_) > 0).all():
            raise InputError("episode observations must be finite and prices positive")


class TradingEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(
        self,
        episode: Episode,
        costs: CostConfig,
        *,
        position_fraction: float = 1.0,
        max_leverage: float = 3.0,
    ) -> None:
        super().__init__()
        self.ep = episode
        self.cost_rate = costs.taker_fee + costs.slippage_bps / 10_000.0
        self.size = min(position_fraction, max_leverage)
        n_features = episode.obs.shape[1]
        self.observation_space = spaces.Box(-np.inf, np.inf, (n_features + 1,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.t = 0
        self.position = 0.0
        self.equity = 1.0

    def _obs(self) -> np.ndarray:
        return np.append(self.ep.obs[self.t], np.float32(self.position)).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.position, self.equity = 0, 0.0, 1.0
        return self._obs(), {}

    def step(self, action: int):
        target = float(POSITIONS[int(action)]) * self.size
        o1, o2 = self.ep.open_[self.t + 1], self.ep.open_[self.t + 2]
        cost = abs(target - self.position) * self.cost_rate
        gross = target * (o2 / o1 - 1.0)
        funding = target * self.ep.funding[self.t + 1]  # settlements in (open t+1, open t+2]
        growth = max(1.0 - cost + gross - funding, 1e-9)  # floor: a wipe-out ends in ruin
        self.equity *= growth
        self.position = target
        self.t += 1
        terminated = self.t + 2 >= len(self.ep.open_) or growth <= 1e-9
        info = {"equity": self.equity, "cost": cost, "funding": funding, "position": target}
        return self._obs(), float(np.log(growth)), terminated, False, info


def make_episode(
    features: pd.DataFrame,
    feature_cols: list[str],
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    symbol: str,
    mask: np.ndarray,
    scaler,
) -> Episode:
    """The rows of ``symbol`` selected by ``mask`` (one contiguous stretch), scaled with the
    fold's training-only scaler, with opens and funding per bar from ``candles``/``funding``."""
    sel = np.asarray(mask, dtype=bool) & (features["symbol"].astype(str) == symbol).to_numpy()
    rows = features[sel]
    ts = rows["timestamp"].astype("datetime64[ns, UTC]")
    c = candles[candles["symbol"].astype(str) == symbol].set_index(
        candles["timestamp"].astype("datetime64[ns, UTC]")[candles["symbol"].astype(str) == symbol]
    )
    opens = c["open"].reindex(ts.to_numpy()).to_numpy(dtype=np.float64)
    obs = scaler.transform(rows[feature_cols].to_numpy(dtype=np.float64))
    ok = np.isfinite(obs).all(axis=1) & np.isfinite(opens)
    obs, opens, ts = obs[ok], opens[ok], ts.to_numpy()[ok]
    fund = np.zeros(len(ts))
    if funding is not None and len(funding) and len(ts):
        f = funding[funding["symbol"].astype(str).str.split(":").str[0] == symbol.split(":")[0]]
        f_ts = f["timestamp"].astype("datetime64[ns, UTC]").to_numpy()
        rate = f["funding_rate"].to_numpy(dtype=np.float64)
        # settlement s belongs to bar t when open_t < s <= open_{t+1}
        idx = np.searchsorted(ts, f_ts, side="left") - 1
        inside = (idx >= 0) & (idx < len(ts) - 1)
        np.add.at(fund, idx[inside], rate[inside])
    return Episode(obs.astype(np.float32), opens, fund, ts)


@dataclass
class PPOResult:
    policy_state: dict[str, torch.Tensor]
    manifest: dict


def train_ppo(
    episode: Episode,
    costs: CostConfig,
    *,
    total_timesteps: int,
    seed: int,
    max_leverage: float,
    n_steps: int = 256,
    env: gym.Env | None = None,
) -> tuple[object, PPOResult]:
    """Train a PPO agent (MLP policy, CPU, seeded) on the training episode (or on ``env``, e.g.
    one that cycles through several symbols' episodes with the same observation space)."""
    from stable_baselines3 import PPO

    env = env or TradingEnv(episode, costs, max_leverage=max_leverage)
    start = time.perf_counter()
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=n_steps,
        batch_size=64,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=total_timesteps)
    seconds = time.perf_counter() - start
    logger.info("PPO: %d timesteps in %.1fs", total_timesteps, seconds)
    state = {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items()}
    manifest = {
        "model_class": "PPO",
        "n_features": int(episode.obs.shape[1]),
        "total_timesteps": total_timesteps,
        "n_steps": n_steps,
        "train_seconds": seconds,
        "train_bars": len(episode.obs),
        "device": "cpu",
    }
    return model, PPOResult(policy_state=state, manifest=manifest)


def run_policy(model, episode: Episode, costs: CostConfig, max_leverage: float) -> pd.DataFrame:
    """Deterministic rollout over ``episode`` (e.g. the fold's test window): one row per decision
    bar with the chosen position, the step's cost, funding and equity."""
    env = TradingEnv(episode, costs, max_leverage=max_leverage)
    obs, _ = env.reset()
    rows = []
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        t = env.t
        obs, reward, done, _, info = env.step(int(action))
        rows.append({"timestamp": episode.timestamps[t], "reward": reward, **info})
    return pd.DataFrame(rows)


def save_policy(path: Path, result: PPOResult) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result.policy_state, path)


def load_policy_into(model, path: Path) -> None:
    """Load a saved policy ``state_dict`` (tensors only) into a PPO model of the same shape."""
    state = torch.load(Path(path), weights_only=True, map_location="cpu")
    model.policy.load_state_dict(state, strict=True)
