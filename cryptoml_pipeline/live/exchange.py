"""The live service's exchange: Binance USDT-M perpetuals through ccxt (``binanceusdm``).

* :func:`exchange_client`: ccxt's client; the keys ONLY from the environment
  (``CRYPTOML_EXCHANGE_API_KEY`` / ``CRYPTOML_EXCHANGE_SECRET``, never logged); ``url`` points
  it at another server (a testnet, the test suite's loopback simulator) via ``urls['api']``.
* :class:`ExchangeFeed`: polls the bars (klines) of every universe member and the funding of the
  traded symbols; :mod:`.bar_intake` decides which of them become bars.
* :class:`Executor` (``cryptoml live --execute``): the orders. At every bar the exchange
  position of each traded symbol is brought to the paper account's position right after the next
  open (``PaperTrader.next_open_positions``: the decisions just made, sized by the simulator):
  a change of direction is a reduce-only market exit of the whole exchange position, then a
  market entry of the target quantity; no resizing otherwise. Client order ids are derived from
  (run, bar, symbol, leg), so the same decision always has the same id; before sending, the id
  is looked up on the exchange (``GET /fapi/v1/order?origClientOrderId``) and an order found
  there is taken, not sent again. Intent, results and the executor's book are written to
  ``OUTPUT/live/<run>.execution.json`` (atomic replace) before and after every order. At start and
  after every bar the book is reconciled with the exchange's positions; a mismatch stops trading
  (one line).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cryptoml_pipeline.errors import CryptoMLError, InputError
from cryptoml_pipeline.market.layout import perpetual_symbol, spot_symbol

KEY_ENV, SECRET_ENV, URL_ENV = (
    "CRYPTOML_EXCHANGE_API_KEY",
    "CRYPTOML_EXCHANGE_SECRET",
    "CRYPTOML_EXCHANGE_URL",
)
BINANCE_FAPI = "https://fapi.binance.com"
BINANCE_SPOT = "https://api.binance.com"
RETRIES = 4  # per request, on 429 / 5xx / network errors (backoff 0.2 s, doubling)


class ReconcileError(CryptoMLError, RuntimeError):
    """The exchange's positions disagree with the executor's book."""


def exchange_client(url: str | None = None, *, keys: bool = False) -> Any:
    """ccxt's ``binanceusdm`` client; ``keys``: read the API key and secret from the environment
    (an :class:`InputError` naming the variables when either is missing)."""
    import ccxt

    config: dict[str, Any] = {"enableRateLimit": True, "timeout": 10_000}
    if keys:
        key, secret = os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)
        if not key or not secret:
            raise InputError(f"--execute needs {KEY_ENV} and {SECRET_ENV} in the environment")
        config |= {"apiKey": key, "secret": secret}
    client = ccxt.binanceusdm(config)
    client.options["fetchCurrencies"] = False  # spot wallet endpoints: not needed
    client.options["fetchMarkets"] = {"types": ["linear"]}
    url = url or os.environ.get(URL_ENV)
    if url:
        api = client.urls["api"]
        for name, value in list(api.items()):
            for host in (BINANCE_FAPI, BINANCE_SPOT):  # the spot host: the basis' spot klines
                if isinstance(value, str) and value.startswith(host):
                    api[name] = url.rstrip("/") + value[len(host) :]
        client.rateLimit = 1
    return client


def call(fn: Callable[[], Any], on_error: Callable[[Exception], None], sleep=time.sleep) -> Any:
    """``fn()`` with retries on 429 / 5xx / network errors (each one ``on_error``); the last
    error is raised. Other exchange errors (rejections, bad requests) are raised at once."""
    import ccxt

    delay = 0.2
    for attempt in range(RETRIES + 1):
        try:
            return fn()
        except ccxt.OperationFailed as exc:  # 429, 5xx, timeouts, network (not rejections)
            on_error(exc)
            if attempt == RETRIES:
                raise
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


class ExchangeFeed:
    """Closed-bar candles and funding from the exchange (ccxt)."""

    def __init__(
        self,
        client: Any,
        members: Sequence[str],
        labels: dict[str, str],
        traded: Sequence[str],
        timeframe: str,
        on_error: Callable[[Exception], None],
    ) -> None:
        self.client, self.members, self.labels = client, list(members), labels
        self.traded, self.timeframe, self.on_error = list(traded), timeframe, on_error

    def candles(self, since: pd.Timestamp, limit: int = 1000) -> pd.DataFrame:
        rows = []
        for member in self.members:
            symbol = perpetual_symbol(member)
            since_ms = int(since.value // 10**6)
            got = call(
                lambda s=symbol, t=since_ms: self.client.fetch_ohlcv(s, self.timeframe, t, limit),
                self.on_error,
            )
            rows += [[r[0], self.labels[member], *r[1:6]] for r in got]
        frame = pd.DataFrame(
            rows, columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"]
        )
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
        return frame

    def spot_closes(self, symbols: Sequence[str], since: pd.Timestamp) -> pd.DataFrame:
        """Spot closes (``timestamp, symbol, close``) of ``symbols`` from ``since`` (one page of
        up to 1000 bars each): the perpetual-spot basis of a model that reads it. The spot
        klines come from the exchange's public spot API through the same ccxt client
        (``publicGetKlines``, parsed by ccxt's ``parse_ohlcvs``); the forming bar is served too
        and is dropped by the caller with the perpetual's."""
        rows = []
        for symbol in symbols:
            market_id = spot_symbol(symbol).replace("/", "")
            params = {
                "symbol": market_id,
                "interval": self.timeframe,
                "startTime": int(since.value // 10**6),
                "limit": 1000,
            }
            got = call(lambda p=params: self.client.publicGetKlines(p), self.on_error)
            parsed = self.client.parse_ohlcvs(got, None, self.timeframe)
            rows += [[r[0], symbol, float(r[4])] for r in parsed]
        frame = pd.DataFrame(rows, columns=["timestamp", "symbol", "close"])
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
        return frame

    def funding(self, since: pd.Timestamp) -> pd.DataFrame:
        rows = []
        for symbol in self.traded:
            perp, since_ms = perpetual_symbol(symbol), int(since.value // 10**6)
            got = call(
                lambda s=perp, t=since_ms: self.client.fetch_funding_rate_history(s, t, 1000),
                self.on_error,
            )
            rows += [[r["timestamp"], symbol, float(r["fundingRate"])] for r in got]
        frame = pd.DataFrame(rows, columns=["timestamp", "symbol", "funding_rate"])
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
        return frame


def client_order_id(run: str, bar: pd.Timestamp, symbol: str, leg: str) -> str:
    """Deterministic, exchange-legal (``[.A-Za-z0-9:/_-]{1,36}``): ``cml`` + 10 hex of
    (run, symbol) + the bar's open (epoch seconds) + the leg (``x`` exit, ``e`` entry, ``k``
    kill)."""
    digest = hashlib.sha256(f"{run}|{symbol}".encode()).hexdigest()[:10]
    return f"cml{digest}{int(bar.value // 10**9)}{leg}"


class Executor:
    """Sends the decisions as orders (module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        run: str,
        symbols: Sequence[str],
        state_path: Path,
        say: Callable[[str], None],
        on_error: Callable[[Exception], None],
        count: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self.client, self.run, self.symbols = client, run, list(symbols)
        self.path, self.say, self.on_error, self._count = Path(state_path), say, on_error, count
        self.halted: str | None = None
        self.counts = dict.fromkeys(("sent", "found", "rejected", "partial", "skipped"), 0)
        self.state: dict[str, Any] = {"executed_bar": None, "book": {}, "intent": None}
        if self.path.is_file():
            self.state = json.loads(self.path.read_text())

    # --- state --------------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(self.state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.path.with_suffix(".orders.jsonl"), "a") as fh:
            fh.write(json.dumps(record) + "\n")

    @property
    def book(self) -> dict[str, float]:
        return {s: float(q) for s, q in self.state["book"].items()}

    def count(self, kind: str) -> None:
        self.counts[kind] += 1
        self._count(kind)

    # --- exchange calls ----------------------------------------------------------------------
    def _lookup(self, symbol: str, cid: str) -> dict[str, Any] | None:
        import ccxt

        try:
            return call(
                lambda: self.client.fetch_order(
                    None, perpetual_symbol(symbol), {"origClientOrderId": cid}
                ),
                self.on_error,
            )
        except ccxt.OrderNotFound:
            return None

    def exchange_positions(self) -> dict[str, float]:
        perps = {perpetual_symbol(s): s for s in self.symbols}
        got = call(lambda: self.client.fetch_positions(list(perps)), self.on_error)
        out = dict.fromkeys(self.symbols, 0.0)
        for p in got:
            if p.get("symbol") in perps:
                sign = -1.0 if p.get("side") == "short" else 1.0
                out[perps[p["symbol"]]] = sign * float(p.get("contracts") or 0.0)
        return out

    def _round(self, symbol: str, quantity: float) -> float:
        """Down to the market's amount step (0 when below one step)."""
        import ccxt

        try:
            return float(self.client.amount_to_precision(perpetual_symbol(symbol), quantity))
        except ccxt.InvalidOrder:  # below the minimum amount precision
            return 0.0

    def _tolerance(self, symbol: str) -> float:
        market = self.client.market(perpetual_symbol(symbol))
        step = (market.get("precision") or {}).get("amount") or 1e-8
        return float(step) / 2

    # --- the order path -----------------------------------------------------------------------
    def start(self) -> None:
        """Resolve an interrupted bar (its orders looked up by client id), then reconcile."""
        call(self.client.load_markets, self.on_error)
        intent = self.state.get("intent")
        if intent:
            for order in intent["orders"]:
                if order.get("done"):
                    continue
                found = self._lookup(order["symbol"], order["cid"])
                if found is not None:
                    self.count("found")
                    self.say(f"order {order['cid']} was sent before the restart: taken, not resent")
                    self._fill(order, found)
            self.state["intent"] = None
            self._save()
        self.reconcile("start")

    def reconcile(self, when: str) -> None:
        if self.halted:
            return
        have = self.exchange_positions()
        book = self.book
        for s in self.symbols:
            if abs(have.get(s, 0.0) - book.get(s, 0.0)) > self._tolerance(s):
                self.halted = (
                    f"exchange position mismatch at {when}: {s} exchange {have.get(s, 0.0):g}, "
                    f"account {book.get(s, 0.0):g}: trading stopped"
                )
                self.say(self.halted)
                return

    def _fill(self, order: dict[str, Any], result: dict[str, Any]) -> None:
        filled = float(result.get("filled") or 0.0)
        amount = float(order["amount"])
        sign = 1.0 if order["side"] == "buy" else -1.0
        book = self.state["book"]
        book[order["symbol"]] = round(float(book.get(order["symbol"], 0.0)) + sign * filled, 12)
        order["done"], order["filled"] = True, filled
        if 0 < filled < amount * (1 - 1e-9):
            self.count("partial")
            self.say(
                f"order {order['cid']} {order['side']} {order['symbol']} partially filled: "
                f"{filled:g} of {amount:g} (the remainder is not chased)"
            )
        self._log({"bar": self.state["intent"]["bar"], **order, "status": result.get("status")})
        self._save()

    def plan(
        self, bar: pd.Timestamp, targets: dict[str, float], leg_prefix: str = ""
    ) -> list[dict[str, Any]]:
        orders = []
        book = self.book
        for s in self.symbols:
            have, want = book.get(s, 0.0), float(targets.get(s, 0.0))
            tol = self._tolerance(s)
            have_dir = 0 if abs(have) <= tol else (1 if have > 0 else -1)
            want_q = self._round(s, abs(want))
            want_dir = 0 if want_q <= tol else (1 if want > 0 else -1)
            if have_dir == want_dir:
                continue  # no resizing
            if have_dir:
                orders.append(
                    {
                        "cid": client_order_id(self.run, bar, s, leg_prefix or "x"),
                        "symbol": s,
                        "side": "sell" if have_dir > 0 else "buy",
                        "amount": abs(have),
                        "reduce_only": True,
                    }
                )
            if want_dir and not leg_prefix:
                orders.append(
                    {
                        "cid": client_order_id(self.run, bar, s, "e"),
                        "symbol": s,
                        "side": "buy" if want_dir > 0 else "sell",
                        "amount": want_q,
                        "reduce_only": False,
                    }
                )
        return orders

    def sync(self, bar: pd.Timestamp, targets: dict[str, float], *, leg: str = "") -> None:
        """Bring the exchange to ``targets`` (signed quantities) for the decision at ``bar``;
        idempotent per bar (a bar already executed is skipped); reconciles afterwards."""
        if self.halted:
            return
        done = self.state.get("executed_bar")
        if not leg and done is not None and pd.Timestamp(done) >= bar:
            return
        orders = self.plan(bar, targets, leg)
        self.state["intent"] = {"bar": bar.isoformat(), "orders": orders}
        self._save()
        for order in orders:
            self._send(order)
        if not leg:
            self.state["executed_bar"] = bar.isoformat()
        self.state["intent"] = None
        self._save()
        self.reconcile(f"bar {bar.isoformat()}")

    def _send(self, order: dict[str, Any]) -> None:
        import ccxt

        symbol, cid = order["symbol"], order["cid"]
        found = self._lookup(symbol, cid)
        if found is not None:  # sent before (a restart between sending and recording)
            self.count("found")
            self.say(f"order {cid} already on the exchange: taken, not resent")
            self._fill(order, found)
            return
        params: dict[str, Any] = {"newClientOrderId": cid, "newOrderRespType": "RESULT"}
        if order["reduce_only"]:
            params["reduceOnly"] = True
        amount = self._round(symbol, order["amount"])
        try:
            result = call(
                lambda: self.client.create_order(
                    perpetual_symbol(symbol), "market", order["side"], float(amount), None, params
                ),
                self.on_error,
            )
        except ccxt.ExchangeError as exc:  # rejected (margin, reduce-only, filters, ...)
            self.count("rejected")
            self.say(f"order {cid} {order['side']} {amount} {symbol} rejected: {exc}")
            order["done"], order["rejected"] = True, str(exc)[:200]
            self._log({"bar": self.state["intent"]["bar"], **order})
            self._save()
            return
        except ccxt.OperationFailed:
            # the request may have reached the exchange: ask by client id before giving up
            found = self._lookup(symbol, cid)
            if found is None:
                raise
            result = found
        self.count("sent")
        self._fill(order, result)


__all__ = [
    "ExchangeFeed",
    "Executor",
    "ReconcileError",
    "client_order_id",
    "exchange_client",
]
