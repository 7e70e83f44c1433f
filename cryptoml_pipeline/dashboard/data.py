"""The dashboard's JSON payloads and plots, read from the registry, tracker and paper tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from cryptoml_pipeline.dashboard import plots
from cryptoml_pipeline.management.paper import orders_frame, run_state
from cryptoml_pipeline.management.registry import ModelRegistry
from cryptoml_pipeline.management.tracker import ModelPerformanceTracker, rolling_metrics
from cryptoml_pipeline.modeling.persistence import to_jsonable
from cryptoml_pipeline.settings import PipelineSettings

PANELS = (
    "registry",
    "predictions",
    "rolling",
    "importance",
    "confidence",
    "signals",
    "paper",
)


class DashboardData:
    def __init__(self, engine: Engine, settings: PipelineSettings, paper_run: str) -> None:
        self.registry = ModelRegistry(engine)
        self.tracker = ModelPerformanceTracker(engine)
        self.engine = engine
        self.settings = settings
        self.paper_run = paper_run

    def _version(self) -> str | None:
        deployed = self.registry.deployed()
        return deployed.version if deployed else None

    def _frame(self) -> pd.DataFrame:
        return self.tracker.frame(self._version(), limit=5000)

    def _rolling(self) -> pd.DataFrame:
        return rolling_metrics(
            self._frame(),
            window=self.settings.retrain.rolling_window,
            timeframe=self.settings.data.timeframe,
            horizon=self.settings.labels.prediction_horizon,
        )

    # --- JSON --------------------------------------------------------------------------
    def payload(self, panel: str) -> dict[str, Any]:
        return to_jsonable(getattr(self, f"_json_{panel}")())

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
        return {"rows": rows, "deployed": self._version()}

    def _json_predictions(self) -> dict:
        frame = self._frame()
        cols = ["timestamp", "symbol", "signal", "confidence", "outcome", "correct"]
        return {"rows": frame[cols].tail(20).iloc[::-1].to_dict("records"), "n": len(frame)}

    def _json_rolling(self) -> dict:
        m = self._rolling()
        latest = m.iloc[-1].to_dict() if len(m) else {}
        recent, prior = self.tracker.accuracy_windows(
            self._version(), self.settings.retrain.recent_window, self.settings.retrain.prior_window
        )
        return {"latest": latest, "acc_recent": recent, "acc_prior": prior, "n": len(m)}

    def _json_importance(self) -> dict:
        version = self._version()
        imp = (
            self.registry.require(version).metrics.get("feature_importance", {}) if version else {}
        )
        return {"rows": [{"feature": k, "share": v} for k, v in imp.items()]}

    def _json_confidence(self) -> dict:
        conf = self._frame()["confidence"].to_numpy(dtype=float)
        counts, edges = np.histogram(conf, bins=np.linspace(0, 1, 11)) if len(conf) else ([], [])
        return {
            "n": len(conf),
            "mean": float(conf.mean()) if len(conf) else None,
            "hist": [
                {"from": float(e), "count": int(c)} for e, c in zip(edges[:-1], counts, strict=True)
            ],
        }

    def _json_signals(self) -> dict:
        frame = self._frame()
        if frame.empty:
            return {"rows": []}
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
        return {"rows": rows}

    def _json_paper(self) -> dict:
        state = run_state(self.engine, self.paper_run)
        orders = orders_frame(self.engine, self.paper_run)
        return {
            "state": state,
            "n_orders": len(orders),
            "rows": orders.tail(15).iloc[::-1].to_dict("records"),
        }

    # --- PNG ---------------------------------------------------------------------------
    def plot(self, name: str) -> bytes:
        if name == "predictions":
            return plots.predictions_vs_outcomes_png(self._frame())
        if name == "rolling":
            return plots.rolling_metrics_png(self._rolling())
        if name == "confidence":
            return plots.confidence_histogram_png(self._frame())
        if name == "importance":
            return plots.feature_importance_png(
                {r["feature"]: r["share"] for r in self._json_importance()["rows"]}
            )
        raise KeyError(name)
