"""What the Dagster UI shows for ``backtest``, ``backtest_report`` and ``model_comparison``: the
equity curve (a small PNG), the per-fold table and the model table, so the UI alone tells the story.

Dagster-free and pure: inputs are the evaluation bundle (``Evaluation.to_bundle()``), the report
dict and the comparison dict; outputs are markdown strings, PNG bytes and row dicts of scalars. The
assets wrap them in ``dg.MetadataValue`` (markdown / table). Fields are read defensively: the report
format grows (fold-level forecast metrics, ...), and a missing field shows as "—" or as a stated
reason instead of a failure.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cryptoml_pipeline.reporting.html import kpi_markdown as report_kpi_markdown

EQUITY_WIDTH_PX = 800
EQUITY_HEIGHT_PX = 300
EQUITY_DPI = 80
MAX_REASON_CHARS = 160

Row = dict[str, str | int | float | bool | None]

# per-fold columns shown first, in this order; any other scalar field of a fold follows
FOLD_COLUMNS = (
    "fold",
    "train_start",
    "test_start",
    "test_end",
    "n_predictions",
    "accuracy",
    "strategy_return",
)
DATE_COLUMNS = frozenset({"train_start", "train_end", "test_start", "test_end"})
# markdown formats by column name: percentages and counts, everything else 3 decimals
PCT_COLUMNS = frozenset(
    {
        "accuracy",
        "directional_accuracy",
        "strategy_return",
        "total_return",
        "max_drawdown",
        "win_rate",
        "hit_rate",
    }
)
INT_COLUMNS = frozenset({"n", "n_predictions", "n_trades", "folds"})
BACKTEST_KPIS = (
    ("total_return", "total return"),
    ("sharpe", "Sharpe"),
    ("max_drawdown", "max drawdown"),
    ("win_rate", "win rate"),
    ("n_trades", "trades"),
    ("accuracy", "5-class accuracy"),
    ("directional_accuracy", "directional accuracy"),
)
MODEL_COLUMNS = (
    "model",
    "available",
    "folds",
    "accuracy",
    "macro_f1",
    "log_loss",
    "total_return",
    "sharpe",
    "max_drawdown",
    "n_trades",
    "dsr",
    "note",
)


@dataclass(frozen=True)
class UiTables:
    """The pieces one asset shows: an equity PNG (None without an equity curve) and markdown
    tables, plus the fold rows for a ``TableMetadataValue``."""

    equity_png: bytes | None
    equity_markdown: str
    kpi_markdown: str
    fold_markdown: str
    fold_rows: list[Row]


# --- formatting --------------------------------------------------------------------------------
def _scalar(value: Any) -> str | int | float | bool | None:
    """A JSON/table-safe scalar: numpy numbers unwrapped, non-finite floats -> None, timestamps
    -> ISO strings; containers -> None (not a table cell)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return None


def format_cell(column: str, value: Any) -> str:
    """Markdown text of one cell: percentages, counts and dates by column name; "—" if unknown."""
    value = _scalar(value)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value[:10] if column in DATE_COLUMNS else value
        return text.replace("|", "/").replace("\n", " ")
    if column in INT_COLUMNS:
        return f"{int(value)}"
    if column in PCT_COLUMNS:
        return f"{100 * value:.2f}%"
    return f"{value:.3f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-style markdown table of ``rows`` over ``columns`` (missing cells "—")."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(c, row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def png_markdown(png: bytes | None, alt: str, reason: str) -> str:
    """``![alt](data:image/png;base64,...)``, or the reason in italics when there is no PNG."""
    if png is None:
        return f"_{alt} unavailable: {reason}_"
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


# --- equity curve ------------------------------------------------------------------------------
def equity_curve_png(
    equity: pd.DataFrame | None,
    folds: Sequence[Mapping[str, Any]] = (),
    *,
    width_px: int = EQUITY_WIDTH_PX,
    height_px: int = EQUITY_HEIGHT_PX,
    dpi: int = EQUITY_DPI,
) -> bytes | None:
    """Every equity column normalised to 1 at its first mark (the strategy drawn thicker), with
    dashed lines at each fold's test start; None without a curve to draw."""
    if equity is None or "timestamp" not in equity or equity.empty:
        return None
    frame = equity.set_index("timestamp").sort_index()
    curves = {}
    for col in frame.columns:
        series = pd.to_numeric(frame[col], errors="coerce").dropna()
        if len(series) and series.iloc[0] != 0:
            curves[col] = series / series.iloc[0]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(width_px / dpi, height_px / dpi))
    for col, norm in curves.items():
        lw = 1.8 if col == "strategy" else 1.0
        ax.plot(norm.index, norm.to_numpy(), lw=lw, label=str(col).replace("_", " "))
    for fold in folds:
        start = fold.get("test_start")
        if start:
            ax.axvline(pd.Timestamp(start), color="grey", lw=0.6, ls="--")
    ax.set_ylabel("equity (start = 1)", fontsize=8)
    ax.set_title("walk-forward equity, net of costs (dashed: fold test starts)", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


# --- folds -------------------------------------------------------------------------------------
def fold_columns(folds: Sequence[Mapping[str, Any]]) -> list[str]:
    """:data:`FOLD_COLUMNS` present in any fold, then every other scalar field (first seen order;
    ``train_end`` is left out: it equals ``test_start``)."""
    seen: list[str] = []
    for fold in folds:
        for key, value in fold.items():
            if key not in seen and not isinstance(value, Mapping | list | tuple):
                seen.append(key)
    first = [c for c in FOLD_COLUMNS if c in seen]
    return first + [c for c in seen if c not in first and c != "train_end"]


def fold_rows(folds: Sequence[Mapping[str, Any]]) -> list[Row]:
    """One row of scalars per fold over :func:`fold_columns` (missing -> None)."""
    columns = fold_columns(folds)
    return [{c: _scalar(fold.get(c)) for c in columns} for fold in folds]


def fold_markdown(folds: Sequence[Mapping[str, Any]]) -> str:
    if not folds:
        return "_no walk-forward folds in this evaluation_"
    return markdown_table(fold_rows(folds), fold_columns(folds))


# --- KPIs --------------------------------------------------------------------------------------
def kpi_table_rows(
    strategy: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]
) -> list[Row]:
    """[kpi, strategy, <each baseline>] rows of :data:`BACKTEST_KPIS` (raw values)."""
    rows: list[Row] = []
    for key, label in BACKTEST_KPIS:
        row: Row = {"kpi": label, "key": key, "strategy": _scalar(strategy.get(key))}
        for name, kpis in baselines.items():
            row[name] = _scalar((kpis or {}).get(key))
        rows.append(row)
    return rows


def kpi_markdown(strategy: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]) -> str:
    rows = kpi_table_rows(strategy, baselines)
    columns = ["kpi", "strategy", *baselines]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(row["kpi"])] + [format_cell(str(row["key"]), row[c]) for c in columns[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def backtest_tables(bundle: Mapping[str, Any]) -> UiTables:
    """The ``backtest`` asset's UI pieces from its evaluation bundle."""
    folds = list(bundle.get("folds") or [])
    equity = bundle.get("equity")
    png = equity_curve_png(equity, folds)
    return UiTables(
        equity_png=png,
        equity_markdown=png_markdown(png, "equity curve", "the evaluation has no equity marks"),
        kpi_markdown=kpi_markdown(bundle.get("strategy") or {}, bundle.get("baselines") or {}),
        fold_markdown=fold_markdown(folds),
        fold_rows=fold_rows(folds),
    )


def report_tables(report: dict[str, Any], equity: pd.DataFrame | None) -> UiTables:
    """The ``backtest_report`` asset's UI pieces (the report keeps no equity curve: pass the
    evaluation's); the KPI table is the report's own, with the spec's targets."""
    folds = list(report.get("folds") or [])
    png = equity_curve_png(equity, folds)
    return UiTables(
        equity_png=png,
        equity_markdown=png_markdown(png, "equity curve", "the evaluation has no equity marks"),
        kpi_markdown=report_kpi_markdown(report),
        fold_markdown=fold_markdown(folds),
        fold_rows=fold_rows(folds),
    )


# --- model comparison --------------------------------------------------------------------------
def model_rows(comparison: Mapping[str, Any] | None) -> list[Row]:
    """One row per model of the comparison: overall metrics and strategy KPIs; an unavailable
    model carries its reasons in ``note``."""
    rows: list[Row] = []
    for name, model in ((comparison or {}).get("models") or {}).items():
        available = bool(model.get("available"))
        metrics = model.get("metrics") or {}
        strategy = model.get("strategy") or {}
        reasons = "; ".join(str(r) for r in model.get("reasons") or [])
        rows.append(
            {
                "model": str(name),
                "available": available,
                "folds": len(model.get("folds") or []) if available else None,
                "accuracy": _scalar(metrics.get("accuracy")),
                "macro_f1": _scalar(metrics.get("macro_f1")),
                "log_loss": _scalar(metrics.get("log_loss")),
                "total_return": _scalar(strategy.get("total_return")),
                "sharpe": _scalar(strategy.get("sharpe")),
                "max_drawdown": _scalar(strategy.get("max_drawdown")),
                "n_trades": _scalar(strategy.get("n_trades")),
                "dsr": _scalar(strategy.get("dsr")),
                "note": (reasons or "unavailable")[:MAX_REASON_CHARS] if not available else "",
            }
        )
    return rows


def model_markdown(comparison: Mapping[str, Any] | None) -> str:
    rows = model_rows(comparison)
    if not rows:
        return "_no model comparison in this run_"
    return markdown_table(rows, MODEL_COLUMNS)


def model_fold_rows(comparison: Mapping[str, Any] | None) -> list[Row]:
    """The comparison's per-model, per-fold classification metrics as scalar rows."""
    per_fold = (comparison or {}).get("per_fold") or []
    columns = _model_fold_columns(per_fold)
    return [{c: _scalar(r.get(c)) for c in columns} for r in per_fold]


def _model_fold_columns(per_fold: Sequence[Mapping[str, Any]]) -> list[str]:
    seen = dict.fromkeys(
        k for r in per_fold for k, v in r.items() if not isinstance(v, Mapping | list | tuple)
    )
    rest = [c for c in seen if c not in ("model", "fold")]
    return ["model", "fold", *rest]


def model_fold_markdown(comparison: Mapping[str, Any] | None) -> str:
    per_fold = (comparison or {}).get("per_fold") or []
    if not per_fold:
        return "_no per-fold model metrics in this run_"
    return markdown_table(model_fold_rows(comparison), _model_fold_columns(per_fold))
