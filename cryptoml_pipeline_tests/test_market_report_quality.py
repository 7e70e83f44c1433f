"""The report's data-quality section: the repair counts of report.json (data.quality) rendered as
a table in the HTML page."""

from __future__ import annotations

import re

import jsonschema
import pandas as pd
import pytest

from cryptoml_pipeline.market import repair_candles
from cryptoml_pipeline.reporting.html import quality_html, render_html
from cryptoml_pipeline.reporting.report import build_report, validate_report
from cryptoml_pipeline.settings import profile_settings
from cryptoml_pipeline_tests.test_report import DEPLOY, INFO, _evaluation


def _candles() -> pd.DataFrame:
    """48 hourly bars, two gaps (3 bars + 1 bar), one exact duplicate, one zero-volume bar."""
    ts = pd.date_range("2025-01-01", periods=48, freq="h", tz="UTC")
    df = pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "BTC/USDT",
            "open": 100.0,
            "high": 101.0,
            "low": 99.0,
            "close": 100.5,
            "volume": 5.0,
        }
    )
    df.loc[20, "volume"] = 0.0
    df = df.drop(index=[10, 11, 12, 30])
    return pd.concat([df, df.iloc[[5]]], ignore_index=True)


def _cells(page: str, label: str) -> list[str]:
    row = re.search(rf"<tr><td>{re.escape(label)}</td>(.*?)</tr>", page)
    assert row, label
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def test_report_html_shows_the_repair_counts_of_report_json() -> None:
    _, rep = repair_candles(_candles(), "1h", source="test")
    assert (rep.exact_duplicates_dropped, rep.missing_bars, rep.gap_events) == (1, 4, 2)
    ev = _evaluation()
    report = build_report(
        evaluation=ev,
        data_info=dict(INFO, data_quality=rep.as_metadata()),
        deployment=DEPLOY,
        settings=profile_settings("tiny"),
    )
    assert report["data"]["quality"]["exact_duplicates_dropped"] == 1
    page = render_html(report, ev.equity)
    section = page[page.index("<h2>Data quality") :]
    assert "<th>count</th><th>all symbols</th>" in section
    assert _cells(section, "exact duplicates dropped") == ["1"]
    assert _cells(section, "missing bars") == ["4"]
    assert _cells(section, "gaps (count)") == ["2"]
    assert _cells(section, "longest gap (bars)") == ["3"]
    assert _cells(section, "filled bars") == ["0"]
    assert _cells(section, "zero-volume bars") == ["1"]
    assert _cells(section, "spike bars") == ["0"]
    assert _cells(section, "rows in") == ["45"] and _cells(section, "rows out") == ["44"]


def test_per_symbol_counts_get_a_column_each_and_are_schema_valid() -> None:
    quality = {
        "missing_bars": 5,
        "spike_bars": 1,
        "per_symbol": {
            "BTC/USDT": {"missing_bars": 2, "spike_bars": 1},
            "ETH/USDT": {"missing_bars": 3, "spike_bars": 0},
        },
    }
    out = quality_html(quality)
    assert "<th>count</th><th>all symbols</th><th>BTC/USDT</th><th>ETH/USDT</th>" in out
    assert _cells(out, "missing bars") == ["5", "2", "3"]
    assert _cells(out, "spike bars") == ["1", "1", "0"]
    assert "per_symbol" in quality  # the caller's dict is not modified
    ev = _evaluation()
    report = build_report(
        evaluation=ev, data_info=INFO, deployment=DEPLOY, settings=profile_settings("tiny")
    )
    report["data"]["quality"] = quality
    validate_report(report)
    report["data"]["quality"]["per_symbol"]["ETH/USDT"]["spike_bars"] = -1
    with pytest.raises(jsonschema.ValidationError):
        validate_report(report)


def test_missing_quality_says_so() -> None:
    assert "no data-quality counts" in quality_html({})
    assert "no data-quality counts" in quality_html(None)
