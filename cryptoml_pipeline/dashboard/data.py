"""The dashboard's JSON payloads and plots, read from the registry, tracker and paper tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, make_url

from cryptoml_pipeline.dashboard import plots
from cryptoml_pipeline.features.importance import summarise_importance
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
TOP_FEATURES = 20
IMPORTANCE_LABELS = {
    "permutation": "permutation importance (Δ log-loss when the feature is shuffled on the fold's "
    "test window), mean over {n} fold(s)",
    "weight_norm": "proxy: L2 norm of the deployed model's input weights (no per-fold "
    "permutation importance stored)",
    "none": "no feature importance available",
}


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
    from cryptoml_pipeline.defs.assets.importance import (  # dagster: imported only when needed
        FEATURE_IMPORTANCE_KEY,
        load_importance_partitions,
    )

    root = Path(output_dir, "assets", *FEATURE_IMPORTANCE_KEY.path)
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
        deployed = self.registry.deployed()
        return deployed.version if deployed else None

    def _frame(self) -> pd.DataFrame:
        return self.tracker.frame(self._version(), limit=5000)

    def _rolling(self) -> pd.DataFrame:
        return rolling_metrics(
            self._frame(),
            window=self.settings.retrain.rolling_window,
            timeframe=self.settings.data.timeframe,
            horizon=self.settings.target.reach,
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
            return {"source": "permutation", "label": label, "folds": folds, "rows": rows}
        version = self._version()
        imp = (
            self.registry.require(version).metrics.get("feature_importance", {}) if version else {}
        )
        source = "weight_norm" if imp else "none"
        rows = [{"feature": k, "share": v} for k, v in imp.items()]
        return {"source": source, "label": IMPORTANCE_LABELS[source], "folds": [], "rows": rows}

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
            imp = self._json_importance()
            key = "mean_delta_logloss" if imp["source"] == "permutation" else "share"
            title = {
                "permutation": "permutation importance (mean Δ log-loss over folds)",
                "weight_norm": "feature importance proxy (input weight norms)",
            }.get(imp["source"], "feature importance (none available)")
            return plots.feature_importance_png({r["feature"]: r[key] for r in imp["rows"]}, title)
        raise KeyError(name)
