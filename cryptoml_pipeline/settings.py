"""Every typed setting of the pipeline, with the spec's defaults — the one config place.

All models are frozen pydantic models. Dagster ``dg.Config`` wrappers live in ``defs/`` only.
Profiles (``tiny``, ``demo``, ``full``) are data: ``cryptoml_pipeline/profiles/<profile>.yaml``
holds what each changes from the defaults below; :func:`profile_settings` builds them.
"""

from __future__ import annotations

import functools
from datetime import datetime
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ProfileName = Literal["tiny", "demo", "full"]
PROFILES: tuple[ProfileName, ...] = ("tiny", "demo", "full")

PROFILE_DIR = "profiles"  # cryptoml_pipeline/profiles/<profile>.yaml: each profile's overrides

DEFAULT_SYMBOLS: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Frozen):
    """Which market slice a run uses. ``start``/``end`` are UTC, the window is ``[start, end)``."""

    symbols: tuple[str, ...] | None = Field(
        None, description="traded perpetuals; None = every perpetual with funding in the store"
    )
    universe: tuple[str, ...] | None = Field(
        None, description="pooled training universe; None = every spot series in the window"
    )
    timeframe: str = "1h"
    start: datetime | None = None
    end: datetime | None = None
    lookback_days: int | None = Field(
        None,
        gt=0,
        description="None (default): the window starts at the EARLIEST first bar of any traded "
        "symbol (all the data; later symbols join where their candles and funding begin); N: "
        "default start = end - N days (never before that earliest first bar)",
    )
    funding_interval_hours: int = Field(
        8,
        gt=0,
        description="a HINT only: funding is charged at the settlements each symbol's data holds "
        "(any interval, changing over time); this interval is assumed where the data cannot tell "
        "(a symbol with fewer than two settlements) and sizes the warm-up / window edge",
    )
    history_days: int = Field(
        45, ge=0, description="history loaded before start for feature warm-up only"
    )
    training_history_days: int | None = Field(
        None,
        ge=0,
        description="universe history before start that models may TRAIN on (test windows and "
        "trading stay inside [start, end)); members join where their files have data; None "
        "(default): every stored bar of every member (expanding folds train from the first)",
    )

    @property
    def loaded_history_days(self) -> int | None:
        """Days loaded before ``start``: the training history plus the feature warm-up; None =
        everything the store holds before ``start``."""
        if self.training_history_days is None:
            return None
        return self.history_days + self.training_history_days


class RetryConfig(_Frozen):
    """Bounded exponential backoff with jitter for transient exchange errors."""

    max_attempts: int = Field(5, ge=1, description="tries per request, the first included")
    base_delay_s: float = Field(1.0, ge=0)
    max_delay_s: float = Field(60.0, ge=0)
    jitter: float = Field(0.25, ge=0, le=1, description="+/- fraction of each delay")


class IngestConfig(_Frozen):
    """Landing of raw exchange data (issue #3): what to fetch, how to repair, how to retry."""

    exchange: str = "binance"
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    timeframes: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")
    markets: tuple[Literal["spot", "perpetual"], ...] = ("spot", "perpetual")
    funding: bool = True
    open_interest: bool = True
    open_interest_period: str = "1h"
    partitions_start: str = "2024-01-01"  # first daily partition (UTC date)
    page_limit: int = Field(1000, gt=0, description="rows per exchange request")
    retry: RetryConfig = RetryConfig()
    max_fill_bars: int = Field(0, ge=0, description="forward-fill gaps of <= N bars (0 = never)")
    outlier_k_sigma: float = Field(8.0, gt=0, description="spike = jump beyond k robust sigmas")
    outlier_window: int = Field(288, gt=2, description="bars in the robust-sigma window")


class SessionBoundaries(_Frozen):
    """Trading sessions in UTC hours, ``[begin, end)`` (spec FEATURE_CONFIG.temporal)."""

    asian: tuple[int, int] = (0, 8)
    european: tuple[int, int] = (8, 16)
    us: tuple[int, int] = (16, 24)


ExistingFeature = Literal["rsi", "cci", "wave_trend"]

# Default sector map (base asset -> sector is many-to-one). The spec names DeFi, Layer1 and Meme;
# BTC/LTC/BCH form a "currency" sector so the default BTC/ETH/SOL set has two non-empty sectors.
DEFAULT_SECTORS: dict[str, tuple[str, ...]] = {
    "currency": ("BTC", "LTC", "BCH"),
    "layer1": ("ETH", "SOL", "ADA", "AVAX", "DOT", "NEAR", "ATOM", "TRX", "SUI", "APT"),
    "defi": ("UNI", "AAVE", "LINK", "MKR", "CRV", "LDO", "COMP", "SNX", "DYDX", "JUP"),
    "meme": ("DOGE", "SHIB", "PEPE", "WIF", "BONK", "FLOKI"),
}


class MicrostructureConfig(_Frozen):
    """Spec FEATURE_CONFIG.market_microstructure (+ estimator windows)."""

    enabled: bool = True
    orderbook_levels: int = Field(10, gt=0, description="order-book depth used when a book exists")
    trade_size_buckets: tuple[float, ...] = (1000.0, 10000.0, 100000.0)  # quote currency
    window: int = Field(24, gt=1, description="bars of the rolling microstructure estimators")
    volume_spike_window: int = Field(168, gt=2, description="causal volume distribution, bars")
    volume_spike_z: float = Field(3.0, gt=0, description="large-volume flag threshold (z)")


class CrossAssetConfig(_Frozen):
    """Spec FEATURE_CONFIG.cross_asset (+ relative strength, beta and sector rotation)."""

    enabled: bool = True
    reference_assets: tuple[str, ...] = ("BTC", "ETH")
    correlation_windows: tuple[int, ...] = (24, 168, 720)  # 1d, 1w, 1m of 1h bars
    relative_strength_horizons: tuple[int, ...] = (24, 168)
    beta_window: int = Field(168, gt=2)
    beta_reference: str = "BTC"
    sectors: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_SECTORS))
    sector_horizon: int = Field(168, gt=0, description="bars of the sector-rotation return")


class TemporalConfig(_Frozen):
    """Spec FEATURE_CONFIG.temporal (+ volatility regime and trend-strength decay)."""

    enabled: bool = True
    timezone: str = "UTC"
    session_boundaries: SessionBoundaries = SessionBoundaries()
    regime_vol_window: int = Field(24, gt=1, description="realised-vol window the regime ranks")
    regime_window: int = Field(720, gt=2, description="causal rolling-quantile window, bars")
    regime_quantiles: tuple[float, float] = (1 / 3, 2 / 3)
    trend_window: int = Field(24, gt=1, description="efficiency-ratio window of trend strength")


class SentimentFlowConfig(_Frozen):
    """Spec SentimentFlowFeatures: funding, open interest, liquidation proxy, pluggable sources."""

    enabled: bool = True
    funding_zscore_window: int = 90  # in funding settlements (90 x 8h = 30 days)
    funding_extreme_z: float = Field(2.0, gt=0)
    oi_change_horizons: tuple[int, ...] = (1, 24)
    liquidation_vol_window: int = Field(168, gt=2)
    whale_source: str | None = None  # name of a registered source; None = not configured
    social_source: str | None = None


class PooledConfig(_Frozen):
    """The pooled family (``features/pooled.py``): features that pool across symbols and
    regimes — returns, ranges and distances in volatility units, volume against its own month,
    the market's and BTC's move, cross-sectional ranks, perpetual-spot basis, funding carry per
    hour. On by default: the declared selection (examples/grids/selection.yaml) picked it
    (``features.pooled.enabled``)."""

    enabled: bool = True
    vol_window: int = Field(
        168, ge=2, description="bars of the trailing std of 1-bar log returns (the vol unit)"
    )
    horizons: tuple[int, ...] = (1, 4, 24, 72, 168, 720)  # returns and ranges, in bars
    extreme_windows: tuple[int, ...] = (24, 168, 720)  # distance to the N-bar high / low
    volume_window: int = Field(720, ge=2, description="bars of the volume's own mean (a month)")
    market_horizons: tuple[int, ...] = (1, 24, 168)  # equal-weight market and reference move
    market_reference: str = "BTC"
    rank_horizons: tuple[int, ...] = (24, 168, 720)  # cross-sectional ranks of these returns
    basis_zscore_window: int = Field(168, ge=2, description="bars of the basis z-score")
    funding_mean_hours: int = Field(72, gt=0, description="hours of the funding carry mean")
    funding_zscore_settlements: int = Field(90, ge=2, description="settlements of its z-score")
    exclude_raw_scale: bool = Field(
        False,
        description="with the family on: models do not see raw-scale columns (ret_*, rv_*, "
        "atr_pct_*, macd_hist_pct, vw_pressure_*, rs_basket_*, sector_rot_*, beta_* and their "
        "lags); they stay in the feature table for decisions and reports",
    )


class ImportanceConfig(_Frozen):
    """Per-fold permutation importance on the fold's test window."""

    enabled: bool = True
    recent_folds: int | None = Field(
        4,
        ge=1,
        description="on the most recent N walk-forward folds only (None: every fold): a "
        "multi-year walk-forward's cost on CPUs; the report names the folds used",
    )
    n_repeats: int = Field(1, gt=0)
    max_rows: int = Field(1500, gt=0, description="test rows sampled (evenly) for speed")
    seed: int = 0


class FeatureConfig(_Frozen):
    """Feature families and their parameters. The spec's FEATURE_CONFIG maps 1:1 onto
    ``use_existing_features``, ``existing_features``, ``market_microstructure``, ``cross_asset``
    and ``temporal`` (``FeatureConfig.model_validate(FEATURE_CONFIG)`` works)."""

    use_existing_features: bool = True
    existing_features: tuple[ExistingFeature, ...] = ("rsi", "cci", "wave_trend")
    rsi_period: int = 14
    cci_period: int = 20
    wavetrend_channel: int = 10
    wavetrend_average: int = 21
    wavetrend_signal: int = 4
    atr_period: int = 14
    bollinger_window: int = 20
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    return_horizons: tuple[int, ...] = (1, 4, 24)
    volatility_windows: tuple[int, ...] = (24, 168)
    market_microstructure: MicrostructureConfig = MicrostructureConfig()
    cross_asset: CrossAssetConfig = CrossAssetConfig()
    temporal: TemporalConfig = TemporalConfig()
    sentiment_flow: SentimentFlowConfig = SentimentFlowConfig()
    pooled: PooledConfig = PooledConfig()
    importance: ImportanceConfig = ImportanceConfig()
    warmup_tolerance: float = Field(
        1e-9, gt=0, lt=1, description="recursive smoothers count as settled below this"
    )


TargetKind = Literal["classes", "vol_scaled_return", "triple_barrier"]
TARGET_KINDS: tuple[TargetKind, ...] = ("classes", "vol_scaled_return", "triple_barrier")


class TargetConfig(_Frozen):
    """What the models learn (``modeling/labels.py`` builds it; the only forward-looking code).

    * ``classes``: the spec's 5 classes on ``close[t+h] / close[t] - 1`` (thresholds in
      :class:`LabelConfig`); looks ``h`` bars ahead.
    * ``vol_scaled_return``: ``log(open[t+1+h] / open[t+1])`` — from the next bar's open, where
      the fill happens, to the open ``h`` bars later — divided by ``sigma_t * sqrt(h)``, with
      ``sigma_t`` the trailing std of 1-bar log returns over ``vol_window`` bars up to ``t``;
      looks ``h + 1`` bars ahead.
    * ``triple_barrier``: +1 / -1 when the path from ``open[t+1]`` touches the upper / lower
      barrier ``± barrier_multiple * sigma_t * sqrt(h)`` first (bar highs/lows), else 0 at the
      vertical barrier ``h`` bars later; rows weighted by their average uniqueness.

    The walk-forward purge and embargo follow :attr:`reach` automatically.
    """

    # the default was chosen by the declared selection (examples/grids/selection.yaml ->
    # benchmarks/results/selection_leaderboard.json; README "How the default configuration was
    # chosen"): the 4-bar volatility-scaled return, full history, the pooled family on
    kind: TargetKind = "vol_scaled_return"
    horizon: int = Field(4, ge=1, le=168, description="bars ahead")
    vol_window: int = Field(168, ge=2, description="bars of the trailing volatility")
    barrier_multiple: float = Field(1.0, gt=0)

    @property
    def reach(self) -> int:
        """Bars a label looks ahead of its row (what purging must cover)."""
        return self.horizon if self.kind == "classes" else self.horizon + 1

    @property
    def is_regression(self) -> bool:
        return self.kind == "vol_scaled_return"


class LabelConfig(_Frozen):
    """Spec's 5 classes on the forward return ``close[t+h] / close[t] - 1`` (``h`` =
    ``target.horizon``). Also used to bucket realised returns for the class metrics.

    label  2: r > strong; 1: weak < r <= strong; 0: -weak < r <= weak; -1: -strong < r <= -weak;
    -2: r <= -strong. Models use 5 logits with ``class index = label + 2``.
    """

    weak_threshold: float = Field(0.005, gt=0)
    strong_threshold: float = Field(0.015, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LabelConfig:
        if self.strong_threshold <= self.weak_threshold:
            raise ValueError("strong_threshold must be greater than weak_threshold")
        return self

    @property
    def n_classes(self) -> int:
        return 5


class WalkForwardConfig(_Frozen):
    """Purged and embargoed walk-forward folds, in days of calendar time."""

    train_days: int = Field(252, gt=0)
    test_days: int = Field(30, gt=0)
    step_days: int = Field(30, gt=0)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    embargo_bars: int = Field(0, ge=0, description="extra bars dropped after the purge")
    max_folds: int | None = Field(None, description="keep only the most recent N folds")
    expanding: bool = Field(
        True,
        description="train each fold on every purged row before its test window, from each "
        "universe member's first bar (False: a rolling window of train_days)",
    )
    window_days: int | None = Field(
        None,
        gt=0,
        description="with expanding: cap each fold's training window at the last window_days "
        "before its validation slice ends (a rolling window on the SAME test folds as full "
        "history, which train_days would move); None = full history",
    )

    @model_validator(mode="after")
    def _no_overlapping_tests(self) -> WalkForwardConfig:
        if self.step_days < self.test_days:
            raise ValueError(
                f"step_days={self.step_days} < test_days={self.test_days}: test windows would "
                "overlap and a bar would be predicted twice"
            )
        return self


class ModelConfig(_Frozen):
    """CryptoTransformer architecture (spec: d256, 8 heads, 6 layers, ff 1024)."""

    model_type: Literal["transformer"] = "transformer"
    d_model: int = 256
    nhead: int = 8
    num_layers: int = 6
    dim_feedforward: int = 1024
    dropout: float = 0.1
    head_hidden: int = 128
    head_dropout: float = 0.2
    head: Literal["classes", "regression"] = Field(
        "classes",
        description="classes: the spec's 5 logits (expected return from class-conditional mean "
        "returns); regression: one output, the forward return in units of "
        "labels.strong_threshold (Huber loss), which is the expected return",
    )
    sequence_length: int = 60

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.d_model % self.nhead:
            raise ValueError(f"d_model={self.d_model} must be divisible by nhead={self.nhead}")
        return self


class TrainingConfig(_Frozen):
    """AdvancedTrainer settings (spec TRAINING_CONFIG)."""

    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    epochs: int = 100
    early_stopping_patience: int = 10
    t0: int = Field(10, gt=0, description="CosineAnnealingWarmRestarts T_0, in epochs")
    class_weights: tuple[float, ...] | None = (0.8, 1.2, 1.0, 1.2, 0.8)
    grad_clip: float = 1.0
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16_autocast: bool = True
    compile: bool = Field(False, description="torch.compile the network (CUDA only)")
    auto_batch_size: bool = Field(
        False, description="on CUDA, time the candidates and train with the fastest batch size"
    )
    auto_batch_candidates: tuple[int, ...] = (256, 512, 1024, 2048)
    max_batches_per_epoch: int | None = None
    row_stride: int = Field(
        4,
        ge=1,
        description="training rows: one every k bars per symbol (bars whose index since the "
        "epoch is a multiple of k) for LightGBM, the networks and the shuffled control — fit "
        "and validation rows, never test rows; k >= the label reach makes the labels "
        "non-overlapping; 1 = every row",
    )
    num_threads: int | None = None

    @field_validator("class_weights")
    @classmethod
    def _five_weights(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and (len(v) != 5 or any(w <= 0 for w in v)):
            raise ValueError("class_weights must be 5 positive numbers (labels -2..2)")
        return v


class FeeRates(_Frozen):
    """One market type's trading fees, fractions of the filled notional."""

    taker: float = Field(ge=0)
    maker: float = Field(ge=0)


class FeeSchedule(_Frozen):
    """The venue's fees per market type: Binance's regular tier (VIP 0, no BNB discount), from
    https://www.binance.com/en/fee/futureFee (USDT-M) and https://www.binance.com/en/fee/schedule
    (spot); docs/trading.md "Costs"."""

    perpetual: FeeRates = FeeRates(taker=0.0005, maker=0.0002)  # USDT-M perpetual
    spot: FeeRates = FeeRates(taker=0.001, maker=0.001)


class CostConfig(_Frozen):
    """Costs are always on: taker fee, slippage per side, funding at each settlement.

    ``taker_fee``/``maker_fee`` are the fees the run CHARGES (fractions); their defaults are the
    USDT-M perpetual's regular tier in ``schedule``, the market every traded symbol trades on.
    ``fee_multiples``: the report re-prices the run's own fills at ``taker_fee x`` each of them
    (``fee_sensitivity``)."""

    taker_fee: float = Field(0.0005, ge=0)
    maker_fee: float = Field(0.0002, ge=0)
    schedule: FeeSchedule = FeeSchedule()
    fee_multiples: tuple[float, ...] = (0.0, 1.0, 1.5, 2.0)
    slippage_bps: float = 2.0  # half-spread estimate per fill (bps); see SlippageConfig
    initial_equity: float = 10_000.0
    order_type: Literal["taker", "maker"] = Field(
        "taker", description="entries/planned exits as market (taker) or limit-at-open (maker)"
    )

    @field_validator("fee_multiples")
    @classmethod
    def _multiples(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not {1.0, 2.0} <= set(v) or any(m < 0 for m in v):
            raise ValueError("fee_multiples must be >= 0 and include 1 and 2")
        return tuple(sorted(set(v)))


class SlippageConfig(_Frozen):
    """Slippage per fill = ``costs.slippage_bps`` (half-spread) + ``volatility_coefficient`` x the
    per-bar volatility known at the last decision (``rv`` de-annualised); docs/trading.md."""

    volatility_coefficient: float = Field(0.05, ge=0)


class RiskConfig(_Frozen):
    """MLPositionSizer and risk limits (spec "Position Sizing" and "Risk Management")."""

    base_risk: float = 0.02  # spec: 2 % base risk
    max_risk_per_trade: float = 0.02  # a stop-out loses at most this fraction of equity
    portfolio_heat: float = 0.06  # sum of open risk across symbols
    volatility_reference: float = 0.2  # spec: min(1, 0.2 / volatility), annualised volatility
    volatility_window: int = 168
    atr_period: int = 14
    atr_stop_multiple: float = 2.0
    max_leverage: float = 3.0  # gross notional / equity
    confidence_threshold: float = 0.0
    min_hold_bars: int | None = None  # None -> label horizon
    hold_confidence_threshold: float | None = None  # hysteresis; None -> confidence_threshold
    edge_cost_multiple: float | None = Field(
        2.0, description="enter only if |expected move| >= this x round-trip cost (None = off)"
    )
    take_profit_atr_multiple: float | None = None  # None -> no take-profit order
    maintenance_margin: float = Field(0.005, ge=0, description="cross-margin liquidation level")
    disagreement_floor: float = Field(0.0, ge=0, le=1, description="size x max(floor, agreement)")
    degraded_accuracy_ratio: float = 0.9  # recent < ratio x prior accuracy -> model switched off
    # guards at the point of execution (the kernel's entry step: backtest, paper and live alike;
    # None = off; rules in execution/backtest.py's docstring)
    daily_loss_limit: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="no new entry for the rest of a UTC day once the equity at a bar's close is "
        "<= (1 - this) x the day's starting equity (the close before its first bar)",
    )
    max_notional_per_symbol: float | None = Field(
        None, gt=0, description="an entry's notional <= this x equity (entries scaled down)"
    )
    max_notional_total: float | None = Field(
        None, gt=0, description="gross notional after an entry <= this x equity (scaled down)"
    )


# every configuration ever tried for the default, with its walk-forward net Sharpe: the 7 of the
# first selection (benchmarks/results/config_selection.json) and the 12 of the declared
# selection (examples/grids/selection.yaml, benchmarks/results/selection_leaderboard.json)
SELECTION_SHARPES: tuple[float, ...] = (
    *(-2.19, -1.98, -1.33, -1.68, 0.07, -0.82, -0.00),
    *(-0.46, -0.89, -0.81, -1.21, -0.52, -0.73, -0.08, -0.64, 0.06, 0.07, 0.41, 0.53),
)


class ControlsConfig(_Frozen):
    """Controls beside every result (random same-turnover strategy, shuffled-label model)."""

    shuffled_label_model: bool = True
    shuffled_label_folds: int | None = Field(
        None, ge=1, description="train the control on the most recent N folds only (None = all)"
    )
    random_paths: int = Field(200, ge=0)
    seed: int = 7
    bootstrap_samples: int = Field(1000, ge=0)
    bootstrap_block_days: int = Field(5, ge=1)
    # the configuration studies that chose the default: 7 + 12 configurations evaluated
    # walk-forward (SELECTION_SHARPES: their annualised net Sharpes)
    n_trials: int = Field(
        19, ge=1, description="configurations tried to choose this one (deflated Sharpe)"
    )
    trial_sharpes: tuple[float, ...] | None = Field(
        SELECTION_SHARPES,
        description="their annualised net Sharpes (the trial variance of the DSR)",
    )


class SweepProvenance(_Frozen):
    """Which sweep chose this configuration (written into ``selected.yaml`` by
    ``cryptoml experiment``; the registry records it with the candidate)."""

    grid: str
    configuration: str
    selection_rule: str
    leaderboard: str
    n_configurations: int = Field(ge=1)
    pbo: float | None = Field(None, ge=0, le=1)
    dsr: float | None = Field(None, ge=0, le=1)
    dsr_trials: int = Field(ge=1)


class IntegratorConfig(_Frozen):
    """Spec MLSignalIntegrator: agreement, ML override above a confidence, else hold."""

    override_confidence: float = 0.8
    conflict_strength: float = 0.1


class RuleStrategyConfig(_Frozen):
    """The traditional rule strategy (RSI/CCI/WaveTrend), a baseline and the integrator's input."""

    rsi_period: int = 14
    rsi_oversold: float = 30.0
    rsi_overbought: float = 70.0
    cci_period: int = 20
    cci_low: float = -100.0
    cci_high: float = 100.0
    signal_strength: int = 2  # |signal| the sizer sees for a rule entry
    confidence: float = 1.0


class Target(_Frozen):
    min: float | None = None
    max: float | None = None


class TargetsConfig(_Frozen):
    """Spec's KPI targets; measured honestly, never tuned to."""

    accuracy: Target = Target(min=0.65)
    sharpe: Target = Target(min=2.0)
    max_drawdown: Target = Target(max=0.15)
    win_rate: Target = Target(min=0.60, max=0.75)
    avg_daily_return: Target = Target(min=0.005, max=0.02)
    model_stability: Target = Target(max=0.10)  # accuracy degradation over 30 days


class RetrainConfig(_Frozen):
    """Spec should_retrain: recent 50 vs prior 150 accuracy, 10 % degradation."""

    recent_window: int = 50
    prior_window: int = 150
    degradation: float = 0.10
    psi_threshold: float = Field(0.25, gt=0, description="feature drift: PSI above this retrains")
    psi_bins: int = Field(10, ge=2)
    drift_days: int = Field(14, gt=0, description="recent window compared with training data")
    max_model_age_days: float = Field(30.0, gt=0, description="spec: stability over 30 days")
    track_backfill_days: int = Field(14, gt=0, description="first tracking run: days back")
    rolling_window: int = Field(100, gt=0, description="spec calculate_rolling_metrics window")


class GateConfig(_Frozen):
    """Deploy gate: the candidate must beat the deployed model on the recent purged validation
    window by ``margin`` (rank IC of expected vs realised return) and pass the sanity bounds;
    trading it also needs walk-forward evidence (deflated Sharpe, rank-IC t, trades)."""

    margin: float = Field(0.005, ge=0, description="rank IC the candidate must gain")
    max_calibration_error: float = Field(
        0.05, gt=0, le=1, description="sign hit rate: low-confidence half minus high half"
    )
    max_latency_ms_per_row: float = Field(50.0, gt=0, description="batch inference, per row")
    min_validation_rows: int = Field(20, gt=0)
    min_dsr: float = Field(0.5, ge=0, le=1, description="evidence: deflated Sharpe at least")
    min_rank_ic_t: float = Field(2.0, description="evidence: Newey-West rank-IC t at least")
    min_trades: int = Field(20, ge=0, description="evidence: out-of-sample round trips")


class PaperConfig(_Frozen):
    """Paper trading (spec phase 5, small capital): simulated fills at the backtest cost model."""

    initial_equity: float = Field(1_000.0, gt=0, description="small capital")
    run_name: str = "paper"
    poll_seconds: float = Field(60.0, gt=0, description="live mode: seconds between polls")


class GbmConfig(_Frozen):
    """Gradient-boosted model (LightGBM, CPU) on the same features and folds (issue #5), the
    strategy's default member: pooled over the universe, heavily regularised (a weak, noisy
    target: many rows per leaf, few leaves, feature and row subsampling)."""

    enabled: bool = True
    n_estimators: int = Field(200, gt=0, description="trees (an upper bound with early stopping)")
    learning_rate: float = Field(0.03, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(1000, ge=1)
    feature_fraction: float = Field(0.5, gt=0, le=1)
    bagging_fraction: float = Field(0.7, gt=0, le=1)
    lambda_l2: float = Field(10.0, ge=0)
    early_stopping_rounds: int = Field(100, gt=0)
    stopping_metric: Literal["none", "rank_ic", "l2"] = Field(
        "none",
        description="regression: early stopping on validation rank IC or L2, or none (all "
        "n_estimators trees: a weak signal's short validation window stops far too early)",
    )
    lags: tuple[int, ...] = Field((1, 4), description="extra lagged copies of every feature")
    num_threads: int = Field(2, ge=1)


class LstmCnnConfig(_Frozen):
    """Spec MultiScaleLSTMCNN: one conv branch per timeframe (read from the data store)."""

    enabled: bool = True
    timeframes: tuple[str, ...] = ("5m", "15m", "1h")
    sequence_length: int = Field(32, ge=2, description="closed bars per timeframe per sample")
    conv_channels: int = 64
    lstm_hidden: int = 128
    lstm_layers: int = 2
    attention_heads: int = 8
    # the spec's single regression output (forward return -> signal by the label thresholds);
    # "classification" gives five logits like the transformer
    head: Literal["classification", "regression"] = "regression"
    min_train_samples: int = Field(500, ge=1)


class PpoConfig(_Frozen):
    """Reinforcement learning: PPO (Stable-Baselines3) per fold on the TradingEnv."""

    enabled: bool = True
    recent_folds: int | None = Field(
        4,
        ge=1,
        description="train on the most recent N walk-forward folds only (None: every fold); "
        "bounds a multi-year walk-forward's cost on CPUs; the model comparison says which "
        "folds each model trained on",
    )
    total_timesteps: int = Field(20_000, gt=0)
    n_steps: int = Field(512, gt=0)
    position_fraction: float = Field(1.0, gt=0, description="notional / equity when in a trade")


class EnsembleConfig(_Frozen):
    """Stacking meta-learner over the base models' walk-forward (out-of-fold) predictions."""

    enabled: bool = True
    base_models: tuple[str, ...] = ("transformer", "gbm")
    accuracy_window: int = Field(48, gt=0, description="recent-accuracy meta-feature, in rows")
    regime_column: str | None = "rv_168"


class TuningConfig(_Frozen):
    """Optuna search for the LightGBM baseline, nested in each fold's training window."""

    n_trials: int = Field(0, ge=0, description="0 = no tuning (use GbmConfig as is)")


# the deployable zoo models (modeling.models.DEPLOYABLE, kept equal by test_zoo_interface.py)
StrategyModel = Literal["gbm", "transformer"]


class StrategyConfig(_Frozen):
    """Which model's out-of-sample predictions the strategy trades (and is deployed)."""

    model: StrategyModel = "gbm"


class PipelineSettings(_Frozen):
    profile: ProfileName = "demo"
    strategy: StrategyConfig = StrategyConfig()
    data: DataConfig = DataConfig()
    features: FeatureConfig = FeatureConfig()
    target: TargetConfig = TargetConfig()
    labels: LabelConfig = LabelConfig()
    walk_forward: WalkForwardConfig = WalkForwardConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    gbm: GbmConfig = GbmConfig()
    lstm_cnn: LstmCnnConfig = LstmCnnConfig()
    ppo: PpoConfig = PpoConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    tuning: TuningConfig = TuningConfig()
    costs: CostConfig = CostConfig()
    risk: RiskConfig = RiskConfig()
    rules: RuleStrategyConfig = RuleStrategyConfig()
    targets: TargetsConfig = TargetsConfig()
    retrain: RetrainConfig = RetrainConfig()
    gate: GateConfig = GateConfig()
    paper: PaperConfig = PaperConfig()
    ingest: IngestConfig = IngestConfig()
    slippage: SlippageConfig = SlippageConfig()
    controls: ControlsConfig = ControlsConfig()
    integrator: IntegratorConfig = IntegratorConfig()
    experiment: SweepProvenance | None = None  # set by a sweep's selected.yaml
    requires_cuda: bool = False

    @model_validator(mode="after")
    def _risk_inputs_are_features(self) -> PipelineSettings:
        if self.risk.volatility_window not in self.features.volatility_windows:
            raise ValueError(
                f"risk.volatility_window={self.risk.volatility_window} is not among "
                f"features.volatility_windows={self.features.volatility_windows}"
            )
        if self.risk.atr_period != self.features.atr_period:
            raise ValueError(
                f"risk.atr_period={self.risk.atr_period} != features.atr_period="
                f"{self.features.atr_period} (the stop distance uses that feature)"
            )
        return self

    @property
    def min_hold_bars(self) -> int:
        return self.risk.min_hold_bars or self.target.horizon

    @property
    def horizon(self) -> int:
        return self.target.horizon

    @model_validator(mode="after")
    def _target_volatility_is_a_feature(self) -> PipelineSettings:
        if self.target.vol_window not in self.features.volatility_windows:
            raise ValueError(
                f"target.vol_window={self.target.vol_window} is not among "
                f"features.volatility_windows={self.features.volatility_windows} (the forecast "
                "is scaled back with that feature)"
            )
        return self


def _deep_merge(base: dict, update: dict, path: str = "") -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _deep_merge(base[key], value, f"{path}{key}.")
        else:
            out[key] = value
    return out


def apply_overrides(settings: PipelineSettings, overrides: dict) -> PipelineSettings:
    """Settings with a nested mapping of overrides (a ``--config`` YAML file) merged in; unknown
    keys or bad values raise ``ValueError`` naming the setting."""
    if not overrides:
        return settings
    merged = _deep_merge(settings.model_dump(mode="python"), overrides)
    return PipelineSettings.model_validate(merged)


@functools.cache
def _profile_text(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    return resources.files(__package__).joinpath(PROFILE_DIR, f"{profile}.yaml").read_text("utf-8")


def profile_overrides(profile: ProfileName) -> dict:
    """The settings a profile changes from the class defaults: its YAML file
    ``cryptoml_pipeline/profiles/<profile>.yaml`` (shipped as package data), a nested mapping."""
    import yaml

    raw = yaml.safe_load(_profile_text(profile)) or {}
    if not isinstance(raw, dict) or "profile" in raw:
        raise ValueError(
            f"{PROFILE_DIR}/{profile}.yaml must be a mapping of settings without 'profile'"
        )
    return raw


def profile_settings(profile: ProfileName, **data_overrides: object) -> PipelineSettings:
    """Settings of a named profile (the class defaults with its YAML file's overrides, see
    :func:`profile_overrides`); ``data_overrides`` replace fields of :class:`DataConfig`."""
    base = PipelineSettings.model_validate({**profile_overrides(profile), "profile": profile})
    if data_overrides:
        base = base.model_copy(update={"data": base.data.model_copy(update=data_overrides)})
    return base
