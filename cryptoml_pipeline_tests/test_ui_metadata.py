"""What the Dagster UI shows for backtest / backtest_report / model_comparison: the equity PNG
decodes at the stated size, the fold and model tables carry every fold / model, unknown or new
fields degrade to "—" / extra columns instead of failing."""

import base64
import io
import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from cryptoml_pipeline.reporting import ui_metadata as ui
from cryptoml_pipeline.reporting.report import build_report
from cryptoml_pipeline.settings import profile_settings
from cryptoml_pipeline_tests.test_report import DEPLOY, INFO, _evaluation

DATA_URI = re.compile(r"!\[equity curve\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def _two_fold_bundle() -> dict:
    bundle = _evaluation().to_bundle()
    second = dict(
        bundle["folds"][0],
        fold="2025-04-01",
        train_start="2024-10-03",
        train_end="2025-04-01",
        test_start="2025-04-01",
        test_end="2025-07-01",
        accuracy=None,  # a fold without known labels
        rank_ic=np.float64(0.031),  # a field a later report version adds
    )
    bundle["folds"] = [dict(bundle["folds"][0], n_predictions=2160, strategy_return=0.0123), second]
    return bundle


def _decode(markdown: str) -> np.ndarray:
    match = DATA_URI.fullmatch(markdown)
    assert match, markdown[:200]
    png = base64.b64decode(match.group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(io.BytesIO(png), format="png")


def test_backtest_tables_have_every_fold_and_a_decodable_equity_png() -> None:
    tables = ui.backtest_tables(_two_fold_bundle())
    image = _decode(tables.equity_markdown)
    assert image.shape[:2] == (ui.EQUITY_HEIGHT_PX, ui.EQUITY_WIDTH_PX)
    assert image[..., :3].std() > 0.05  # curves drawn, not a blank canvas
    lines = tables.fold_markdown.splitlines()
    assert lines[0] == (
        "| fold | train_start | test_start | test_end | n_predictions | accuracy | "
        "strategy_return | rank_ic |"
    )
    assert (
        lines[2]
        == "| 2025-01-01 | 2024-07-05 | 2025-01-01 | 2025-04-01 | 2160 | 40.00% | 1.23% | — |"
    )
    assert lines[3] == "| 2025-04-01 | 2024-10-03 | 2025-04-01 | 2025-07-01 | — | — | — | 0.031 |"
    assert [r["fold"] for r in tables.fold_rows] == ["2025-01-01", "2025-04-01"]
    assert tables.fold_rows[1]["rank_ic"] == pytest.approx(0.031)
    assert type(tables.fold_rows[1]["rank_ic"]) is float  # numpy unwrapped for the table value
    assert "| Sharpe | 1.200 | 0.500 | 2.000 |" in tables.kpi_markdown
    assert "| total return | 10.00% | 10.00% | 10.00% |" in tables.kpi_markdown


def test_missing_equity_and_folds_are_stated() -> None:
    bundle = _two_fold_bundle() | {"equity": None, "folds": []}
    tables = ui.backtest_tables(bundle)
    assert tables.equity_png is None
    assert tables.equity_markdown == (
        "_equity curve unavailable: the evaluation has no equity marks_"
    )
    assert tables.fold_markdown == "_no walk-forward folds in this evaluation_"
    assert tables.fold_rows == []


def test_report_tables_use_the_report_kpis_with_targets() -> None:
    ev = _evaluation()
    report = build_report(
        evaluation=ev, data_info=INFO, deployment=DEPLOY, settings=profile_settings("tiny")
    )
    tables = ui.report_tables(report, ev.equity)
    assert _decode(tables.equity_markdown).shape[:2] == (300, 800)
    assert "| KPI | strategy | buy & hold | rule-based | target |" in tables.kpi_markdown
    assert "| 2025-01-01 | 2024-07-05 | 2025-01-01 | 2025-04-01 |" in tables.fold_markdown


COMPARISON = {
    "configurations_tried": 3,
    "models": {
        "transformer": {
            "available": True,
            "folds": ["f0", "f1"],
            "metrics": {"n": 10, "accuracy": 0.33, "macro_f1": 0.2, "log_loss": 1.52},
            "strategy": {"total_return": -0.01, "sharpe": np.float64(-1.5), "n_trades": 4},
        },
        "ppo": {"available": False, "reasons": ["stable-baselines3 missing", "no GPU"]},
    },
    "per_fold": [
        {"model": "transformer", "fold": "f0", "n": 5, "accuracy": 0.3, "log_loss": float("nan")},
        {"model": "transformer", "fold": "f1", "n": 5, "accuracy": 0.36, "log_loss": 1.5},
    ],
}


def test_model_table_and_per_fold_table() -> None:
    rows = ui.model_rows(COMPARISON)
    assert [r["model"] for r in rows] == ["transformer", "ppo"]
    assert rows[0]["folds"] == 2 and rows[0]["sharpe"] == pytest.approx(-1.5)
    assert rows[1]["note"] == "stable-baselines3 missing; no GPU" and rows[1]["folds"] is None
    md = ui.model_markdown(COMPARISON).splitlines()
    assert md[2].startswith("| transformer | yes | 2 | 33.00% | 0.200 | 1.520 | -1.00% | -1.500 |")
    assert md[3].startswith("| ppo | no | — |") and md[3].endswith(
        "stable-baselines3 missing; no GPU |"
    )
    per_fold = ui.model_fold_markdown(COMPARISON).splitlines()
    assert per_fold[0] == "| model | fold | n | accuracy | log_loss |"
    assert per_fold[2:] == [
        "| transformer | f0 | 5 | 30.00% | — |",
        "| transformer | f1 | 5 | 36.00% | 1.500 |",
    ]
    assert ui.model_markdown({}) == "_no model comparison in this run_"
    assert ui.model_fold_markdown(None) == "_no per-fold model metrics in this run_"


def test_assets_wrap_the_rows_as_dagster_tables() -> None:
    import dagster as dg

    from cryptoml_pipeline.defs.assets.evaluation import table_metadata, ui_metadata

    meta = ui_metadata(ui.backtest_tables(_two_fold_bundle()))
    assert set(meta) == {"equity_curve", "kpi_table", "fold_table", "folds"}
    assert isinstance(meta["equity_curve"], dg.MarkdownMetadataValue)
    folds = meta["folds"]
    assert isinstance(folds, dg.TableMetadataValue) and len(folds.records) == 2
    kinds = {c.name: c.type for c in folds.schema.columns}
    assert kinds["fold"] == "string" and kinds["accuracy"] == "float"
    models = table_metadata(ui.model_rows(COMPARISON))
    assert {c.name: c.type for c in models.schema.columns}["available"] == "bool"
    assert models.records[1].data["note"] == "stable-baselines3 missing; no GPU"
