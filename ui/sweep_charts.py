"""Plotly figure specs for sweeps (pure: a results frame in, a dict spec out; no ``st.*``).

1-D: final and best-epoch test RMSE against the varied value (log x when the range is
log), train RMSE beside it, the baselines as lines, the best point marked. Over- and
under-fitting read directly: test error falls then rises (a U) while train error keeps
falling. 2-D: a heatmap of the final test RMSE, the best cell marked. Each point carries
its run id in ``customdata``, so a click can open it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from mfcore.sweeps import PARAMETERS, SweepAxis
from ui.layout import chart_frame
from ui.run_charts import BASELINE_LINES, BEST_COLOUR, TEST_COLOUR, TRAIN_COLOUR

Figure = dict[str, Any]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _fmt(axis: SweepAxis, v: float) -> str:
    return str(int(v)) if PARAMETERS[axis.name][1] else f"{v:g}"


def _layout(title: str, x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    layout = {
        "title": {"text": title},
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}},
        "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
        "height": 420,
        "uirevision": "sweep",
    }
    layout.update(extra)
    # the legend below the plot, the title under plotly's toolbar: nothing overlaps at 800 px (issue 10)
    return chart_frame({"layout": layout})["layout"]


def sweep_1d(frame: pd.DataFrame, axis: SweepAxis, baselines: Mapping[str, float] | None = None,
             best: int | None = None, *, title: str = "Sweep") -> Figure:
    """Test RMSE (final and best epoch) and train RMSE against one varied value."""
    f = frame.sort_values(axis.name)
    x = [float(v) for v in f[axis.name]]
    ids = [r or "" for r in f["run_id"]]
    data: list[dict] = [
        {"type": "scatter", "x": x, "y": [_num(v) for v in f["test_rmse"]], "mode": "lines+markers",
         "name": "test RMSE (final)", "customdata": ids, "line": {"color": TEST_COLOUR, "width": 2.5},
         "marker": {"size": 9}, "connectgaps": True},
        {"type": "scatter", "x": x, "y": [_num(v) for v in f["best_test_rmse"]], "mode": "lines+markers",
         "name": "test RMSE (best epoch)", "customdata": ids,
         "line": {"color": TEST_COLOUR, "dash": "dot", "width": 1.5}, "marker": {"size": 6}, "connectgaps": True},
        {"type": "scatter", "x": x, "y": [_num(v) for v in f["train_rmse"]], "mode": "lines+markers",
         "name": "train RMSE", "customdata": ids, "line": {"color": TRAIN_COLOUR, "width": 2.5},
         "marker": {"size": 9}, "connectgaps": True},
    ]
    if x:
        for key, name, colour in BASELINE_LINES:
            value = _num((baselines or {}).get(key))
            if value is None:
                continue
            data.append({"type": "scatter", "x": [min(x), max(x)], "y": [value, value], "mode": "lines",
                         "name": f"{name} {value:.4f}", "line": {"color": colour, "dash": "dash", "width": 1.5},
                         "hoverinfo": "skip"})
    if best is not None:
        row = frame[frame["point"] == best].iloc[0]
        data.append({"type": "scatter", "x": [float(row[axis.name])], "y": [float(row["test_rmse"])],
                     "mode": "markers+text", "name": f"best: {axis.label} = {_fmt(axis, row[axis.name])}",
                     "text": [f"best {row['test_rmse']:.4f}"], "textposition": "top center",
                     "customdata": [row["run_id"]],
                     "marker": {"symbol": "star", "size": 18, "color": BEST_COLOUR, "line": {"width": 1, "color": "#000"}}})
    xaxis: dict[str, Any] = {"title": {"text": axis.label + (" (log scale)" if axis.log else "")}}
    if axis.log:
        xaxis["type"] = "log"
    layout = _layout(title, axis.label, "RMSE")
    layout["xaxis"] = xaxis
    layout["hovermode"] = "closest"
    return {"data": data, "layout": layout}


def heatmap_grid(frame: pd.DataFrame, axes: Sequence[SweepAxis], column: str = "test_rmse"):
    """(rows = first axis values, columns = second axis values, z, run ids) of a 2-D sweep."""
    a, b = axes
    rows, cols = list(a.values), list(b.values)
    z = [[None] * len(cols) for _ in rows]
    ids = [[""] * len(cols) for _ in rows]
    for _, r in frame.iterrows():
        i, j = rows.index(float(r[a.name])), cols.index(float(r[b.name]))
        z[i][j] = _num(r[column])
        ids[i][j] = r["run_id"] or ""
    return rows, cols, z, ids


def sweep_2d(frame: pd.DataFrame, axes: Sequence[SweepAxis], best: int | None = None, *,
             title: str = "Sweep: test RMSE") -> Figure:
    """A heatmap of the final test RMSE over two varied values (categorical axes, in order)."""
    a, b = axes
    rows, cols, z, ids = heatmap_grid(frame, axes)
    x = [_fmt(b, v) for v in cols]
    y = [_fmt(a, v) for v in rows]
    text = [[("" if v is None else f"{v:.4f}") for v in row] for row in z]
    data: list[dict] = [{
        "type": "heatmap", "x": x, "y": y, "z": z, "name": "test RMSE", "customdata": ids, "text": text,
        "texttemplate": "%{text}", "colorscale": "RdYlGn", "reversescale": True,
        "colorbar": {"title": {"text": "test RMSE"}}, "hoverongaps": False,
    }]
    if best is not None:
        row = frame[frame["point"] == best].iloc[0]
        data.append({"type": "scatter", "x": [_fmt(b, row[b.name])], "y": [_fmt(a, row[a.name])],
                     "mode": "markers", "name": f"best {row['test_rmse']:.4f}", "customdata": [row["run_id"]],
                     "marker": {"symbol": "star-open", "size": 26, "color": "#000", "line": {"width": 3}}})
    layout = _layout(title, b.label, a.label, hovermode="closest")
    layout["xaxis"]["type"] = "category"
    layout["yaxis"]["type"] = "category"
    return {"data": data, "layout": layout}


def trace(fig: Figure, name: str) -> dict | None:
    """The trace called ``name`` (exact, or the first whose name starts with it)."""
    traces = fig.get("data", [])
    return next((t for t in traces if t.get("name") == name), None) or next(
        (t for t in traces if str(t.get("name", "")).startswith(name)), None)
