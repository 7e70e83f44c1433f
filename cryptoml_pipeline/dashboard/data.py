"""The dashboard's JSON payloads and plots, read from the registry, tracker and paper tables and,
until the tracker holds live predictions, from the run's walk-forward artifacts
(``dashboard.run_artifacts``). Every panel's payload carries ``note``: one line saying what is shown
when it is not the live records, or why the panel is empty (None when neither needs saying)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, make_url

from cryptoml_pipeline.dashboard import plots
from cryptoml_pipeline.dashboard.live_accounts import EMPTY_NOTE, equity_curves, live_accounts
from cryptoml_pipeline.dashboard.run_artifacts import (
    importance_reason,
    run_equity,
    run_report,
    walk_forward_frame,
)
from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.metrics import accuracy_windows
from cryptoml_pipeline.live.loader import resolve_served
from cryptoml_pipeline.live.paper import orders_frame, run_state
from cryptoml_pipeline.modeling.importance import summarise_importance
from cryptoml_pipeline.modeling.persistence import to_jsonable
from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker, rolling_metrics
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline.reporting.ui_metadata import equity_curve_png, fold_rows
from cryptoml_pipeline.settings import PipelineSettings

PANELS = (
    "backtest",
    "registry",
    "predictions",
    "rolling",
    "importance",
    "confidence",
    "signals",
    "paper",
    "live",
)
TOP_FEATURES = 20
IMPORTANCE_LABELS = {
    "permutation": "permutation importance (Δ log-loss when the feature is shuffled on the fold's "
    "test window), mean over {n} fold(s)",
    "weight_norm": "proxy: L2 norm of the deployed model's input weights (no per-fold "
    "permutation importance stored)",
    "none": "no feature importance available",
}
RETURN_METRICS = ("win_rate", "avg_return_per_trade", "sharpe_ratio", "max_drawdown")


@dataclass(frozen=True)
class PredictionSource:
    """The predictions the prediction panels show: ``live`` (tracker records of the deployed
    model), ``walk_forward`` (the run's out-of-sample predictions) or ``none``."""

    kind: str
    frame: pd.DataFrame
    note: str | None


def default_output_dir(engine: Engine) -> Path | None:
    """Where the pipeline's assets live: ``$CRYPTOML_OUTPUT_DIR``, else the folder of the SQLite
    database (``OUTPUT/cryptoml.db``, see ``management.db.database_url``), else unknown."""
    if os.environ.get("CRYPTOML_OUTPUT_DIR"):
        return Path(os.environ["CRYPTOML_OUTPUT_DIR"])
    url = make_url(str(engine.url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).parent
    return None


def permutation_importance_summary(output_dir: Path | str | None) -> tuple[pd.DataFrame, list[str]]:
    """Mean / std / positive share over folds of the stored ``feature_importance`` partitions
    (``output_dir/assets/feature_importance/<fold>.parquet``) and the folds used; empty when none
    are stored (or importance was disabled, which stores empty tables)."""
    if output_dir is None:
        return summarise_importance(pd.DataFrame()), []
    # model loaders (torch): only when needed
    from cryptoml_pipeline.registry.artifact_store import (
        FEATURE_IMPORTANCE_ASSET,
        load_importance_partitions,
    )

    root = Path(output_dir, "assets", FEATURE_IMPORTANCE_ASSET)
    keys = sorted(p.stem for p in root.glob("*.parquet")) if root.is_dir() else []
    found, _missing = load_importance_partitions(output_dir, keys)
    tables = [t for t in found.values() if len(t)]
    if not tables:
        return summarise_importance(pd.DataFrame()), []
    folds = sorted(k for k, t in found.items() if len(t))
    return summarise_importance(pd.concat(tables, ignore_index=True)), folds


class DashboardData:
    def __init__(
        self,
        engine: Engine,
        settings: PipelineSettings,
        paper_run: str,
        output_dir: Path | str | None = None,
    ) -> None:
        """``output_dir``: where the pipeline's assets are (per-fold permutation importance);
        default :func:`default_output_dir`."""
        self.registry = ModelRegistry(engine)
        self.tracker = ModelPerformanceTracker(engine)
        self.engine = engine
        self.settings = settings
        self.paper_run = paper_run
        self.output_dir = Path(output_dir) if output_dir is not None else default_output_dir(engine)

    def _version(self) -> str | None:
        """The served model's version, resolved by the one loader (``live/loader.py``) that
        `cryptoml signal`, `paper`, `live` and the nightly signal asset use: the serving copy
        under ``output_dir``, else the registry's deployed version."""
        try:
            return resolve_served(self.output_dir, registry=self.registry).version
        except InputError:  # nothing deployed
            return None

    def _source(self) -> PredictionSource:
        """The tracker's live records when there are any, else the run's walk-forward
        predictions, else nothing, with the one-line note saying which and why."""
        live = self.tracker.frame(self._version(), limit=5000)
        if len(live):
            resolved = int(live["correct"].notna().sum())
            note = None
            if not resolved:
                note = (
                    f"{len(live)} live prediction(s) tracked, none resolved yet (an outcome is "
                    f"known {self.settings.target.reach} bars after its prediction)"
                )
            return PredictionSource("live", live, note)
        frame, reason = walk_forward_frame(self.output_dir)
        if reason is None:
            first, last = frame["timestamp"].iloc[0], frame["timestamp"].iloc[-1]
            note = (
                "no live predictions tracked yet — showing the run's walk-forward "
                f"(out-of-sample) predictions: {len(frame)} rows, {first:%Y-%m-%d} to "
                f"{last:%Y-%m-%d}"
            )
            return PredictionSource("walk_forward", frame, note)
        return PredictionSource(
            "none", frame, f"no live predictions tracked and no walk-forward predictions: {reason}"
        )

    def _frame(self) -> pd.DataFrame:
        return self._source().frame

    def _rolling(self, source: PredictionSource | None = None) -> pd.DataFrame:
        source = source or self._source()
        metrics = rolling_metrics(
            source.frame,
            window=self.settings.retrain.rolling_window,
            timeframe=self.settings.data.timeframe,
            horizon=self.settings.target.reach,
        )
        if len(metrics) and source.frame["forward_return"].isna().all():
            # no realised returns stored: return-based metrics would read as zero wins
            metrics[list(RETURN_METRICS)] = np.nan
        return metrics

    def _rolling_note(self, source: PredictionSource, metrics: pd.DataFrame) -> str | None:
        if not len(metrics):
            return source.note or "no resolved predictions yet"
        if source.frame["forward_return"].isna().all():
            return (source.note or "") + " (return-based metrics unavailable: no forward returns)"
        return source.note

    # --- JSON --------------------------------------------------------------------------
    def payload(self, panel: str) -> dict[str, Any]:
        return to_jsonable(getattr(self, f"_json_{panel}")())

    def _json_backtest(self) -> dict:
        """The run's walk-forward folds (report.json) and equity curve (the backtest asset)."""
        report, reason = run_report(self.output_dir)
        folds = list((report or {}).get("folds") or [])
        note = None if folds else f"walk-forward backtest unavailable: {reason or 'no folds'}"
        _equity, equity_reason = run_equity(self.output_dir)
        if folds and equity_reason:
            note = f"equity curve unavailable: {equity_reason}"
        strategy = (report or {}).get("strategy") or {}
        summary = {k: strategy.get(k) for k in ("total_return", "sharpe", "max_drawdown")}
        return {"rows": fold_rows(folds), "strategy": summary, "note": note}

    def _json_registry(self) -> dict:
        rows = [
            {
                "version": m.version,
                "stage": m.stage,
                "created_at": m.created_at,
                "deployed_at": m.deployed_at,
                "val_accuracy": m.metrics.get("val_accuracy"),
                "gate": (m.metrics.get("gate") or {}).get("reason") or m.reason,
            }
            for m in reversed(self.registry.list_versions())
        ]
        note = (
            None
            if rows
            else "no model registered yet — `cryptoml run` trains, gates and registers one"
        )
        return {"rows": rows, "deployed": self._version(), "note": note}

    def _json_predictions(self) -> dict:
        source = self._source()
        frame = source.frame
        cols = ["timestamp", "symbol", "signal", "confidence", "outcome", "correct"]
        if "expected_return" in frame:
            cols.insert(3, "expected_return")
        return {
            "rows": frame[cols].tail(20).iloc[::-1].to_dict("records"),
            "n": len(frame),
            "source": source.kind,
            "note": source.note,
        }

    def _json_rolling(self) -> dict:
        source = self._source()
        m = self._rolling(source)
        latest = m.iloc[-1].to_dict() if len(m) else {}
        r = self.settings.retrain
        resolved = source.frame[source.frame["correct"].notna()]
        recent, prior = accuracy_windows(
            resolved["correct"].to_numpy(dtype=float), r.recent_window, r.prior_window
        )
        return {
            "latest": latest,
            "acc_recent": recent,
            "acc_prior": prior,
            "n": len(m),
            "source": source.kind,
            "note": self._rolling_note(source, m),
        }

    def _json_importance(self) -> dict:
        """Per-fold permutation importance averaged over the stored folds when there is any;
        otherwise the deployed model's input-weight-norm proxy. ``source`` / ``label`` say which."""
        summary, folds = permutation_importance_summary(self.output_dir)
        if len(summary):
            top = summary.head(TOP_FEATURES)
            rows = [
                {
                    "feature": r.feature,
                    "family": r.family,
                    "mean_delta_logloss": float(r.mean_importance),
                    "std_delta_logloss": None if pd.isna(r.std_importance) else r.std_importance,
                    "positive_share": float(r.positive_share),
                }
                for r in top.itertuples()
            ]
            label = IMPORTANCE_LABELS["permutation"].format(n=len(folds))
            return {
                "source": "permutation",
                "label": label,
                "folds": folds,
                "rows": rows,
                "note": None,
            }
        version = self._version()
        # a serving copy deployed without the registry (no record of its version): no proxy
        record = self.registry.get(version) if version else None
        imp = record.metrics.get("feature_importance", {}) if record is not None else {}
        source = "weight_norm" if imp else "none"
        rows = [{"feature": k, "share": v} for k, v in imp.items()]
        note = None
        if not rows:
            why = importance_reason(run_report(self.output_dir)[0])
            note = "feature importance not computed in this run" + (f": {why}" if why else "")
        return {
            "source": source,
            "label": IMPORTANCE_LABELS[source],
            "folds": [],
            "rows": rows,
            "note": note,
        }

    def _json_confidence(self) -> dict:
        source = self._source()
        conf = source.frame["confidence"].to_numpy(dtype=float)
        counts, edges = (
            np.histogram(conf, bins=plots.confidence_edges(conf, 10)) if len(conf) else ([], [])
        )
        return {
            "n": len(conf),
            "mean": float(conf.mean()) if len(conf) else None,
            "hist": [
                {"from": float(e), "count": int(c)} for e, c in zip(edges[:-1], counts, strict=True)
            ],
            "source": source.kind,
            "note": source.note,
        }

    def _json_signals(self) -> dict:
        source = self._source()
        frame = source.frame
        if frame.empty:
            return {"rows": [], "source": source.kind, "note": source.note}
        resolved = frame[frame["correct"].notna()]
        hit = (np.sign(resolved["signal"]) == np.sign(resolved["outcome"])).groupby(
            resolved["signal"]
        )
        rows = [
            {
                "signal": int(s),
                "count": int(n),
                "share": float(n / len(frame)),
                "directional_hit_rate": float(hit.mean().get(s)) if s in hit.groups else None,
            }
            for s, n in frame["signal"].value_counts().sort_index().items()
        ]
        return {"rows": rows, "source": source.kind, "note": source.note}

    def _json_paper(self) -> dict:
        state = run_state(self.engine, self.paper_run)
        orders = orders_frame(self.engine, self.paper_run)
        note = None
        if state is None:
            note = (
                f"no paper-trading run '{self.paper_run}' recorded yet — start one with "
                "`cryptoml paper`"
            )
        elif not len(orders):
            note = f"paper run '{self.paper_run}' has placed no orders yet"
        return {
            "state": state,
            "n_orders": len(orders),
            "rows": orders.tail(15).iloc[::-1].to_dict("records"),
            "note": note,
        }

    def _json_live(self) -> dict:
        """Every live-service account: its state, equity and guards (``live_accounts``)."""
        return live_accounts(self.engine, self.output_dir)

    # --- PNG ---------------------------------------------------------------------------
    def plot(self, name: str) -> bytes:
        if name == "live":
            curves = equity_curves(self.engine)
            note = "no account has processed a bar yet" if curves else EMPTY_NOTE
            return plots.live_equity_png(curves, note=note)
        if name == "predictions":
            source = self._source()
            return plots.predictions_vs_outcomes_png(source.frame, note=source.note)
        if name == "rolling":
            source = self._source()
            metrics = self._rolling(source)
            return plots.rolling_metrics_png(metrics, note=self._rolling_note(source, metrics))
        if name == "confidence":
            source = self._source()
            return plots.confidence_histogram_png(source.frame, note=source.note)
        if name == "backtest":
            report, _ = run_report(self.output_dir)
            equity, reason = run_equity(self.output_dir)
            png = equity_curve_png(equity, (report or {}).get("folds") or [])
            if png is None:
                return plots.message_png("walk-forward equity", reason or "no equity marks")
            return png
        if name == "importance":
            imp = self._json_importance()
            key = "mean_delta_logloss" if imp["source"] == "permutation" else "share"
            title = {
                "permutation": "permutation importance (mean Δ log-loss over folds)",
                "weight_norm": "feature importance proxy (input weight norms)",
            }.get(imp["source"], "feature importance (none available)")
            rows = {r["feature"]: r[key] for r in imp["rows"]}
            return plots.feature_importance_png(rows, title, note=imp["note"])
        raise KeyError(name)
