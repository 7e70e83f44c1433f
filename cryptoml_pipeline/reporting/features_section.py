"""The report's ``features`` section: the feature list by family, the unavailable features with
their reasons, and the per-fold permutation importance aggregated over folds.

:func:`features_section` builds the JSON-able dict (``report.json["features"]``, schema in
``reporting/report_schema.json``); :func:`features_html` renders it (table + bar chart). A missing
importance partition never raises: the fold is listed in ``importance.folds_missing`` with the
reason, and ``importance.available`` is False (with ``reason``) when no fold has any importance.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.modeling.importance import summarise_importance

__all__ = ["IMPORTANCE_METRIC", "features_html", "features_section", "importance_bar_png"]

IMPORTANCE_METRIC = (
    "log-loss increase when the feature is permuted on the fold's test window "
    "(mean over folds; > 0: the model uses it)"
)
TOP_IN_CHART = 25


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def aggregate_importance(per_fold: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per feature, sorted by mean importance: mean/std/min/max over folds of the
    log-loss importance, the share of folds where it was positive, the mean accuracy drop and the
    number of folds that scored it."""
    if per_fold.empty:
        return []
    summary = summarise_importance(per_fold)
    grouped = per_fold.groupby("feature", sort=False)
    extra = pd.DataFrame(
        {
            "min_importance": grouped["importance_logloss"].min(),
            "max_importance": grouped["importance_logloss"].max(),
            "mean_accuracy_drop": grouped["importance_accuracy"].mean(),
            "n_folds": grouped["fold"].nunique(),
        }
    )
    summary = summary.join(extra, on="feature")
    return [
        {
            "feature": str(r.feature),
            "family": str(r.family),
            "mean_importance": _num(r.mean_importance),
            "std_importance": _num(r.std_importance),
            "min_importance": _num(r.min_importance),
            "max_importance": _num(r.max_importance),
            "positive_share": _num(r.positive_share),
            "mean_accuracy_drop": _num(r.mean_accuracy_drop),
            "n_folds": int(r.n_folds),
        }
        for r in summary.itertuples()
    ]


def features_section(
    *,
    fold_keys: Sequence[str],
    importance: Mapping[str, pd.DataFrame],
    missing: Mapping[str, str] | None = None,
    plan: Mapping[str, Any] | None = None,
    plan_source: str | None = None,
) -> dict[str, Any]:
    """The report's ``features`` section.

    ``importance`` maps fold key -> that fold's importance table (``IMPORTANCE_COLUMNS``);
    ``missing`` maps fold key -> why its table could not be read. A fold in ``fold_keys`` that is
    in neither is reported missing ("not materialized"); an empty table as "empty (importance
    disabled?)". ``plan`` is ``FeaturePlan.metadata()`` (or the ``feature_table`` asset metadata:
    ``families``, ``unavailable``, ``disabled``); None leaves the lists empty and says why.
    """
    missing = dict(missing or {})
    frames: list[pd.DataFrame] = []
    used: list[str] = []
    for key in fold_keys:
        frame = importance.get(key)
        if frame is None:
            missing.setdefault(key, "not materialized")
        elif frame.empty:
            missing.setdefault(
                key,
                "empty table (importance disabled, or the fold is outside importance.recent_folds)",
            )
        else:
            frames.append(frame.assign(fold=key))
            used.append(key)
    table = aggregate_importance(pd.concat(frames, ignore_index=True)) if frames else []
    reason = None
    if not table:
        reason = (
            "no fold has a permutation-importance table: "
            + "; ".join(f"{k}: {v}" for k, v in missing.items())
            if missing
            else "no folds"
        )
    elif missing:
        reason = f"aggregated over {len(used)} of {len(fold_keys)} folds; missing: " + "; ".join(
            f"{k}: {v}" for k, v in missing.items()
        )
    plan = plan or {}
    families = {str(f): [str(n) for n in names] for f, names in plan.get("families", {}).items()}
    return {
        "families": families,
        "n_features": sum(len(v) for v in families.values()),
        "unavailable": {str(k): str(v) for k, v in plan.get("unavailable", {}).items()},
        "disabled": [str(d) for d in plan.get("disabled", [])],
        "plan_source": plan_source if plan else (plan_source or "feature plan not found"),
        "importance": {
            "available": bool(table),
            "reason": reason,
            "metric": IMPORTANCE_METRIC,
            "folds_used": used,
            "folds_missing": missing,
            "table": table,
        },
    }


def importance_bar_png(table: Sequence[Mapping[str, Any]], top: int = TOP_IN_CHART) -> bytes | None:
    """Horizontal bars of the mean importance with the per-fold std as error bars (top ``top``)."""
    rows = [r for r in table if r.get("mean_importance") is not None][:top]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r['feature']} ({r['family']})" for r in rows][::-1]
    means = np.array([r["mean_importance"] for r in rows][::-1])
    stds = np.array([r.get("std_importance") or 0.0 for r in rows][::-1])
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.2))
    colors = ["#2a7ab9" if m > 0 else "#b94a2a" for m in means]
    ax.barh(names, means, xerr=stds, color=colors, ecolor="#555", capsize=2)
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_xlabel("mean log-loss increase when permuted (± std over folds)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _f(value: Any, digits: int = 5) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def features_html(section: Mapping[str, Any] | None) -> str:
    """HTML for the report's ``features`` section ('' when the report has none)."""
    if not section:
        return ""
    imp = section.get("importance") or {}
    out = ["<h2>Feature importance (permutation, out-of-sample)</h2>"]
    out.append(f"<p>{html.escape(str(imp.get('metric', IMPORTANCE_METRIC)))}</p>")
    if imp.get("reason"):
        out.append(f"<p><b>Note:</b> {html.escape(str(imp['reason']))}</p>")
    table = imp.get("table") or []
    if table:
        png = importance_bar_png(table)
        if png is not None:
            data = base64.b64encode(png).decode()
            out.append(f'<img alt="feature importance" src="data:image/png;base64,{data}">')
        rows = [
            [
                r["feature"],
                r["family"],
                _f(r["mean_importance"]),
                "—" if r["std_importance"] is None else f"{r['std_importance']:.5f}",
                f"[{_f(r['min_importance'])}, {_f(r['max_importance'])}]",
                "—" if r["positive_share"] is None else f"{100 * r['positive_share']:.0f}%",
                _f(r["mean_accuracy_drop"], 4),
                r["n_folds"],
            ]
            for r in table
        ]
        header = [
            "feature",
            "family",
            "mean Δ logloss",
            "std over folds",
            "fold range",
            "folds > 0",
            "mean Δ accuracy",
            "folds",
        ]
        out.append(_table(rows, header))
    out.append("<h2>Features by family</h2>")
    families = section.get("families") or {}
    if families:
        out.append(
            _table(
                [[f, len(n), ", ".join(n) or "—"] for f, n in families.items()],
                ["family", "count", "features"],
            )
        )
    else:
        out.append(f"<p>{html.escape(str(section.get('plan_source', 'no feature plan')))}</p>")
    if section.get("disabled"):
        out.append(f"<p>Disabled: {html.escape(', '.join(section['disabled']))}</p>")
    unavailable = section.get("unavailable") or {}
    out.append("<h2>Unavailable features</h2>")
    if unavailable:
        out.append(_table([[k, v] for k, v in unavailable.items()], ["feature(s)", "reason"]))
    else:
        out.append("<p>none</p>")
    return "".join(out)
