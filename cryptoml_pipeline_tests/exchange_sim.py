"""A loopback Binance USDT-M futures simulator (``/fapi``) for offline tests of the live service.

ccxt's own ``binanceusdm`` client is pointed at it (``urls['api']`` override, see
``live/exchange.py``), so the requests, their signing and the parsing of the answers are ccxt's.
It serves stored bars (``/fapi/v1/klines``, the forming bar included as Binance does; spot bars,
when given, at the spot API's ``/api/v3/klines``) and funding
(``/fapi/v1/fundingRate``) up to its clock, the markets (``/fapi/v1/exchangeInfo``), and accepts
orders in the exchange's REST shape (``POST/GET /fapi/v1/order``, ``/fapi/v3/positionRisk``):
market orders fill at the last closed bar's close, reduce-only orders never increase a position.

Faults to inject: a late candle (served only from a given time), a missing candle (never
served), HTTP 429 / 5xx answers, a rejected order, a partially filled order, and a hook called
after an order was accepted (a test kills the client there: "restart between sending and
recording"). The simulator's state (orders, positions) lives in memory; a service in another
process (``cryptoml live --execute --exchange-clock``, the kill trials of ``live_kill.py``) talks
to it over HTTP and reads its clock from ``GET /fapi/v1/time`` (``on_time``: advance it there).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd

STEP_SIZE = {"BTC": "0.001", "ETH": "0.001"}  # default lot step for other bases: 0.01


def binance_id(symbol: str) -> str:
    """``"BTC/USDT"`` / ``"BTC/USDT:USDT"`` -> ``"BTCUSDT"``."""
    return symbol.split(":")[0].replace("/", "")


@dataclass
class Faults:
    late: dict[tuple[str, int], int] = field(default_factory=dict)  # (id, open ms) -> from ms
    missing: set[tuple[str, int]] = field(default_factory=set)  # (id, open ms) never served
    errors: list[tuple[str, int]] = field(default_factory=list)  # (path prefix, status) queue
    reject: list[str] = field(default_factory=list)  # the next order with this id prefix
    partial: list[tuple[str, float]] = field(default_factory=list)  # next matching: filled share
    revised: dict[tuple[str, int], float] = field(default_factory=dict)  # close served later


class ExchangeSim:
    def __init__(
        self,
        candles: pd.DataFrame,
        funding: pd.DataFrame,
        *,
        timeframe_ms: int,
        clock: Callable[[], int],
        api_key: str = "test-key",
        spot: pd.DataFrame | None = None,
    ) -> None:
        """``candles``: timestamp, symbol (``BTC/USDT``), open, high, low, close, volume;
        ``funding``: timestamp, symbol, funding_rate. ``clock()``: the exchange's time (ms)."""
        self.step = int(timeframe_ms)
        self.clock = clock
        self.api_key = api_key
        self.faults = Faults()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.orders: dict[str, dict[str, Any]] = {}  # client order id -> order
        self.positions: dict[str, float] = {}
        self.on_order: Callable[[dict[str, Any]], None] | None = None
        self.on_time: Callable[[], None] | None = None  # called at GET /fapi/v1/time
        self.posted: list[str] = []  # the client id of every order POST, in order
        self.bars: dict[str, pd.DataFrame] = {}
        for sym, frame in candles.groupby("symbol"):
            frame = frame.sort_values("timestamp")
            opens = pd.to_datetime(frame["timestamp"], utc=True).astype("int64") // 10**6
            self.bars[binance_id(str(sym))] = frame.assign(open_ms=opens.to_numpy())
        self.spot_bars: dict[str, pd.DataFrame] = {}  # spot klines (``/api/v3/klines``)
        for sym, frame in (spot if spot is not None else candles.iloc[:0]).groupby("symbol"):
            frame = frame.sort_values("timestamp")
            opens = pd.to_datetime(frame["timestamp"], utc=True).astype("int64") // 10**6
            self.spot_bars[binance_id(str(sym))] = frame.assign(open_ms=opens.to_numpy())
        self.funding: dict[str, pd.DataFrame] = {}
        for sym, frame in funding.groupby("symbol"):
            ms = pd.to_datetime(frame["timestamp"], utc=True).astype("int64") // 10**6
            self.funding[binance_id(str(sym))] = frame.assign(ms=ms.to_numpy())
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> ExchangeSim:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- market data -------------------------------------------------------------------------
    def exchange_info(self) -> dict[str, Any]:
        symbols = []
        for sid in sorted(self.bars):
            base = sid[: -len("USDT")]
            step = STEP_SIZE.get(base, "0.01")
            symbols.append(
                {
                    "symbol": sid,
                    "pair": sid,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "baseAsset": base,
                    "quoteAsset": "USDT",
                    "marginAsset": "USDT",
                    "pricePrecision": 2,
                    "quantityPrecision": len(step.split(".")[1]),
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "triggerProtect": "0.0500",
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.01",
                            "maxPrice": "10000000",
                            "tickSize": "0.01",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "stepSize": step,
                            "maxQty": "100000",
                            "minQty": step,
                        },
                        {
                            "filterType": "MARKET_LOT_SIZE",
                            "stepSize": step,
                            "maxQty": "100000",
                            "minQty": step,
                        },
                        {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    ],
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.clock(),
            "rateLimits": [],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True}],
            "symbols": symbols,
        }

    def klines(
        self, q: dict[str, str], bars: dict[str, pd.DataFrame] | None = None
    ) -> list[list[Any]]:
        sid, now = q["symbol"], self.clock()
        frame = (self.bars if bars is None else bars).get(sid)
        if frame is None:
            raise SimError(400, -1121, "Invalid symbol.")
        start = int(q.get("startTime", 0))
        end = int(q.get("endTime", now))
        limit = int(q.get("limit", 500))
        rows = frame[(frame["open_ms"] >= start) & (frame["open_ms"] <= min(end, now))]
        out = []
        for r in rows.itertuples(index=False):
            key = (sid, int(r.open_ms))
            if key in self.faults.missing or self.faults.late.get(key, 0) > now:
                continue
            close = self.faults.revised.get(key, r.close) if r.open_ms + self.step <= now else None
            if close is None:  # the forming bar: what has traded so far (its open, for now)
                o = h = low = c = r.open
            else:
                o, h, low, c = r.open, max(r.high, close), min(r.low, close), close
            out.append(
                [
                    int(r.open_ms),
                    f"{o:.8f}",
                    f"{h:.8f}",
                    f"{low:.8f}",
                    f"{c:.8f}",
                    f"{r.volume:.8f}",
                    int(r.open_ms) + self.step - 1,
                    "0",
                    1,
                    "0",
                    "0",
                    "0",
                ]
            )
            if len(out) >= limit:
                break
        return out

    def funding_rates(self, q: dict[str, str]) -> list[dict[str, Any]]:
        sid, now = q["symbol"], self.clock()
        frame = self.funding.get(sid)
        if frame is None:
            return []
        start = int(q.get("startTime", 0))
        rows = frame[(frame["ms"] >= start) & (frame["ms"] <= now)].head(int(q.get("limit", 100)))
        return [
            {
                "symbol": sid,
                "fundingTime": int(r.ms),
                "fundingRate": f"{r.funding_rate:.8f}",
                "markPrice": "0",
            }
            for r in rows.itertuples(index=False)
        ]

    def last_close(self, sid: str) -> float:
        frame = self.bars[sid]
        closed = frame[frame["open_ms"] + self.step <= self.clock()]
        return float(closed["close"].iloc[-1]) if len(closed) else float(frame["open"].iloc[0])

    # --- orders ------------------------------------------------------------------------------
    def new_order(self, q: dict[str, str]) -> dict[str, Any]:
        sid, cid = q["symbol"], q.get("newClientOrderId") or f"sim{len(self.orders)}"
        self.posted.append(cid)
        if cid in self.orders:
            raise SimError(400, -4116, "ClientOrderId is duplicated.")
        for k, prefix in enumerate(self.faults.reject):
            if cid.startswith(prefix):
                del self.faults.reject[k]
                raise SimError(400, -2019, "Margin is insufficient.")
        if q.get("type") != "MARKET":
            raise SimError(400, -1116, "Invalid orderType.")
        qty = float(q["quantity"])
        side = 1 if q["side"] == "BUY" else -1
        have = self.positions.get(sid, 0.0)
        reduce_only = str(q.get("reduceOnly", "false")).lower() == "true"
        if reduce_only:
            if have == 0 or side * have > 0:
                raise SimError(400, -2022, "ReduceOnly Order is rejected.")
            qty = min(qty, abs(have))
        share = 1.0
        for k, (prefix, value) in enumerate(self.faults.partial):
            if cid.startswith(prefix):
                del self.faults.partial[k]
                share = value
                break
        filled = round(qty * share, 8)
        price = self.last_close(sid)
        self.positions[sid] = round(have + side * filled, 8)
        now = self.clock()
        order = {
            "orderId": 1000 + len(self.orders),
            "symbol": sid,
            "status": "FILLED" if filled == qty else "EXPIRED",
            "clientOrderId": cid,
            "price": "0",
            "avgPrice": f"{price:.8f}",
            "origQty": f"{float(q['quantity']):.8f}",
            "executedQty": f"{filled:.8f}",
            "cumQuote": f"{filled * price:.8f}",
            "timeInForce": "GTC",
            "type": "MARKET",
            "reduceOnly": reduce_only,
            "closePosition": False,
            "side": q["side"],
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": "MARKET",
            "time": now,
            "updateTime": now,
        }
        self.orders[cid] = order
        return order

    def get_order(self, q: dict[str, str]) -> dict[str, Any]:
        cid = q.get("origClientOrderId")
        order = self.orders.get(cid or "")
        if order is None or order["symbol"] != q.get("symbol"):
            raise SimError(400, -2013, "Order does not exist.")
        return order

    def position_risk(self) -> list[dict[str, Any]]:
        out = []
        for sid, amt in sorted(self.positions.items()):
            if amt == 0:
                continue
            mark = self.last_close(sid)
            out.append(
                {
                    "symbol": sid,
                    "positionSide": "BOTH",
                    "positionAmt": f"{amt:.8f}",
                    "entryPrice": f"{mark:.8f}",
                    "breakEvenPrice": f"{mark:.8f}",
                    "markPrice": f"{mark:.8f}",
                    "unRealizedProfit": "0",
                    "liquidationPrice": "0",
                    "isolatedMargin": "0",
                    "notional": f"{amt * mark:.8f}",
                    "marginAsset": "USDT",
                    "isolatedWallet": "0",
                    "initialMargin": "0",
                    "maintMargin": "0",
                    "positionInitialMargin": "0",
                    "openOrderInitialMargin": "0",
                    "adl": 0,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": self.clock(),
                }
            )
        return out

    # --- dispatch ------------------------------------------------------------------------------
    def handle(self, method: str, path: str, q: dict[str, str], key: str | None) -> Any:
        with self.lock:
            self.requests.append((method, path))
            for k, (prefix, status) in enumerate(self.faults.errors):
                if path.startswith(prefix):
                    del self.faults.errors[k]
                    if status == 429:
                        raise SimError(429, -1003, "Too many requests; current limit is 2400.")
                    raise SimError(status, -1001, "Internal error; unable to process your request.")
            if path == "/fapi/v1/exchangeInfo":
                return self.exchange_info()
            if path == "/fapi/v1/time":  # a service on ``--exchange-clock`` asks once a poll
                if self.on_time is not None:
                    self.on_time()
                return {"serverTime": self.clock()}
            if path == "/fapi/v1/klines":
                return self.klines(q)
            if path == "/api/v3/klines":  # the spot market's klines (the basis)
                return self.klines(q, self.spot_bars)
            if path == "/fapi/v1/fundingRate":
                return self.funding_rates(q)
            if key != self.api_key:
                raise SimError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            if path == "/fapi/v1/order" and method == "POST":
                order = self.new_order(q)
                hook = self.on_order
            elif path == "/fapi/v1/order" and method == "GET":
                return self.get_order(q)
            elif path in ("/fapi/v3/positionRisk", "/fapi/v2/positionRisk"):
                return self.position_risk()
            elif path == "/fapi/v1/leverageBracket":  # ccxt reads it before positionRisk
                bracket = {
                    "bracket": 1,
                    "initialLeverage": 20,
                    "notionalCap": 10**9,
                    "notionalFloor": 0,
                    "maintMarginRatio": 0.004,
                    "cum": 0.0,
                }
                return [{"symbol": sid, "brackets": [bracket]} for sid in sorted(self.bars)]
            else:
                raise SimError(404, -1000, f"unknown endpoint {method} {path}")
        if hook is not None:
            hook(order)
        return order


class SimError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.body = status, {"code": code, "msg": msg}


def _handler(sim: ExchangeSim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                body = self.rfile.read(length).decode()
                q |= {k: v[-1] for k, v in parse_qs(body).items()}
            try:
                status, payload = (
                    200,
                    sim.handle(method, url.path, q, self.headers.get("X-MBX-APIKEY")),
                )
            except SimError as exc:
                status, payload = exc.status, exc.body
            except Exception as exc:  # a simulator bug: say it (500), never hang the client
                import traceback

                traceback.print_exc()
                status, payload = 500, {"code": -1000, "msg": f"simulator: {exc!r}"}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler


class StepClock:
    """A simulated clock (ms) shared by the simulator and the service: ``advance()`` moves it."""

    def __init__(self, start: pd.Timestamp) -> None:
        self.ms = int(start.value // 10**6)
        self.lock = threading.Lock()

    def __call__(self) -> int:
        return self.ms

    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.ms, unit="ms", tz="UTC")

    def advance(self, ms: int) -> None:
        with self.lock:
            self.ms += int(ms)


def wall_clock() -> int:
    return int(time.time() * 1000)
