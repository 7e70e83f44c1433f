"""The sweep leaderboard: rows, selection rule, PBO/DSR wiring, CPCV path ranks, HTML, files."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.statistics import deflated_sharpe_from_trials
from cryptoml_pipeline.experiments.leaderboard import (
    ConfigResult,
    build_leaderboard,
    leaderboard_html,
    swept_parameters,
    write_leaderboard,
)
from cryptoml_pipeline.experiments.pbo import pbo_cscv
from cryptoml_pipeline.experiments.rules import SELECTION_RULES

RULE = "best_walk_forward_net_sharpe"
DATES = pd.date_range("2024-01-01", periods=120, freq="D", tz="UTC")


def _ok(name: str, params: dict, seed: int, drift: float = 0.0, **wf: float) -> ConfigResult:
    rng = np.random.default_rng(seed)
    daily = pd.Series(rng.normal(drift, 0.01, len(DATES)), index=DATES)
    sharpe = float(daily.mean() / daily.std() * math.sqrt(365))
    return ConfigResult(
        name=name,
        params=params,
        status="ok",
        walk_forward={"net_sharpe": sharpe, "rank_ic": 0.02, "rank_ic_t": 1.5, "n_trades": 40} | wf,
        daily_returns=daily,
        path_sharpes=list(rng.normal(drift * 100, 1.0, 5)),
        path_rank_ics=list(rng.normal(0.02, 0.01, 5)),
    )


def _grid() -> list[ConfigResult]:
    results = [
        _ok(f"lr{lr}-d{d}", {"lr": lr, "depth": d, "seed": 7}, seed=10 * i + j, drift=0.0005 * i)
        for i, lr in enumerate((0.01, 0.05, 0.1))
        for j, d in enumerate((3, 5))
    ]
    results.append(
        ConfigResult(
            name="lr0.2-d3",
            params={"lr": 0.2, "depth": 3, "seed": 7},
            status="failed",
            error="InputError: too few rows",
        )
    )
    return results


def test_rows_include_failed_configurations_with_their_error():
    board = build_leaderboard("g", _grid(), selection_rule=RULE)
    rows = board["configurations"]
    assert [r["name"] for r in rows] == [r.name for r in _grid()]
    failed = rows[-1]
    assert failed["status"] == "failed" and failed["error"] == "InputError: too few rows"
    assert failed["walk_forward_net_sharpe"] is None and not failed["selected"]
    assert failed["cpcv_path_sharpe_quantiles"] is None
    summary = board["summary"]
    assert summary["n_configurations"] == 7 and summary["n_failed"] == 1
    assert summary["selection_rule"] == RULE
    assert sum(r["selected"] for r in rows) == 1
    best = max(rows[:-1], key=lambda r: r["walk_forward_net_sharpe"])
    assert summary["selected"] == best["name"] and best["selected"]
    ok_row = rows[0]
    for key in (
        "params", "walk_forward_net_sharpe", "rank_ic", "rank_ic_t", "ic", "hit_rate",
        "turnover", "break_even_taker_fee", "n_trades", "total_return", "cpcv_n_paths",
        "cpcv_path_sharpe_quantiles", "cpcv_median_net_sharpe", "cpcv_path_rank_ic_quantiles",
    ):  # fmt: skip
        assert key in ok_row
    q = ok_row["cpcv_path_sharpe_quantiles"]
    assert list(q) == ["min", "q25", "median", "q75", "max"]
    assert q["min"] <= q["q25"] <= q["median"] <= q["q75"] <= q["max"]
    assert ok_row["cpcv_median_net_sharpe"] == q["median"]
    assert ok_row["cpcv_n_paths"] == 5 and ok_row["n_trades"] == 40
    json.dumps(board, allow_nan=False)


def test_pbo_and_dsr_use_every_trial():
    results = _grid()
    priors = [1.2, -0.3, 0.8]  # annualised, like controls.trial_sharpes
    board = build_leaderboard("g", results, selection_rule=RULE, prior_trial_sharpes=priors)
    summary = board["summary"]
    ok = [r for r in results if r.status == "ok"]
    matrix = pd.concat({r.name: r.daily_returns for r in ok}, axis=1)
    expected_pbo = pbo_cscv(matrix)
    assert summary["pbo"] == expected_pbo.pbo
    assert summary["pbo_detail"]["n_combinations"] == expected_pbo.n_combinations == 12870
    assert summary["pbo_detail"]["n_partitions"] == 16
    assert 0.0 <= summary["pbo_detail"]["prob_oos_loss"] <= 1.0
    selected = next(r for r in ok if r.name == summary["selected"])
    daily_sharpes = [float(r.daily_returns.mean() / r.daily_returns.std()) for r in ok]
    expected = deflated_sharpe_from_trials(
        selected.daily_returns.to_numpy(),
        daily_sharpes + [p / math.sqrt(365) for p in priors],
        len(results) + len(priors),
    )
    assert summary["dsr_trials"] == 7 + 3 >= summary["n_configurations"]
    assert summary["dsr"] == pytest.approx(expected["dsr"])
    assert summary["psr"] == pytest.approx(expected["psr"])
    assert summary["dsr_trial_sharpe_var"] == pytest.approx(expected["dsr_trial_sharpe_var"])
    assert 0.0 <= summary["dsr"] <= summary["psr"] <= 1.0
    without_priors = build_leaderboard("g", results, selection_rule=RULE)["summary"]
    assert without_priors["dsr_trials"] == 7 == without_priors["n_configurations"]


def test_pbo_uses_the_common_dates_only():
    results = _grid()[:3]
    results[0].daily_returns = results[0].daily_returns.iloc[20:]
    results[1].daily_returns = results[1].daily_returns.iloc[:-10]
    detail = build_leaderboard("g", results, selection_rule=RULE)["summary"]["pbo_detail"]
    assert detail["n_observations"] == 80  # 90 common dates, 16 blocks of 5


def test_selection_ties_go_to_the_first_configuration():
    results = [_ok(name, {"x": i}, seed=i) for i, name in enumerate("abc")]
    for r in results:
        r.walk_forward["net_sharpe"] = 1.0 if r.name != "a" else 0.5
    board = build_leaderboard("g", results, selection_rule=RULE)
    assert board["summary"]["selected"] == "b"
    assert [r["selected"] for r in board["configurations"]] == [False, True, False]


@pytest.mark.parametrize("rule", sorted(SELECTION_RULES))
def test_every_declared_rule_maximises_its_column(rule):
    results = _grid()
    results[0].walk_forward["rank_ic_t"] = 9.0
    board = build_leaderboard("g", results, selection_rule=rule)
    column = SELECTION_RULES[rule]
    values = [r[column] for r in board["configurations"] if r["status"] == "ok"]
    chosen = next(r for r in board["configurations"] if r["selected"])
    assert chosen[column] == max(values)
    assert board["summary"]["selected_value"] == max(values)


def test_unknown_rule_and_duplicate_names_raise_input_error():
    with pytest.raises(InputError, match="unknown selection rule"):
        build_leaderboard("g", _grid(), selection_rule="best_vibes")
    dup = _grid()[:2]
    dup[1].name = dup[0].name
    with pytest.raises(InputError, match="duplicate"):
        build_leaderboard("g", dup, selection_rule=RULE)


def test_no_finished_configuration_gives_none_with_reasons():
    failed = [
        ConfigResult(name=f"f{i}", params={"x": i}, status="failed", error="boom") for i in range(3)
    ]
    board = build_leaderboard("g", failed, selection_rule=RULE)
    summary = board["summary"]
    assert summary["selected"] is None and summary["selection_reason"]
    assert summary["pbo"] is None and summary["pbo_reason"]
    assert summary["dsr"] is None and summary["dsr_reason"]
    assert summary["dsr_trials"] >= 3
    assert summary["selected_path_ranks"] == []
    page = leaderboard_html(board)
    assert all(f"f{i}" in page for i in range(3))


def test_one_finished_configuration_has_no_pbo_but_a_dsr():
    results = _grid()[-2:]
    summary = build_leaderboard("g", results, selection_rule=RULE)["summary"]
    assert summary["pbo"] is None and ">= 2" in summary["pbo_reason"]
    assert summary["dsr"] is not None and summary["dsr_trials"] == 2


def test_selected_rank_on_each_cpcv_path():
    results = [_ok(name, {"x": i}, seed=i) for i, name in enumerate("abc")]
    results[0].path_sharpes = [3.0, 0.0, 1.0, float("nan")]
    results[1].path_sharpes = [1.0, 2.0, 1.0, 0.0]
    results[2].path_sharpes = [2.0, 1.0]  # fewer paths: absent where missing
    for r, s in zip(results, (5.0, 1.0, 1.0), strict=True):
        r.walk_forward["net_sharpe"] = s
    board = build_leaderboard("g", results, selection_rule=RULE)
    assert board["summary"]["selected"] == "a"
    assert board["summary"]["selected_path_ranks"] == [1, 3, 1, None]
    row = board["configurations"][0]
    assert row["cpcv_path_sharpe_quantiles"]["max"] == 3.0  # NaN paths ignored
    json.dumps(board, allow_nan=False)


def test_non_finite_inputs_serialise_as_none():
    results = _grid()[:2]
    results[0].walk_forward["net_sharpe"] = float("nan")
    results[0].walk_forward["turnover"] = np.float64("inf")
    results[0].params["weights"] = (np.float32(0.5), np.int64(2))
    board = build_leaderboard("g", results, selection_rule=RULE, source={"file": "grid.yaml"})
    row = board["configurations"][0]
    assert row["walk_forward_net_sharpe"] is None and row["turnover"] is None
    assert row["params"]["weights"] == [0.5, 2]
    assert board["summary"]["selected"] == results[1].name
    assert board["source"] == {"file": "grid.yaml"}
    json.dumps(board, allow_nan=False)


def _heat_image(page: str) -> bytes:
    match = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert match, "no heat map image"
    png = base64.b64decode(match.group(1))
    assert png.startswith(b"\x89PNG")
    return png


def test_html_has_summary_heat_map_and_every_configuration():
    board = build_leaderboard("grid-x", _grid(), selection_rule=RULE)
    assert swept_parameters(board) == ["lr", "depth"]
    page = leaderboard_html(board)
    _heat_image(page)
    assert "http://" not in page and "https://" not in page
    for row in board["configurations"]:
        assert row["name"] in page
    assert "InputError: too few rows" in page
    assert "lr × depth" in page and "no other swept parameter" in page
    assert RULE in page and "PBO" in page and "DSR" in page


def test_html_averages_other_parameters_and_handles_one_swept_parameter():
    board = build_leaderboard("g", _grid(), selection_rule=RULE)
    page = leaderboard_html(board, x="depth", y="lr")
    _heat_image(page)
    assert "depth × lr" in page
    one = [_ok(f"c{i}", {"lr": lr, "seed": 1}, seed=i) for i, lr in enumerate((0.1, 0.2, 0.3))]
    page = leaderboard_html(build_leaderboard("g", one, selection_rule=RULE))
    _heat_image(page)
    assert "1-D strip" in page
    three = [
        _ok(f"c{i}{j}{k}", {"a": i, "b": j, "c": k}, seed=i + j + k)
        for i in range(3)
        for j in range(2)
        for k in range(2)
    ]
    page = leaderboard_html(build_leaderboard("g", three, selection_rule=RULE), x="b", y="c")
    assert "averaged over a" in page
    with pytest.raises(InputError, match="not a parameter"):
        leaderboard_html(board, x="nope")


def test_html_without_swept_parameters_has_no_heat_map():
    page = leaderboard_html(build_leaderboard("g", _grid()[:1], selection_rule=RULE))
    assert "no heat map" in page and "base64" not in page


def test_write_leaderboard_writes_both_files_atomically(tmp_path):
    board = build_leaderboard("g", _grid(), selection_rule=RULE)
    page = leaderboard_html(board)
    json_path, html_path = write_leaderboard(tmp_path / "out", board, page)
    assert json_path.name == "leaderboard.json" and html_path.name == "leaderboard.html"
    assert json.loads(json_path.read_text()) == board
    assert html_path.read_text() == page
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "leaderboard.html",
        "leaderboard.json",
    ]
    board["summary"]["selected"] = "changed"
    write_leaderboard(tmp_path / "out", board, page)
    assert json.loads(json_path.read_text())["summary"]["selected"] == "changed"
