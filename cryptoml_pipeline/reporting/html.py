"""Render the report as one self-contained HTML page (plots embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from cryptoml_pipeline.reporting.charts import (
    calibration_png,
    exposure_png,
    monthly_heatmap_png,
    rolling_sharpe_png,
)
from cryptoml_pipeline.reporting.features_section import features_html
from cryptoml_pipeline.reporting.models_section import models_html

KPI_ROWS = [
    ("total_return", "Total return", "pct"),
    ("avg_daily_return", "Avg daily return", "pct"),
    ("sharpe", "Sharpe (daily, ×√365)", "num"),
    ("sortino", "Sortino", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("win_rate", "Win rate", "pct"),
    ("n_trades", "Round trips", "int"),
    ("accuracy", "5-class accuracy", "pct"),
    ("directional_accuracy", "Directional accuracy", "pct"),
    ("fees_paid", "Fees paid (of equity)", "pct"),
    ("funding_paid", "Funding paid (of equity)", "pct"),
    ("avg_exposure", "Avg gross exposure", "pct"),
    ("precision", "Precision (macro, 5-class)", "pct"),
    ("recall", "Recall (macro, 5-class)", "pct"),
    ("avg_return_per_trade", "Avg return per trade (on notional)", "pct"),
    ("calmar", "Calmar", "num"),
    ("turnover", "Turnover (x initial capital)", "num"),
    ("time_in_market", "Time in market", "pct"),
    ("model_stability", "Model stability (30-day acc. degradation)", "pct"),
    ("psr", "Probabilistic Sharpe P(SR > 0)", "pct"),
    ("dsr", "Deflated Sharpe", "pct"),
]


def fmt(value: Any, kind: str = "num") -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{int(value)}"
    return f"{value:.2f}"


def equity_figure_png(equity: pd.DataFrame) -> bytes:
    """Equity curves (normalised to 1) and drawdowns of every strategy column."""
    frame = equity.set_index("timestamp")
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[2, 1])
    for col in frame.columns:
        series = frame[col].dropna()
        if series.empty:
            continue
        norm = series / series.iloc[0]
        ax1.plot(norm.index, norm.values, label=col.replace("_", " "), lw=1.2)
        ax2.plot(series.index, (series / series.cummax() - 1).values * 100, lw=1.0)
    ax1.set_ylabel("equity (start = 1)")
    ax1.legend(loc="upper left")
    ax1.grid(alpha=0.3)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def target_text(target: dict[str, Any] | None, kind: str) -> str:
    """``"≥ 2.00 · not met"``, ``"0.50%–2.00% · met"``; empty for KPIs without a target."""
    if not target:
        return ""
    kind = "pct" if kind == "pct" else "num"
    lo, hi = target["min"], target["max"]
    if lo is not None and hi is not None:
        bound = f"{fmt(lo, kind)}–{fmt(hi, kind)}"
    else:
        bound = f"≥ {fmt(lo, kind)}" if lo is not None else f"≤ {fmt(hi, kind)}"
    return f"{bound} · " + {True: "met", False: "not met", None: "n/a"}[target["met"]]


def kpi_rows(report: dict[str, Any]) -> list[list[str]]:
    """[label, strategy, buy & hold, rule-based, target] per KPI, formatted."""
    rows = []
    for key, label, kind in KPI_ROWS:
        rows.append(
            [
                label,
                fmt(report["strategy"].get(key), kind),
                fmt(report["baselines"]["buy_and_hold"].get(key), kind),
                fmt(report["baselines"]["rule_based"].get(key), kind),
                target_text(report["targets"].get(key), kind),
            ]
        )
    return rows


KPI_HEADER = ["KPI", "strategy", "buy & hold", "rule-based", "target"]


def kpi_markdown(report: dict[str, Any]) -> str:
    """A markdown KPI table (strategy vs baselines vs targets) for Dagster metadata."""
    lines = ["| " + " | ".join(KPI_HEADER) + " |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in kpi_rows(report)]
    return "\n".join(lines)


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# report.json -> data.quality: the RepairReport counts of the run's candles (market.repair)
QUALITY_ROWS = [
    ("rows_in", "rows in"),
    ("rows_out", "rows out"),
    ("exact_duplicates_dropped", "exact duplicates dropped"),
    ("rows_reordered", "rows reordered"),
    ("missing_bars", "missing bars"),
    ("gap_events", "gaps (count)"),
    ("longest_gap_bars", "longest gap (bars)"),
    ("filled_bars", "filled bars"),
    ("zero_volume_bars", "zero-volume bars"),
    ("spike_bars", "spike bars"),
]


def quality_html(quality: dict[str, Any] | None) -> str:
    """The data-quality repair counts as a table: one row per count, one column for all symbols
    and, when ``quality["per_symbol"]`` is there, one column per symbol."""
    head = "<h2>Data quality (repairs and flags)</h2>"
    quality = dict(quality or {})
    per_symbol = quality.pop("per_symbol", None) or {}
    columns = ({"all symbols": quality} if quality else {}) | dict(per_symbol)
    if not columns:
        return head + "<p>no data-quality counts in this report</p>"
    known = [key for key, _ in QUALITY_ROWS]
    extra = sorted({k for counts in columns.values() for k in counts} - set(known))
    labels = dict(QUALITY_ROWS) | {k: k.replace("_", " ") for k in extra}
    rows = [
        [labels[key], *(fmt(counts.get(key), "int") for counts in columns.values())]
        for key in [*known, *extra]
        if any(key in counts for counts in columns.values())
    ]
    return head + _table(rows, ["count", *columns])


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p>({html.escape(alt)}: no data)</p>"
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _ci(value: Any, kind: str) -> str:
    return "—" if not value else f"[{fmt(value[0], kind)}, {fmt(value[1], kind)}]"


def trading_sections(
    report: dict[str, Any], equity: pd.DataFrame, exposure: pd.DataFrame | None
) -> str:
    """Verdict, gross vs net, controls, calibration, monthly heat map, rolling Sharpe, exposure
    and the trade list (issue #6 sections)."""
    out = [f"<h2>Verdict</h2><p>{html.escape(report.get('verdict', ''))}</p>"]
    s = report["strategy"]
    out.append(
        "<p>Bootstrap 95% CI (5-day blocks): Sharpe "
        f"{_ci(s.get('sharpe_ci'), 'num')}, avg daily return "
        f"{_ci(s.get('avg_daily_return_ci'), 'pct')}</p>"
    )
    costs = report.get("costs_gross_net") or {}
    if costs:
        rows = [
            [
                "total return",
                fmt(costs.get("gross_total_return"), "pct"),
                fmt(costs.get("net_total_return"), "pct"),
            ],
            ["Sharpe", fmt(costs.get("gross_sharpe")), fmt(costs.get("net_sharpe"))],
        ]
        out.append("<h2>Gross vs net (turnover is the first enemy)</h2>")
        out.append(_table(rows, ["", "gross (same trades; no fees, slippage, funding)", "net"]))
        out.append(
            f"<p>Cost drag {fmt(costs.get('cost_drag'), 'pct')} · fees "
            f"{fmt(costs.get('fees_paid'), 'pct')} · slippage "
            f"{fmt(costs.get('slippage_paid'), 'pct')} · funding "
            f"{fmt(costs.get('funding_paid'), 'pct')}"
            f" · turnover {fmt(costs.get('turnover'))}x capital</p>"
        )
    fees = report.get("fee_sensitivity") or []
    if fees:
        out.append("<h2>Fee sensitivity (the same trades re-priced)</h2>")
        rows = [
            [
                f"{r['fee_multiple']:g}x",
                f"{100 * r['taker_fee']:.3f}%",
                fmt(r["sharpe"]),
                fmt(r["total_return"], "pct"),
                str(r["n_trades"]),
            ]
            for r in fees
        ]
        out.append(_table(rows, ["fee multiple", "taker fee", "Sharpe", "net return", "trades"]))
    controls = report.get("controls") or {}
    mc = controls.get("random_same_turnover")
    sh = controls.get("shuffled_labels") or {}
    out.append("<h2>Controls</h2><ul>")
    if mc:
        q = mc.get("sharpe_p5_p50_p95")
        q_text = "—" if not q else " / ".join(f"{v:.2f}" for v in q)
        out.append(
            f"<li>Random strategy, same turnover ({mc['n_paths']} paths): Sharpe p5/p50/p95 "
            f"{q_text}; strategy percentile {fmt(mc.get('strategy_percentile'), 'pct')}, "
            f"p = {fmt(mc.get('p_value'))}</li>"
        )
    out.append(
        f"<li>Shuffled-label model: {html.escape(str(sh.get('reason', 'not run')))}"
        f"{' — LEAK SUSPECTED' if sh.get('leak') else ''}</li></ul>"
    )
    out.append("<h2>Confidence vs realised hit rate (calibration)</h2>")
    calib = report.get("calibration") or []
    out.append(_img(calibration_png(calib), "calibration"))
    out.append(
        _table(
            [
                [
                    r["bin"],
                    r["n"],
                    f"{r['confidence_mean']:.3f}",
                    fmt(r["accuracy"], "pct"),
                    fmt(r["hit_rate"], "pct"),
                ]
                for r in calib
            ],
            ["decile", "n", "mean confidence", "5-class accuracy", "directional hit rate"],
        )
    )
    out.append("<h2>Monthly returns</h2>")
    out.append(_img(monthly_heatmap_png(report.get("monthly_returns") or []), "monthly returns"))
    out.append("<h2>Rolling Sharpe</h2>")
    out.append(_img(rolling_sharpe_png(equity), "rolling Sharpe"))
    if exposure is not None and not exposure.empty:
        out.append("<h2>Exposure</h2>")
        out.append(_img(exposure_png(exposure), "exposure"))
    trades = report.get("trades") or []
    out.append(f"<h2>Trades (last {len(trades)})</h2>")
    out.append(
        _table(
            [
                [
                    t["symbol"],
                    t["side"],
                    t["entry_time"][:16],
                    fmt(t["entry_price"]),
                    t["exit_time"][:16],
                    fmt(t["exit_price"]),
                    t["exit_reason"],
                    fmt(t["pnl"]),
                    fmt(t["fees"]),
                ]
                for t in trades[-200:]
            ],
            ["symbol", "side", "entry", "price", "exit", "price", "reason", "pnl", "fees"],
        )
    )
    return "".join(out)


def render_html(
    report: dict[str, Any], equity: pd.DataFrame, exposure: pd.DataFrame | None = None
) -> str:
    png = base64.b64encode(equity_figure_png(equity)).decode()
    data = report["data"]
    fold_rows = [
        [
            f["fold"],
            f["train_start"][:10],
            f["test_start"][:10],
            f["test_end"][:10],
            f.get("n_predictions", ""),
            fmt(f["accuracy"], "pct"),
            fmt(f.get("strategy_return"), "pct"),
        ]
        for f in report["folds"]
    ]
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in report["warnings"]) or "<li>none</li>"
    dep = report["deployment"]
    banner = (
        '<p class="synthetic">SYNTHETIC DATA — not a real market</p>' if data["synthetic"] else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(report["title"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
.synthetic {{ background: #c00; color: white; padding: 0.6em; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(report["title"])}</h1>{banner}
<p>Profile <b>{html.escape(report["profile"])}</b> · source <b>{html.escape(data["source"])}</b> ·
price source <b>{html.escape(data["price_source"])}</b> · {html.escape(", ".join(data["symbols"]))}
{html.escape(data["timeframe"])} · window [{html.escape(data["start"])}, {html.escape(data["end"])})
· generated {html.escape(report["generated_at"])}</p>
<p>All results are out-of-sample (walk-forward test windows only); fees, slippage and funding are
always on; fills at the next bar's open.</p>
<h2>Equity and drawdown</h2><img alt="equity curves" src="data:image/png;base64,{png}">
<h2>KPIs vs baselines vs the spec's targets</h2>
{_table(kpi_rows(report), KPI_HEADER)}
<h2>Warnings</h2><ul>{warn}</ul>
{quality_html(data.get("quality"))}
{trading_sections(report, equity, exposure)}
<h2>Walk-forward folds</h2>
{
        _table(
            fold_rows,
            [
                "fold",
                "train start",
                "test start",
                "test end",
                "predictions",
                "accuracy",
                "strategy return",
            ],
        )
    }
{features_html(report.get("features"))}
{models_html(report.get("models"))}
<h2>Deployment</h2><p>deployed: <b>{dep["deployed"]}</b>
· version {html.escape(str(dep["version"]))}
· {html.escape(dep["reason"])}</p>
</body></html>
"""
