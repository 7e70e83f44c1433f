"""The leaderboard of a configuration sweep: one row per configuration (failed ones included),
the pick of the rule declared before the sweep (:mod:`cryptoml_pipeline.experiments.rules`) and
the statistics that say how much to trust that pick:

* **PBO** by CSCV (Bailey, Borwein, López de Prado & Zhu 2017; :mod:`.pbo`) over the finished
  configurations' walk-forward net daily returns, inner-joined on their dates;
* **DSR** (Bailey & López de Prado 2014) of the selected configuration's daily returns, deflated
  by the real number of trials — every configuration of this sweep (failed ones count as tried)
  plus the prior trials — and the variance of the known trials' per-period Sharpes
  (:func:`cryptoml_pipeline.evaluation.statistics.deflated_sharpe_from_trials`);
* the selected configuration's **rank on each CPCV path** (López de Prado 2018, ch. 12;
  :mod:`.cpcv`) among the finished configurations, 1 = best.

Everything returned is JSON-serialisable (NaN and infinities become ``None``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.statistics import deflated_sharpe_from_trials
from cryptoml_pipeline.experiments.pbo import pbo_cscv
from cryptoml_pipeline.experiments.rules import SELECTION_RULES

__all__ = [
    "ConfigResult",
    "build_leaderboard",
    "jsonable",
    "leaderboard_html",
    "swept_parameters",
    "write_leaderboard",
]

WALK_FORWARD_KEYS = (
    "net_sharpe",
    "rank_ic",
    "rank_ic_t",
    "ic",
    "hit_rate",
    "turnover",
    "break_even_taker_fee",
    "n_trades",
    "total_return",
)


@dataclass
class ConfigResult:
    """One configuration's outcome. ``walk_forward`` keys: see :data:`WALK_FORWARD_KEYS`
    (``net_sharpe`` annualised). ``daily_returns``: walk-forward net daily returns on a UTC-date
    index (PBO and DSR). ``path_sharpes``: annualised net Sharpe of each CPCV path (path order);
    ``path_rank_ics``: rank IC of each path."""

    name: str
    params: dict[str, Any]
    status: str  # "ok" | "failed"
    error: str | None = None
    walk_forward: dict[str, float | int | None] = field(default_factory=dict)
    daily_returns: pd.Series | None = None
    path_sharpes: list[float] = field(default_factory=list)
    path_rank_ics: list[float] = field(default_factory=list)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples, timestamps made JSON-ready; NaN/inf -> None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray | pd.Series):
        return [jsonable(v) for v in (sorted(value, key=str) if isinstance(value, set) else value)]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _quantiles(values: Sequence[float]) -> dict[str, float] | None:
    v = np.asarray([x for x in (_finite(x) for x in values) if x is not None], dtype=np.float64)
    if not len(v):
        return None
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return dict(zip(("min", "q25", "median", "q75", "max"), map(float, q), strict=True))


def _row(result: ConfigResult) -> dict[str, Any]:
    wf = result.walk_forward or {}
    ok = result.status == "ok"
    sharpe_q = _quantiles(result.path_sharpes) if ok else None
    return {
        "name": result.name,
        "params": jsonable(result.params),
        "status": result.status,
        "error": result.error,
        "walk_forward_net_sharpe": _finite(wf.get("net_sharpe")),
        **{k: _finite(wf.get(k)) for k in WALK_FORWARD_KEYS if k not in ("net_sharpe", "n_trades")},
        "n_trades": None if _finite(wf.get("n_trades")) is None else int(wf["n_trades"]),
        "cpcv_n_paths": len(result.path_sharpes),
        "cpcv_path_sharpe_quantiles": sharpe_q,
        "cpcv_median_net_sharpe": None if sharpe_q is None else sharpe_q["median"],
        "cpcv_path_rank_ic_quantiles": _quantiles(result.path_rank_ics) if ok else None,
        "selected": False,
    }


def _per_period_sharpe(returns: pd.Series) -> float | None:
    r = pd.to_numeric(returns, errors="coerce").to_numpy(dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return None
    std = float(np.std(r, ddof=1))
    return float(r.mean() / std) if std > 0 else None


def _select(rows: list[dict[str, Any]], column: str) -> tuple[int | None, str | None]:
    """Index of the first ok row with the largest finite ``column`` (None + reason if none)."""
    best, best_value = None, -math.inf
    for i, row in enumerate(rows):
        v = _finite(row.get(column))
        if row["status"] == "ok" and v is not None and v > best_value:
            best, best_value = i, v
    if best is not None:
        return best, None
    if not any(r["status"] == "ok" for r in rows):
        return None, "no configuration finished"
    return None, f"no finished configuration has a value for {column}"


def _returns_matrix(results: Sequence[ConfigResult]) -> pd.DataFrame:
    series = {
        r.name: pd.to_numeric(r.daily_returns, errors="coerce")
        for r in results
        if r.status == "ok" and r.daily_returns is not None and len(r.daily_returns)
    }
    if not series:
        return pd.DataFrame()
    return pd.concat(series, axis=1, join="inner").dropna(how="any")


def _path_array(result: ConfigResult, n_paths: int) -> np.ndarray:
    values = [_finite(v) for v in result.path_sharpes[:n_paths]]
    out = np.full(n_paths, np.nan)
    out[: len(values)] = [np.nan if v is None else v for v in values]
    return out


def _path_ranks(results: Sequence[ConfigResult], selected: ConfigResult) -> list[int | None]:
    """Selected configuration's rank (1 = best) on each CPCV path among the ok configurations
    with a finite Sharpe on that path (None where the selected one has none)."""
    n_paths = len(selected.path_sharpes)
    table = np.array([_path_array(r, n_paths) for r in results if r.status == "ok"])
    mine = _path_array(selected, n_paths)
    better = (table > mine[None, :]).sum(axis=0)
    return [None if np.isnan(m) else int(b) + 1 for m, b in zip(mine, better, strict=True)]


def build_leaderboard(
    grid_name: str,
    results: list[ConfigResult],
    *,
    selection_rule: str,
    prior_trial_sharpes: Sequence[float] = (),
    periods_per_year: float = 365.0,
    source: dict | None = None,
) -> dict[str, Any]:
    """The leaderboard dict ``{"grid", "source", "summary", "configurations"}``.

    Selection: the ``"ok"`` row maximising ``SELECTION_RULES[selection_rule]`` (ties: the first
    in ``results`` order). PBO: :func:`pbo_cscv` (default partitions) over the inner-joined daily
    returns of the ok configurations (None with a reason when fewer than two or too few dates).
    DSR: the selected configuration's daily returns against ``n_trials = n_configurations +
    len(prior_trial_sharpes)`` (failed configurations were tried too, so they count) and the
    variance of the known per-period Sharpes — each ok configuration's daily Sharpe plus the
    priors. ``prior_trial_sharpes`` are ANNUALISED (as the project's ``controls.trial_sharpes``)
    and are divided by ``sqrt(periods_per_year)`` here. Raises :class:`InputError` for an unknown
    rule or duplicate configuration names.
    """
    if selection_rule not in SELECTION_RULES:
        raise InputError(
            f"unknown selection rule {selection_rule!r} (known: {', '.join(SELECTION_RULES)})"
        )
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"duplicate configuration names in the leaderboard: {', '.join(dup)}")
    column = SELECTION_RULES[selection_rule]
    rows = [_row(r) for r in results]
    ok = [r for r in results if r.status == "ok"]
    chosen, select_reason = _select(rows, column)
    selected = None if chosen is None else results[chosen]
    if chosen is not None:
        rows[chosen]["selected"] = True

    pbo = pbo_reason = None
    pbo_detail: dict[str, Any] | None = None
    matrix = _returns_matrix(results)
    if matrix.shape[1] < 2:
        pbo_reason = (
            f"PBO needs >= 2 finished configurations with daily returns ({matrix.shape[1]})"
        )
    else:
        try:
            res = pbo_cscv(matrix)
        except InputError as exc:
            pbo_reason = str(exc)
        else:
            pbo = res.pbo
            pbo_detail = res.summary()

    priors = [float(s) / math.sqrt(periods_per_year) for s in prior_trial_sharpes]
    trial_sharpes = [
        s
        for s in (_per_period_sharpe(r.daily_returns) for r in ok if r.daily_returns is not None)
        if s is not None
    ]
    n_trials = len(results) + len(priors)
    dsr_stats: dict[str, Any] = {
        "psr": None,
        "dsr": None,
        "dsr_trials": max(n_trials, 1),
        "dsr_trial_sharpe_var": None,
        "dsr_variance_source": None,
    }
    dsr_reason = None
    if selected is None:
        dsr_reason = select_reason
    elif selected.daily_returns is None or not len(selected.daily_returns):
        dsr_reason = f"{selected.name} has no daily returns"
    else:
        daily = pd.to_numeric(selected.daily_returns, errors="coerce").to_numpy(np.float64)
        dsr_stats = deflated_sharpe_from_trials(daily, [*trial_sharpes, *priors], n_trials)
        if dsr_stats["dsr"] is None:
            dsr_reason = "fewer than 3 daily returns or zero variance"

    summary = {
        "grid": grid_name,
        "n_configurations": len(results),
        "n_ok": len(ok),
        "n_failed": sum(r.status != "ok" for r in results),
        "selection_rule": selection_rule,
        "selection_column": column,
        "selected": None if selected is None else selected.name,
        "selected_value": None if chosen is None else rows[chosen][column],
        "selection_reason": select_reason,
        "pbo": pbo,
        "pbo_reason": pbo_reason,
        "pbo_detail": pbo_detail,
        "psr": dsr_stats["psr"],
        "dsr": dsr_stats["dsr"],
        "dsr_trials": dsr_stats["dsr_trials"],
        "dsr_trial_sharpe_var": dsr_stats["dsr_trial_sharpe_var"],
        "dsr_variance_source": dsr_stats["dsr_variance_source"],
        "dsr_reason": dsr_reason,
        "n_prior_trials": len(priors),
        "periods_per_year": periods_per_year,
        "selected_path_ranks": [] if selected is None else _path_ranks(results, selected),
    }
    return jsonable(
        {"grid": grid_name, "source": source or {}, "summary": summary, "configurations": rows}
    )


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def swept_parameters(leaderboard: dict[str, Any]) -> list[str]:
    """Parameters taking more than one value over the rows, most distinct values first (ties:
    first appearance)."""
    order: dict[str, set[str]] = {}
    for row in leaderboard["configurations"]:
        for name, value in (row.get("params") or {}).items():
            order.setdefault(name, set()).add(_key(value))
    swept = [name for name, values in order.items() if len(values) > 1]
    return sorted(swept, key=lambda n: -len(order[n]))


def _axis_values(rows: list[dict[str, Any]], name: str) -> list[Any]:
    seen: dict[str, Any] = {}
    for row in rows:
        value = (row.get("params") or {}).get(name)
        seen.setdefault(_key(value), value)
    values = list(seen.values())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return sorted(values, key=_key)


def _heat_png(
    rows: list[dict[str, Any]], x: str, y: str | None
) -> tuple[str, np.ndarray, list[Any], list[Any]]:
    """Base64 PNG of the mean walk-forward net Sharpe per (y, x) cell (NaN: no finished row)."""
    xs = _axis_values(rows, x)
    ys = _axis_values(rows, y) if y else [None]
    xi = {_key(v): i for i, v in enumerate(xs)}
    yi = {_key(v): i for i, v in enumerate(ys)}
    total = np.zeros((len(ys), len(xs)))
    count = np.zeros((len(ys), len(xs)))
    tried = np.zeros((len(ys), len(xs)), dtype=bool)
    for row in rows:
        params = row.get("params") or {}
        i = yi[_key(params.get(y))] if y else 0
        j = xi[_key(params.get(x))]
        tried[i, j] = True
        v = _finite(row.get("walk_forward_net_sharpe"))
        if row["status"] == "ok" and v is not None:
            total[i, j] += v
            count[i, j] += 1
    with np.errstate(invalid="ignore"):
        grid = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    fig = Figure(figsize=(max(4.0, 0.9 * len(xs) + 2.5), max(2.2, 0.6 * len(ys) + 1.8)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    finite = grid[np.isfinite(grid)]
    lim = float(np.max(np.abs(finite))) if len(finite) else 1.0
    image = ax.imshow(
        np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=-lim or -1, vmax=lim or 1, aspect="auto"
    )
    ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30, ha="right")
    ax.set_yticks(range(len(ys)), [str(v) for v in ys] if y else [""])
    ax.set_xlabel(x)
    if y:
        ax.set_ylabel(y)
    for i in range(len(ys)):
        for j in range(len(xs)):
            text = (
                f"{grid[i, j]:.2f}"
                if np.isfinite(grid[i, j])
                else ("failed" if tried[i, j] else "")
            )
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="net Sharpe (ann.)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), grid, xs, ys


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


_TABLE_COLUMNS = (
    ("walk_forward_net_sharpe", "WF net Sharpe"),
    ("rank_ic", "rank IC"),
    ("rank_ic_t", "rank IC t"),
    ("turnover", "turnover"),
    ("break_even_taker_fee", "break-even fee"),
    ("n_trades", "trades"),
    ("total_return", "total return"),
    ("cpcv_median_net_sharpe", "CPCV median Sharpe"),
    ("cpcv_n_paths", "CPCV paths"),
)


def leaderboard_html(
    leaderboard: dict[str, Any], x: str | None = None, y: str | None = None
) -> str:
    """A self-contained HTML page (no network assets): the summary (pick, rule, PBO, DSR), a heat
    map of the walk-forward net Sharpe over parameters ``x`` and ``y`` (default: the two swept
    parameters with the most distinct values; cells average over the other parameters; one swept
    parameter gives a 1-D strip; none, no map) and the table of every configuration."""
    summary = leaderboard["summary"]
    rows = leaderboard["configurations"]
    swept = swept_parameters(leaderboard)
    known = {name for row in rows for name in (row.get("params") or {})}
    for axis in (x, y):
        if axis is not None and axis not in known:
            raise InputError(f"heat-map parameter {axis!r} is not a parameter of this grid")
    if x is None:
        x = next((p for p in swept if p != y), None)
    if y is None and x is not None:
        y = next((p for p in swept if p != x), None)
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Leaderboard {esc(str(summary.get('grid')))}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
        "tr.selected{background:#e6f4e6}tr.failed{color:#a00}</style></head><body>",
        f"<h1>Leaderboard: {esc(str(summary.get('grid')))}</h1>",
        "<h2>Summary</h2><ul>",
        f"<li>Selection rule (declared before the sweep): <b>{esc(str(summary['selection_rule']))}"
        f"</b> (maximises <code>{esc(str(summary.get('selection_column')))}</code>)</li>",
        f"<li>Selected: <b>{esc(_fmt(summary['selected']))}</b>"
        + (f" ({esc(str(summary['selection_reason']))})" if summary.get("selection_reason") else "")
        + "</li>",
        f"<li>Configurations: {summary['n_configurations']} ({summary['n_failed']} failed)</li>",
        f"<li>PBO (CSCV): <b>{esc(_fmt(summary['pbo']))}</b>"
        + (f" ({esc(str(summary['pbo_reason']))})" if summary.get("pbo_reason") else "")
        + (f"; {esc(_fmt(summary['pbo_detail']))}" if summary.get("pbo_detail") else "")
        + "</li>",
        f"<li>DSR: <b>{esc(_fmt(summary['dsr']))}</b> over {summary['dsr_trials']} trials "
        f"(PSR {esc(_fmt(summary['psr']))})"
        + (f" ({esc(str(summary['dsr_reason']))})" if summary.get("dsr_reason") else "")
        + "</li>",
        f"<li>Selected configuration's rank on each CPCV path (1 = best): "
        f"{esc(_fmt(summary.get('selected_path_ranks') or None))}</li></ul>",
    ]
    if x is not None:
        png, _, _, _ = _heat_png(rows, x, y)
        others = [p for p in swept if p not in (x, y)]
        note = f"averaged over {', '.join(others)}" if others else "no other swept parameter"
        title = f"{x} × {y}" if y else f"{x} (1-D strip)"
        parts += [
            f"<h2>Walk-forward net Sharpe: {esc(title)}</h2>",
            f"<p>Cells: mean over the finished configurations, {esc(note)}; "
            "'failed': every configuration of the cell failed.</p>",
            f"<img id='heatmap' alt='heat map of walk-forward net Sharpe' "
            f"src='data:image/png;base64,{png}'>",
        ]
    else:
        parts.append("<p>No swept parameter: no heat map.</p>")
    header = "".join(f"<th>{esc(label)}</th>" for _, label in _TABLE_COLUMNS)
    parts += [
        "<h2>Configurations</h2><table><tr><th>name</th><th>status</th><th>params</th>",
        f"{header}<th>error</th></tr>",
    ]
    for row in rows:
        css = "selected" if row.get("selected") else ("failed" if row["status"] != "ok" else "")
        cells = "".join(f"<td>{esc(_fmt(row.get(key)))}</td>" for key, _ in _TABLE_COLUMNS)
        parts.append(
            f"<tr class='{css}'><td>{esc(str(row['name']))}</td><td>{esc(row['status'])}</td>"
            f"<td>{esc(_fmt(row.get('params') or {}))}</td>{cells}"
            f"<td>{esc(row.get('error') or '')}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_leaderboard(directory: Path, leaderboard: dict[str, Any], html: str) -> tuple[Path, Path]:
    """Write ``leaderboard.json`` and ``leaderboard.html`` under ``directory`` (each atomically:
    a temporary file in the same folder, then ``os.replace``). Returns both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "leaderboard.json", directory / "leaderboard.html"
    _atomic_write(json_path, json.dumps(leaderboard, indent=2, allow_nan=False) + "\n")
    _atomic_write(html_path, html)
    return json_path, html_path
