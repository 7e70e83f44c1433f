"""Real-time serving: the deployed (or candidate) model with its run's settings and universe
(:mod:`.models`), the causal tail of the universe's market data and the last closed bar
(:mod:`.market`), and the signal with the backtest's decision (:mod:`.signal`,
:mod:`.decision`). Dagster-free; ``cryptoml signal`` (``cli/signal.py``) is its command line."""

from cryptoml_pipeline.live.decision import Decision, decide
from cryptoml_pipeline.live.loader import NotDeployedError, ServedModel, load_served, served_from
from cryptoml_pipeline.live.market_tail import closed_bars, store_tail, tail_span
from cryptoml_pipeline.live.signal import signals, tail_features

__all__ = [
    "Decision",
    "NotDeployedError",
    "ServedModel",
    "closed_bars",
    "decide",
    "load_served",
    "served_from",
    "signals",
    "store_tail",
    "tail_features",
    "tail_span",
]
