"""RL environment: next-open fills, costs and funding like the backtester; PPO learns; safe save."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.rl import (
    Episode,
    TradingEnv,
    load_policy_into,
    run_policy,
    save_policy,
    train_ppo,
)
from cryptoml_pipeline.settings import CostConfig

COSTS = CostConfig(taker_fee=0.001, slippage_bps=2.0)


def _episode(opens, obs=None, funding=None) -> Episode:
    n = len(opens)
    return Episode(
        obs=np.zeros((n, 1), np.float32) if obs is None else obs,
        open_=np.asarray(opens, dtype=float),
        funding=np.zeros(n) if funding is None else np.asarray(funding, dtype=float),
        timestamps=pd.date_range("2024-01-01", periods=n, freq="1h").to_numpy(),
    )


def test_step_accounting_matches_a_hand_computation():
    opens = [100.0, 100.0, 110.0, 99.0, 99.0, 120.0]
    funding = [0.0, 0.0, 0.01, 0.0, 0.0, 0.0]
    env = TradingEnv(_episode(opens, funding=funding), COSTS, max_leverage=3.0)
    env.reset()
    rate = 0.001 + 0.0002
    equity = 1.0
    # long at open[1]=100, held to open[2]=110: +10 %, entry cost, no funding in (t1, t2]? the
    # funding array's entry t+1 is charged: funding[1] = 0
    _, r, *_ = env.step(2)
    equity *= 1 - rate + 0.10 - 0.0
    assert env.equity == pytest.approx(equity)
    assert r == pytest.approx(np.log(1 - rate + 0.10))
    # stay long from 110 to 99 (-10 %); a long pays funding[2] = 1 %
    env.step(2)
    equity *= 1 + (99 / 110 - 1) - 0.01
    assert env.equity == pytest.approx(equity)
    # flip to short: |Δ| = 2 -> twice the cost; 99 -> 99
    env.step(0)
    equity *= 1 - 2 * rate
    assert env.equity == pytest.approx(equity)
    # the last decision that can be filled and held ends the episode
    *_, terminated, _, info = env.step(1)
    assert terminated and info["position"] == 0.0


def test_episode_rejects_bad_input():
    with pytest.raises(InputError):
        _episode([100.0, 101.0])
    with pytest.raises(InputError):
        _episode([100.0, -1.0, 100.0])


def test_ppo_learns_a_planted_edge_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    steps = rng.choice([-0.01, 0.01], size=n)
    opens = 100 * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))[:n]
    # obs[t] reveals the sign of the return from open t+1 to open t+2 (an oracle, to test learning)
    nxt = np.sign(np.concatenate([np.log(opens[2:] / opens[1:-1]), [0.0, 0.0]]))
    obs = nxt.reshape(-1, 1).astype(np.float32)
    ep = _episode(opens, obs=obs)
    model, result = train_ppo(ep, COSTS, total_timesteps=4096, seed=0, max_leverage=1.0)
    rollout = run_policy(model, ep, COSTS, max_leverage=1.0)
    assert rollout["equity"].iloc[-1] > 1.5  # flat stays at 1.0; the oracle compounds ~+1 %/bar
    path = tmp_path / "ppo.pt"
    save_policy(path, result)
    fresh, _ = train_ppo(ep, COSTS, total_timesteps=1, seed=1, max_leverage=1.0, n_steps=64)
    load_policy_into(fresh, path)
    again = run_policy(fresh, ep, COSTS, max_leverage=1.0)
    pd.testing.assert_frame_equal(rollout, again)
