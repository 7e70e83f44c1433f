"""Build, validate and write the walk-forward report (``report.json`` + ``report.html``)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd

from cryptoml_pipeline.evaluation import Evaluation, beats
from cryptoml_pipeline.reporting.html import render_html
from cryptoml_pipeline.settings import PipelineSettings

SCHEMA_VERSION = "1.0"
SUSPICIOUS_SHARPE = 4.0  # an out-of-sample Sharpe above this is treated as a bug until proven not


def report_schema() -> dict[str, Any]:
    text = resources.files("cryptoml_pipeline.reporting").joinpath("report_schema.json").read_text()
    return json.loads(text)


def validate_report(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when the report does not match its schema."""
    jsonschema.validate(report, report_schema())


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _warnings(ev: Evaluation, synthetic: bool) -> list[str]:
    out = []
    if synthetic:
        out.append("SYNTHETIC DATA: these numbers say nothing about real markets.")
    sharpe = ev.strategy.get("sharpe")
    if sharpe is not None and sharpe > SUSPICIOUS_SHARPE:
        out.append(
            f"Out-of-sample Sharpe {sharpe:.2f} > {SUSPICIOUS_SHARPE}: treat as a leak until "
            "proven otherwise."
        )
    for name, kpis in ev.baselines.items():
        if beats(ev.strategy, kpis) is False:
            out.append(
                f"The strategy does not beat the {name.replace('_', '-')} baseline (Sharpe)."
            )
    if ev.strategy.get("n_trades", 0) == 0:
        out.append("The strategy made no trade in the out-of-sample span.")
    return out


def build_report(
    *,
    evaluation: Evaluation,
    data_info: dict[str, Any],
    deployment: dict[str, Any],
    settings: PipelineSettings,
) -> dict[str, Any]:
    synthetic = bool(data_info["synthetic"])
    title = "cryptoml_pipeline walk-forward report"
    if synthetic:
        title = "SYNTHETIC DATA — " + title
    report = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": settings.profile,
        "data": {
            "source": data_info["source"],
            "synthetic": synthetic,
            "price_source": data_info["price_source"],
            "price_sources": data_info.get("price_sources", {}),
            "symbols": list(data_info["symbols"]),
            "timeframe": data_info["timeframe"],
            "start": data_info["start"],
            "end": data_info["end"],
        },
        "strategy": evaluation.strategy,
        "baselines": evaluation.baselines,
        "targets": evaluation.targets,
        "folds": evaluation.folds,
        "deployment": {
            "deployed": bool(deployment["deployed"]),
            "version": deployment.get("version"),
            "reason": deployment["reason"],
        },
        "costs": {
            "taker_fee": settings.costs.taker_fee,
            "slippage_bps_per_side": settings.costs.slippage_bps,
            "funding": "charged/paid at every 8h settlement on the position held",
            "fills": "next bar open after the signal bar",
        },
        "comparison": {
            "beats_buy_and_hold": beats(evaluation.strategy, evaluation.baselines["buy_and_hold"]),
            "beats_rule_based": beats(evaluation.strategy, evaluation.baselines["rule_based"]),
            "metric": "sharpe",
        },
        "monitoring": {
            f"acc_recent_{settings.retrain.recent_window}": evaluation.acc_recent,
            f"acc_prior_{settings.retrain.prior_window}": evaluation.acc_prior,
        },
        "model": settings.model.model_dump(),
        "warnings": _warnings(evaluation, synthetic),
    }
    report = _clean(report)
    validate_report(report)
    return report


def write_report(report: dict[str, Any], equity: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(json_path)
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(render_html(report, equity))
    tmp.replace(html_path)
    return {"json": json_path, "html": html_path}
