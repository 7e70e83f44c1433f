"""Statistics a sceptical reader asks for beside a Sharpe ratio: PSR, DSR and bootstrap CIs.

* Probabilistic Sharpe ratio (Bailey & López de Prado 2012): the probability that the true
  per-period Sharpe exceeds ``benchmark`` given ``n`` returns with skewness ``g3`` and (plain,
  not excess) kurtosis ``g4``: ``Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2))``.
* Deflated Sharpe ratio (Bailey & López de Prado 2014): the PSR against the Sharpe one expects
  as the MAXIMUM of ``n_trials`` unskilled configurations,
  ``SR* = sigma_SR ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))`` where
  ``sigma_SR^2`` is the variance (ddof=1) of the trials' per-period Sharpes when at least two are
  known. Fallback with fewer: the variance of a skill-less trial's Sharpe estimate on the same
  ``T`` returns, ``1 / (T - 1)`` (the estimator variance at SR = 0), reported as
  ``dsr_variance_source = "null_estimator"``; with one trial no deflation (DSR = PSR).
* Moving-block bootstrap (blocks of ``block`` days, seeded) percentile intervals for the
  annualised Sharpe and the mean daily return.
Sharpes here are per period (daily) unless named ``annualised``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


def _moments(returns: np.ndarray) -> tuple[float, float, float] | None:
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 3:
        return None
    std = float(np.std(r, ddof=1))
    if not std > 0:
        return None
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3) / m2**1.5)
    kurt = float(np.mean(centred**4) / m2**2)
    return float(r.mean() / std), skew, kurt


def sharpe_std(sharpe: float, n: int, skew: float, kurtosis: float) -> float:
    """Standard error of a per-period Sharpe estimate (non-normal returns)."""
    var = (1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2) / max(n - 1, 1)
    return math.sqrt(max(var, 0.0))


def probabilistic_sharpe(returns: np.ndarray, benchmark: float = 0.0) -> float | None:
    """P(true per-period Sharpe > ``benchmark``); None with < 3 returns or zero variance."""
    moments = _moments(returns)
    if moments is None:
        return None
    sr, skew, kurt = moments
    n = int(np.isfinite(np.asarray(returns, dtype=np.float64)).sum())
    se = sharpe_std(sr, n, skew, kurt)
    if not se > 0:
        return None
    return _N.cdf((sr - benchmark) / se)


def expected_max_sharpe(n_trials: int, sharpe_sd: float) -> float:
    """Expected maximum per-period Sharpe of ``n_trials`` skill-less trials (0 for one trial)."""
    if n_trials <= 1:
        return 0.0
    a = _N.inv_cdf(1.0 - 1.0 / n_trials)
    b = _N.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return sharpe_sd * ((1.0 - EULER_GAMMA) * a + EULER_GAMMA * b)


def deflated_sharpe_from_moments(
    sharpe: float,
    n_obs: int,
    skew: float,
    kurtosis: float,
    *,
    n_trials: int,
    trial_sharpe_var: float,
) -> float | None:
    """DSR from summary numbers: per-period ``sharpe`` of ``n_obs`` returns with ``skew`` and
    plain ``kurtosis``, ``n_trials`` configurations whose per-period Sharpes vary by
    ``trial_sharpe_var`` (Bailey & López de Prado 2014, eq. for SR* and the PSR)."""
    sr0 = expected_max_sharpe(n_trials, math.sqrt(max(trial_sharpe_var, 0.0)))
    se = sharpe_std(sharpe, n_obs, skew, kurtosis)
    if not se > 0:
        return None
    return _N.cdf((sharpe - sr0) / se)


def deflated_sharpe_from_trials(
    returns: np.ndarray, trial_sharpes: Sequence[float] | None, n_trials: int
) -> dict[str, float | int | str | None]:
    """PSR and DSR of ``returns`` after ``n_trials`` configurations (see module docstring).

    ``trial_sharpes``: the per-period Sharpes (same units as ``returns``' own) of the trials that
    are known, the selected one included; non-finite ones are ignored. The number of trials used
    is ``max(n_trials, number of finite trial Sharpes)``. Returns ``{"psr", "dsr", "dsr_trials",
    "dsr_trial_sharpe_var" (per period^2; None with one trial), "dsr_variance_source"
    ("trials" | "null_estimator" | "none: one trial")}``; psr/dsr None with < 3 returns or
    zero variance.
    """
    known = np.asarray([] if trial_sharpes is None else list(trial_sharpes), dtype=np.float64)
    known = known[np.isfinite(known)]
    trials = max(int(n_trials), len(known), 1)
    r = np.asarray(returns, dtype=np.float64)
    n = int(np.isfinite(r).sum())
    if trials == 1:
        var, source = None, "none: one trial"
    elif len(known) >= 2:
        var, source = float(np.var(known, ddof=1)), "trials"
    else:
        var, source = 1.0 / max(n - 1, 1), "null_estimator"
    moments = _moments(r)
    psr = dsr = None
    if moments is not None:
        sr, skew, kurt = moments
        psr = probabilistic_sharpe(r)
        dsr = (
            psr
            if var is None
            else deflated_sharpe_from_moments(
                sr, n, skew, kurt, n_trials=trials, trial_sharpe_var=var
            )
        )
    return {
        "psr": psr,
        "dsr": dsr,
        "dsr_trials": trials,
        "dsr_trial_sharpe_var": var,
        "dsr_variance_source": source,
    }


def block_bootstrap_indices(n: int, samples: int, block: int, seed: int) -> np.ndarray:
    """``[samples, n]`` indices of a moving-block bootstrap (circular blocks of ``block``)."""
    rng = np.random.default_rng(seed)
    block = max(1, min(block, n))
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(samples, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]) % n
    return idx.reshape(samples, -1)[:, :n]


def bootstrap_intervals(
    daily: np.ndarray,
    *,
    samples: int,
    block: int,
    seed: int,
    level: float = 0.95,
    periods_per_year: int = 365,
) -> dict[str, list[float] | None]:
    """Percentile CIs for the annualised Sharpe and the mean daily return (None if < 10 days)."""
    r = np.asarray(daily, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 10 or samples < 10:
        return {"sharpe": None, "avg_daily_return": None}
    draws = r[block_bootstrap_indices(len(r), samples, block, seed)]
    means = draws.mean(axis=1)
    stds = draws.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpes = np.where(stds > 0, means / stds * math.sqrt(periods_per_year), np.nan)
    lo, hi = (1.0 - level) / 2.0 * 100, (1.0 + level) / 2.0 * 100
    finite = sharpes[np.isfinite(sharpes)]
    return {
        "sharpe": [float(v) for v in np.percentile(finite, [lo, hi])] if len(finite) else None,
        "avg_daily_return": [float(v) for v in np.percentile(means, [lo, hi])],
    }
