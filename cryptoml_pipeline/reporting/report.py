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

from cryptoml_pipeline.evaluation.walk_forward import Evaluation, beats
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
    total = ev.strategy.get("total_return")
    if total is not None and total < 0:
        out.append(f"The strategy LOST money after costs: {100 * total:.2f}% net.")
    shuffled = (ev.controls or {}).get("shuffled_labels") or {}
    if shuffled.get("leak"):
        out.append(
            "LEAK SUSPECTED: the model trained on shuffled labels shows an edge "
            f"({shuffled.get('reason')})."
        )
    return out


MAX_TRADES_IN_REPORT = 2000


def _trades_records(trades: pd.DataFrame) -> list[dict[str, Any]]:
    """The last ``MAX_TRADES_IN_REPORT`` trades as JSON records (times as ISO strings)."""
    frame = trades.tail(MAX_TRADES_IN_REPORT).copy()
    for col in ("entry_time", "exit_time"):
        if col in frame.columns:
            frame[col] = frame[col].map(lambda t: t.isoformat())
    return frame.to_dict(orient="records")


def verdict(ev: Evaluation) -> str:
    """A plain-language verdict on the out-of-sample result (never softened)."""
    met = [k for k, t in ev.targets.items() if t.get("met") is True]
    known = [k for k, t in ev.targets.items() if t.get("met") is not None]
    s = ev.strategy
    parts = [f"The strategy met {len(met)} of {len(known)} measurable spec targets"]
    parts[-1] += f" ({', '.join(met)})." if met else "."
    costs = ev.costs or {}
    if s.get("total_return") is not None:
        line = f"Net of all costs it {'made' if s['total_return'] >= 0 else 'lost'} "
        line += f"{100 * abs(s['total_return']):.2f}%"
        if costs.get("gross_total_return") is not None:
            line += (
                f" (gross {100 * costs['gross_total_return']:.2f}%; fees and slippage cost "
                f"{100 * costs['cost_drag']:.2f}% at a turnover of {costs['turnover']:.1f}x "
                "capital)"
            )
        parts.append(line + ".")
    for name in ("buy_and_hold", "rule_based"):
        b = beats(s, ev.baselines.get(name, {}))
        if b is not None:
            label = name.replace("_", "-")
            parts.append(f"It {'beats' if b else 'does not beat'} {label} on Sharpe.")
    mc = (ev.controls or {}).get("random_same_turnover")
    if mc and mc.get("p_value") is not None:
        parts.append(
            f"Against {mc['n_paths']} random strategies with the same turnover its Sharpe ranks "
            f"at the {100 * mc['strategy_percentile']:.0f}th percentile (p = {mc['p_value']:.3f})."
        )
    sh = (ev.controls or {}).get("shuffled_labels") or {}
    if sh.get("available"):
        parts.append(
            "The shuffled-label control shows an edge: suspect a leak."
            if sh.get("leak")
            else "The shuffled-label control shows no edge, as it must."
        )
    psr = s.get("psr")
    if psr is not None:
        parts.append(f"Probability that the true Sharpe is above zero: {100 * psr:.0f}%.")
    return " ".join(parts)


def build_report(
    *,
    evaluation: Evaluation,
    data_info: dict[str, Any],
    deployment: dict[str, Any],
    settings: PipelineSettings,
    features: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``features``: the optional features section (``features.report.features_section``)."""
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
            "universe": list(data_info.get("universe", data_info["symbols"])),
            "timeframe": data_info["timeframe"],
            "start": data_info["start"],
            "end": data_info["end"],
            # repair/validation counts of the run's candles (market.repair.RepairReport)
            "quality": data_info.get("data_quality", {}),
        },
        "strategy": evaluation.strategy,
        "baselines": evaluation.baselines,
        "forecast": evaluation.forecast,
        "periods": evaluation.periods or [],
        # the same decisions re-priced at taker_fee x each multiple (evaluation.break_even)
        "fee_sensitivity": evaluation.fee_sensitivity or [],
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
            "maker_fee": settings.costs.maker_fee,
            "fee_schedule": settings.costs.schedule.model_dump(),
            "fee_source": "Binance regular tier (VIP 0): https://www.binance.com/en/fee/futureFee",
            "order_type": settings.costs.order_type,
            "slippage_model": "half-spread (slippage_bps) + "
            f"{settings.slippage.volatility_coefficient} x per-bar volatility",
            "funding": "charged/paid on the position held at every settlement in the symbol's "
            "funding data (its own interval, e.g. 8h or 4h, however it changes); a missing "
            "settlement while a position is held stops the run",
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
        "costs_gross_net": evaluation.costs,
        "controls": evaluation.controls,
        "calibration": evaluation.calibration or [],
        "monthly_returns": evaluation.monthly or [],
        "trades": _trades_records(evaluation.trades),
        "verdict": verdict(evaluation),
    }
    if features is not None:
        report["features"] = features
    if models is not None:
        report["models"] = models
    report = _clean(report)
    validate_report(report)
    return report


def write_report(
    report: dict[str, Any],
    equity: pd.DataFrame,
    out_dir: Path,
    exposure: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(json_path)
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(render_html(report, equity, exposure=exposure))
    tmp.replace(html_path)
    return {"json": json_path, "html": html_path}
