"""Market data: file layout, schemas, the parquet store, ccxt download and a synthetic market.

Dagster-free. Frames are long (one row per timestamp and symbol), timestamps ns UTC open times.
"""

from cryptoml_pipeline.market.ccxt_source import (
    download_to_store,
    fetch_funding_history,
    fetch_ohlcv_history,
    make_exchange,
)
from cryptoml_pipeline.market.ingest import backfill
from cryptoml_pipeline.market.layout import (
    candles_path,
    funding_path,
    perpetual_symbol,
    spot_symbol,
    symbol_to_stem,
)
from cryptoml_pipeline.market.repair import RepairReport, repair_candles
from cryptoml_pipeline.market.resample import resample_candles
from cryptoml_pipeline.market.schemas import (
    CANDLE_COLUMNS,
    CANDLES_SCHEMA,
    FUNDING_COLUMNS,
    FUNDING_SCHEMA,
    OPEN_INTEREST_COLUMNS,
    OPEN_INTEREST_SCHEMA,
    validate_candles,
    validate_funding,
    validate_open_interest,
)
from cryptoml_pipeline.market.source import (
    MarketData,
    load_market_data,
    load_via_ccxt,
    resolve_window,
)
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.market.synthetic import synthetic_market

__all__ = [
    "CANDLES_SCHEMA",
    "CANDLE_COLUMNS",
    "FUNDING_COLUMNS",
    "FUNDING_SCHEMA",
    "OPEN_INTEREST_COLUMNS",
    "OPEN_INTEREST_SCHEMA",
    "MarketData",
    "ParquetStore",
    "RepairReport",
    "backfill",
    "candles_path",
    "download_to_store",
    "fetch_funding_history",
    "fetch_ohlcv_history",
    "funding_path",
    "load_market_data",
    "load_via_ccxt",
    "make_exchange",
    "perpetual_symbol",
    "repair_candles",
    "resample_candles",
    "resolve_window",
    "spot_symbol",
    "symbol_to_stem",
    "synthetic_market",
    "validate_candles",
    "validate_funding",
    "validate_open_interest",
]
