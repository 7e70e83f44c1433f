"""The report's model-comparison section: every model on the same folds, and the ensemble lift."""

from __future__ import annotations

import html
from typing import Any


def _f(value: Any, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return f"{v:.2%}" if pct else f"{v:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def models_html(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    rows = []
    for name, m in section["models"].items():
        if not m["available"]:
            why = "; ".join(m.get("reasons") or []) or "no predictions"
            trained = html.escape((m.get("training") or {}).get("summary", "n/a"))
            rows.append(
                [html.escape(name), "0", trained, f"unavailable: {html.escape(why)}"] + [""] * 6
            )
            continue
        met, st = m["metrics"], m["strategy"]
        rows.append(
            [
                html.escape(name),
                str(len(m["folds"])),
                html.escape((m.get("training") or {}).get("summary", "n/a")),
                _f(met["accuracy"], True),
                _f(met["macro_f1"]),
                _f(met["log_loss"]),
                _f(st["total_return"], True),
                _f(st["sharpe"]),
                _f(st["max_drawdown"], True),
                _f(st["dsr"]),
            ]
        )
    overview = _table(
        [
            "model",
            "folds",
            "trained on",
            "accuracy",
            "macro-F1",
            "log-loss",
            "net return",
            "Sharpe",
            "max DD",
            "DSR",
        ],
        rows,
    )
    fold_rows = [
        [
            html.escape(r["model"]),
            html.escape(r["fold"]),
            str(r["n"]),
            _f(r["accuracy"], True),
            _f(r["macro_f1"]),
            _f(r["log_loss"]),
        ]
        for r in section["per_fold"]
    ]
    per_fold = _table(["model", "fold", "rows", "accuracy", "macro-F1", "log-loss"], fold_rows)
    lift = section.get("ensemble_lift") or {}
    if lift.get("available"):
        lift_html = (
            f"<p>Ensemble vs its best base model (<b>{html.escape(lift['best_base_by_accuracy'])}"
            f"</b>) on the same {lift['n']} rows: accuracy {_f(lift['accuracy_lift'], True)}, "
            f"macro-F1 {_f(lift['macro_f1_lift'])}, log-loss change "
            f"{_f(lift['log_loss_change'])}, Sharpe lift vs the best base strategy "
            f"{_f(lift['sharpe_lift_vs_best_base_sharpe'])}.</p>"
        )
    else:
        lift_html = f"<p>Ensemble lift: n/a ({html.escape(str(lift.get('reason')))})</p>"
    return (
        "<h2>Model comparison</h2>"
        f"<p>Every model on the same walk-forward folds, costs on. Strategy KPIs cover the folds "
        f"each model predicted (the multi-timeframe LSTM-CNN only where all its timeframes exist, "
        f"so its span can be shorter). DSR deflates for "
        f"{section['configurations_tried']} configurations tried.</p>"
        f"{overview}{lift_html}<h3>Per fold</h3>{per_fold}"
    )
