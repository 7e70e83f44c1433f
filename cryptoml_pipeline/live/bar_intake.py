"""Bar integrity for the live service: which polled candles become a bar the service decides on.

Rules (``docs/live.md``), each logged on stderr and counted (``/metrics``
``cryptoml_live_bar_events_total{kind}``, ``/health`` ``bar_events``):

* ``not_closed``: a candle whose bar has not closed yet (open + one bar > now; the exchange
  serves the forming bar) is dropped: no decision is ever made on a bar that has not closed.
* ``invalid``: a candle with a non-finite or non-positive price, or a high / low that does not
  contain its open and close, is dropped and fetched again at the next poll.
* ``late``: the next bar is not complete (a universe member's candle is missing) at a poll: the
  service waits and polls again, up to ``deadline`` after the bar's close. Completed in time, the
  bar is processed as usual (counted ``late``).
* ``missing``: still incomplete at the deadline: the bar is skipped, i.e. no fills and no
  decisions at it for any symbol (the features of every traded symbol read every universe
  member); a candle of it arriving later is ignored (``ignored``).
* ``duplicate``: a candle delivered again with the same values is dropped.
* ``revised``: a candle of an already processed bar delivered again with other values: the bar
  is NOT re-decided (decisions are never retracted and the account keeps what it saw); a candle
  of a bar not processed yet is replaced by the newer values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

KINDS = ("not_closed", "invalid", "late", "missing", "duplicate", "revised", "ignored")
VALUES = ("open", "high", "low", "close", "volume")


@dataclass
class Intake:
    bar: pd.Timestamp
    candles: pd.DataFrame | None  # None: the bar is missing (skipped)


def _valid(v: tuple[float, ...]) -> bool:
    o, h, low, c, vol = v
    if not all(math.isfinite(x) for x in v) or min(o, h, low, c) <= 0 or vol < 0:
        return False
    return h >= max(o, c) and low <= min(o, c)


class BarIntake:
    """Turns polled candles into closed, complete bars in order (module docstring)."""

    def __init__(
        self,
        labels: Sequence[str],
        step: pd.Timedelta,
        deadline: pd.Timedelta,
        say: Callable[[str], None],
        count: Callable[[str], None] | None = None,
    ) -> None:
        self.labels = list(dict.fromkeys(labels))
        self.step, self.deadline = step, deadline
        self.say = say
        self._count = count
        self.counts = dict.fromkeys(KINDS, 0)
        self.cursor: pd.Timestamp | None = None  # the last bar taken (processed or skipped)
        self.seen: dict[tuple[str, pd.Timestamp], tuple[float, ...]] = {}
        self.pending: dict[pd.Timestamp, dict[str, tuple[float, ...]]] = {}
        self.waiting: set[pd.Timestamp] = set()
        self.skipped: set[pd.Timestamp] = set()
        self._noted: set[tuple[str, str, pd.Timestamp]] = set()

    def count(self, kind: str, note: str | None = None) -> None:
        self.counts[kind] += 1
        if self._count is not None:
            self._count(kind)
        if note:
            self.say(note)

    def _once(self, kind: str, symbol: str, bar: pd.Timestamp, note: str | None = None) -> None:
        if (kind, symbol, bar) not in self._noted:
            self._noted.add((kind, symbol, bar))
            self.count(kind, note)

    def start_after(self, bar: pd.Timestamp, candles: pd.DataFrame | None = None) -> None:
        """Bars up to ``bar`` are already taken (warm-up / the account's cursor); ``candles``:
        what was used for them (a later different delivery is ``revised``)."""
        self.cursor = bar
        if candles is not None:
            for key, v in self._rows(candles):
                self.seen[key] = v

    @staticmethod
    def _rows(candles: pd.DataFrame):
        ts = pd.to_datetime(candles["timestamp"], utc=True)
        cols = [candles[c].to_numpy(dtype=float) for c in VALUES]
        for i, (t, s) in enumerate(zip(ts, candles["symbol"].astype(str), strict=True)):
            yield (s, pd.Timestamp(t)), tuple(float(c[i]) for c in cols)

    def offer(self, candles: pd.DataFrame, now: pd.Timestamp) -> list[Intake]:
        """Take a poll's candles; returns the bars now ready (in order), complete or missing."""
        for (symbol, bar), v in self._rows(candles[candles["symbol"].isin(self.labels)]):
            if bar + self.step > now:
                self._once("not_closed", symbol, bar)
                continue
            if not _valid(v):
                self._once("invalid", symbol, bar, f"invalid candle {symbol} {bar}: {v}; refetch")
                continue
            if self.cursor is not None and bar <= self.cursor:
                known = self.seen.get((symbol, bar))
                if known is None:
                    if bar in self.skipped:
                        self._once(
                            "ignored", symbol, bar, f"{symbol} {bar} arrived after its deadline"
                        )
                    continue
                if known == v:
                    self.count("duplicate")
                else:
                    self._once(
                        "revised",
                        symbol,
                        bar,
                        f"revised candle {symbol} {bar} (processed {known}, now {v}): "
                        "not re-decided",
                    )
                continue
            slot = self.pending.setdefault(bar, {})
            if symbol in slot:
                if slot[symbol] == v:
                    self.count("duplicate")
                else:
                    self.count("revised", f"revised candle {symbol} {bar} before processing")
            slot[symbol] = v
        return self._ready(now)

    def _ready(self, now: pd.Timestamp) -> list[Intake]:
        out: list[Intake] = []
        if self.cursor is None:  # first bar: the earliest complete one
            complete = [b for b, s in sorted(self.pending.items()) if len(s) == len(self.labels)]
            if not complete:
                return out
            self.cursor = complete[0] - self.step
        while True:
            bar = self.cursor + self.step
            if bar + self.step > now:
                return out
            slot = self.pending.get(bar, {})
            absent = [s for s in self.labels if s not in slot]
            if absent and now < bar + self.step + self.deadline:
                if bar not in self.waiting:
                    self.waiting.add(bar)
                    self.say(f"bar {bar.isoformat()} late: waiting for {absent}")
                return out
            self.pending.pop(bar, None)
            self.cursor = bar
            if absent:
                self.waiting.discard(bar)
                self.skipped.add(bar)
                self.count(
                    "missing",
                    f"bar {bar.isoformat()} missing {absent} at its deadline "
                    f"({self.deadline}): skipped, no decisions at it",
                )
                out.append(Intake(bar, None))
                continue
            if bar in self.waiting:
                self.waiting.discard(bar)
                self.count("late", f"bar {bar.isoformat()} completed late")
            rows = [(bar, s, *slot[s]) for s in self.labels]
            for s in self.labels:
                self.seen[(s, bar)] = slot[s]
            frame = pd.DataFrame(rows, columns=["timestamp", "symbol", *VALUES])
            out.append(Intake(bar, frame))
            self._trim(bar)

    def _trim(self, bar: pd.Timestamp) -> None:
        edge = bar - 48 * self.step
        if len(self.seen) > 64 * len(self.labels):
            self.seen = {k: v for k, v in self.seen.items() if k[1] > edge}
            self.skipped = {b for b in self.skipped if b > edge}
            self._noted = {k for k in self._noted if k[2] > edge}
