"""Plotly figures for training runs: learning curves, overlays, throughput.

Pure builders: DataFrames and dicts in, a plotly figure *spec* out (the plain
``{"data": [...], "layout": {...}}`` dict that ``st.plotly_chart`` and
``go.Figure(spec)`` accept). No ``st.*`` here, so the pages decide where a figure goes
and tests can inspect the traces directly.

Why dicts and not ``go.Figure``: the live view redraws every second for every student
who watches a run. Building a ``go.Figure`` (with ``add_hline``) cost ~35 ms and
``st.plotly_chart`` validates it again (~27 ms); the same figure as a dict costs ~9 ms
in all (measured on this project's 2-core machines). Baselines are therefore drawn as
two-point dashed traces, not layout shapes.

The learning curve puts everything on one RMSE axis so the gaps read directly:
the training loss is a mean squared error, so it is drawn as its square root (the
RMSE on the ratings seen while stepping) next to the test RMSE, with the two
baselines a model has to beat as horizontal lines: predicting the global mean, and
the bias-only model (global mean + user bias + item bias, regularised).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from ui.layout import chart_frame
from ui.text import html

Figure = dict[str, Any]

# Colours: one per role on a single run's chart, a cycle for overlays.
TRAIN_COLOUR = "#1f77b4"
TEST_COLOUR = "#d62728"
GLOBAL_MEAN_COLOUR = "#7f7f7f"
BASELINE_COLOUR = "#2ca02c"
OVERLAY_COLOURS = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)

BASELINE_LINES = (
    ("global_mean_rmse", "global mean", GLOBAL_MEAN_COLOUR),
    ("baseline_rmse", "biases only", BASELINE_COLOUR),
)

HISTORY_COLUMNS = ("epoch", "train_loss", "test_rmse", "test_mae", "seconds", "examples_per_second", "elapsed_s")

METRIC_LABELS = {
    "test_rmse": "test RMSE",
    "train_loss": "train RMSE (√ loss)",
    "test_mae": "test MAE",
    "examples_per_second": "ratings / second",
}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _values(values: Iterable[Any]) -> list[float | None]:
    """Plain floats, None (a gap in the line) for NaN/inf."""
    return [float(v) if _finite(v) else None for v in values]


def _rmse_of_loss(losses: Iterable[Any]) -> list[float | None]:
    """sqrt of a mean squared error; None for NaN/inf/negative."""
    return [math.sqrt(v) if _finite(v) and v >= 0 else None for v in losses]


def _clean(history: pd.DataFrame | None) -> pd.DataFrame:
    if history is None or len(history) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in HISTORY_COLUMNS})
    return history.sort_values("epoch")


def _epochs(h: pd.DataFrame) -> list[int]:
    return [int(e) for e in h["epoch"]]


def _layout(title: str, x_title: str, y_title: str, revision: str, **extra: Any) -> dict[str, Any]:
    layout = {
        "title": {"text": html(title)},  # titles name datasets and files: shown as text
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}},
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "height": 420,
        "hovermode": "x unified",
        "uirevision": revision,  # keeps the user's zoom across live redraws
    }
    layout.update(extra)
    # the legend below the plot, the title under plotly's toolbar: nothing overlaps at 800 px (issue 10)
    return chart_frame({"layout": layout})["layout"]


def _label_side(fraction: float) -> str:
    """Where a marker's label goes so that it stays inside the chart: to the right of a point near
    the left edge, to the left near the right edge, centred below it elsewhere."""
    if fraction < 0.15:
        return "bottom right"
    if fraction > 0.85:
        return "bottom left"
    return "bottom center"


def _baseline_traces(baselines: Mapping[str, float] | None, x_end: float, *, suffix: str = "") -> list[dict]:
    """Dashed horizontal lines from epoch 0 to ``x_end``, with their value in the legend."""
    traces = []
    for key, name, colour in BASELINE_LINES:
        value = (baselines or {}).get(key)
        if not _finite(value):
            continue
        traces.append({
            "type": "scatter", "x": [0, x_end], "y": [float(value), float(value)], "mode": "lines",
            "name": f"{name} {value:.4f}{suffix}", "line": {"color": colour, "dash": "dash", "width": 1.5},
            "hoverinfo": "skip",
        })
    return traces


def within_epoch_points(
    progress: Sequence[Mapping[str, float]] | None, max_points: int = 2_000
) -> tuple[list[float | None], list[float | None]]:
    """x (fractional epoch) and y (RMSE) of within-epoch progress, one segment per epoch.

    The within-epoch loss is a running mean that restarts every epoch, so the epochs
    are separated by a gap (None) instead of being joined by a misleading jump.
    Only the last ``max_points`` points are kept.
    """
    points = [p for p in (progress or []) if _finite(p.get("train_loss")) and p.get("total")]
    points = sorted(points, key=lambda p: (p["epoch"], p["done"]))[-max_points:]
    xs: list[float | None] = []
    ys: list[float | None] = []
    previous = None
    for p in points:
        if previous is not None and p["epoch"] != previous:
            xs.append(None)
            ys.append(None)
        previous = p["epoch"]
        xs.append(p["epoch"] - 1 + p["done"] / p["total"])
        ys.append(math.sqrt(p["train_loss"]) if p["train_loss"] >= 0 else None)
    return xs, ys


GAP_FILL = "rgba(214, 39, 40, 0.12)"
FLOOR_COLOUR = "#111111"
BEST_COLOUR = "#ff7f0e"


def best_epoch(history: pd.DataFrame | None) -> tuple[int, float] | None:
    """(epoch, test RMSE) of the epoch with the lowest test RMSE, None without any."""
    h = _clean(history)
    pairs = [(v, e) for v, e in zip(_values(h["test_rmse"]), _epochs(h)) if v is not None]
    if not pairs:
        return None
    value, epoch = min(pairs)
    return epoch, value


def tail_start(n_epochs: int) -> int:
    """First epoch of the "tail" view: the first fifth of the run (at least epoch 1) is left out."""
    return 1 + max(1, n_epochs // 5) if n_epochs >= 3 else 1


def learning_curve(
    history: pd.DataFrame | None,
    baselines: Mapping[str, float] | None = None,
    *,
    progress: Sequence[Mapping[str, float]] | None = None,
    epochs_planned: int | None = None,
    title: str = "Learning curve",
    log_y: bool = False,
    tail: bool = False,
    floor: float | None = None,
) -> Figure:
    """Train RMSE (sqrt of the train loss) and test RMSE per epoch, with the baselines.

    ``progress`` are within-epoch points (dicts with ``epoch``, ``done``, ``total``,
    ``train_loss``) collected while epochs are long; they are drawn at fractional
    epochs ``epoch - 1 + done/total`` as a thin dotted line, so a slow epoch shows
    movement before its end. The within-epoch loss is the running mean over the
    epoch so far, which already smooths the per-batch noise.

    Teaching marks: the train–test gap is shaded (trace "train–test gap"), the best test
    epoch is marked ("best test epoch"), ``floor`` (the planted noise of synthetic data:
    the RMSE no model can beat) is drawn as a line; ``log_y`` puts RMSE on a log axis and
    ``tail`` zooms to the epochs after the first fifth (the first epoch's ~3.1 of a
    tutorial from zero squashes everything else).
    """
    h = _clean(history)
    epochs = _epochs(h)
    x_end = max([epochs_planned or 0, *epochs, 1]) + 0.5
    train_y = _rmse_of_loss(h["train_loss"])
    test_y = _values(h["test_rmse"])
    data: list[dict] = []
    if epochs:
        # the gap: an invisible copy of the train curve, then the test curve filled down to it
        data.append({"type": "scatter", "x": epochs, "y": train_y, "mode": "lines", "name": "gap base",
                     "line": {"width": 0, "color": TRAIN_COLOUR}, "showlegend": False, "hoverinfo": "skip"})
        data.append({"type": "scatter", "x": epochs, "y": test_y, "mode": "lines", "name": "train–test gap",
                     "fill": "tonexty", "fillcolor": GAP_FILL, "line": {"width": 0, "color": TEST_COLOUR},
                     "hoverinfo": "skip"})
    data += [
        {"type": "scatter", "x": epochs, "y": train_y, "mode": "lines+markers",
         "name": "train (√ loss)", "line": {"color": TRAIN_COLOUR}, "marker": {"size": 5}},
        {"type": "scatter", "x": epochs, "y": test_y, "mode": "lines+markers",
         "name": "test RMSE", "line": {"color": TEST_COLOUR}, "marker": {"size": 5}},
    ]
    best = best_epoch(h)
    if best is not None:
        data.append({"type": "scatter", "x": [best[0]], "y": [best[1]], "mode": "markers+text",
                     "name": f"best test epoch {best[0]} ({best[1]:.4f})", "text": [f"best: epoch {best[0]}"],
                     "textposition": _label_side(best[0] / x_end), "cliponaxis": False,
                     "marker": {"symbol": "star", "size": 14, "color": BEST_COLOUR}, "hoverinfo": "x+y"})
    xs, ys = within_epoch_points(progress)
    if xs:
        data.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "name": "train, within epoch",
                     "connectgaps": False, "line": {"color": TRAIN_COLOUR, "dash": "dot", "width": 1}})
    data += _baseline_traces(baselines, x_end)
    if _finite(floor) and floor > 0:
        data.append({"type": "scatter", "x": [0, x_end], "y": [float(floor), float(floor)], "mode": "lines",
                     "name": f"planted noise floor {floor:.2f}", "line": {"color": FLOOR_COLOUR, "dash": "dot", "width": 2},
                     "hoverinfo": "skip"})
    layout = _layout(title, "epoch", "RMSE (log scale)" if log_y else "RMSE", "learning-curve")
    layout["xaxis"]["range"] = [0, x_end]
    if log_y:
        layout["yaxis"]["type"] = "log"
    if tail and epochs:
        start = tail_start(len(epochs))
        shown = [y for e, ys_ in ((e, (a, b)) for e, a, b in zip(epochs, train_y, test_y)) if e >= start
                 for y in ys_ if y is not None]
        shown += [float(v) for k, _, _ in BASELINE_LINES if _finite(v := (baselines or {}).get(k))]
        if _finite(floor):
            shown.append(float(floor))
        layout["xaxis"]["range"] = [start - 0.5, x_end]
        if shown:
            lo, hi = min(shown), max(shown)
            pad = max(0.01, 0.08 * (hi - lo))
            rng = [lo - pad, hi + pad]
            layout["yaxis"]["range"] = [math.log10(max(rng[0], 1e-6)), math.log10(rng[1])] if log_y else rng
        layout["yaxis"]["autorange"] = False
    return {"data": data, "layout": layout}


def outcome(rmse: float | None, baselines: Mapping[str, float] | None) -> str | None:
    """"worse than biases" / "worse than global mean" when a run's final test RMSE is at or
    above a baseline (global mean checked first: the plainer failure), else None."""
    if not _finite(rmse):
        return None
    b = baselines or {}
    if _finite(b.get("global_mean_rmse")) and rmse >= b["global_mean_rmse"]:
        return "worse than global mean"
    if _finite(b.get("baseline_rmse")) and rmse >= b["baseline_rmse"]:
        return "worse than biases"
    return None


def worse_advice(history: pd.DataFrame | None, train_config: Mapping[str, Any] | None) -> str:
    """Why a run may have ended worse than a baseline, read from its curve and settings."""
    h = _clean(history)
    t = dict(train_config or {})
    tips: list[str] = []
    best = best_epoch(h)
    train_y = [v for v in _rmse_of_loss(h["train_loss"]) if v is not None]
    test_y = [v for v in _values(h["test_rmse"]) if v is not None]
    if best is not None and test_y and best[0] < len(h) and test_y[-1] > best[1] + 0.005:
        tips.append(f"test error was lowest at epoch {best[0]} and rose after it while the train error fell: "
                    "overfitting; add L2 (e.g. 0.05) or stop earlier")
    elif train_y and test_y and test_y[-1] - train_y[-1] > 0.3:
        tips.append("train error is far below test error: the model memorises; add L2 or use fewer factors")
    if len(train_y) >= 2 and train_y[-1] > 0.98 * train_y[0]:
        tips.append("the train error barely moved: raise the learning rate or train more epochs")
    elif len(test_y) >= 2 and test_y[-1] < test_y[-2] - 0.002:
        tips.append("test error was still falling at the end: train more epochs")
    if not t.get("l2") and not t.get("weight_decay"):
        tips.append("there is no regularisation (L2 = 0)")
    if not tips:
        tips.append("try the tuned default on the same data for comparison (lr, L2 and epochs are the usual suspects)")
    return "; ".join(tips) + "."


def overlay(
    runs: Sequence[Mapping[str, Any]],
    *,
    metric: str = "test_rmse",
    title: str | None = None,
) -> Figure:
    """Several runs' curves on one chart.

    Each run is a mapping with ``label``, ``history`` (DataFrame) and optionally
    ``baselines``. ``metric`` is a history column; ``train_loss`` is drawn as its
    square root (RMSE) so it shares the axis with ``test_rmse``. For the RMSE metrics
    the baselines are drawn once per distinct value (runs on the same data and split
    share them).
    """
    data: list[dict] = []
    x_end = 1.0
    baseline_sets: dict[tuple, Mapping[str, float]] = {}
    for n, run in enumerate(runs):
        h = _clean(run.get("history"))
        epochs = _epochs(h)
        x_end = max([x_end, *epochs])
        if metric == "train_loss":
            ys = _rmse_of_loss(h["train_loss"])
        else:
            ys = _values(h[metric]) if metric in h else []
        data.append({
            "type": "scatter", "x": epochs, "y": ys, "mode": "lines+markers",
            "name": html(run.get("label", f"run {n + 1}")),  # a run label is user text (issue 11)
            "line": {"color": OVERLAY_COLOURS[n % len(OVERLAY_COLOURS)]}, "marker": {"size": 4},
        })
        base = run.get("baselines") or {}
        key = tuple(round(float(base[k]), 6) for k, _, _ in BASELINE_LINES if _finite(base.get(k)))
        if key:
            baseline_sets.setdefault(key, base)
    if metric in ("test_rmse", "train_loss"):
        several = len(baseline_sets) > 1
        for i, base in enumerate(baseline_sets.values()):
            data += _baseline_traces(base, x_end + 0.5, suffix=f" (data {i + 1})" if several else "")
    label = METRIC_LABELS.get(metric, metric)
    return {"data": data, "layout": _layout(title or label, "epoch", label, f"overlay-{metric}")}


def throughput(history: pd.DataFrame | None, *, title: str = "Throughput") -> Figure:
    """Training ratings per second, per epoch (evaluation time excluded)."""
    h = _clean(history)
    layout = _layout(title, "epoch", "ratings / second", "throughput", showlegend=False, height=260)
    return {
        "data": [{"type": "bar", "x": _epochs(h), "y": _values(h["examples_per_second"]), "name": "ratings / s",
                  "marker": {"color": TRAIN_COLOUR}}],
        "layout": layout,
    }


def trace(fig: Figure, name: str) -> dict | None:
    """The trace called ``name`` (exact, or the first whose name starts with it)."""
    traces = fig.get("data", [])
    return next((t for t in traces if t.get("name") == name), None) or next(
        (t for t in traces if str(t.get("name", "")).startswith(name)), None)


def point_count(fig: Figure, name: str = "test RMSE") -> int:
    """How many non-empty points the named trace has (tests and the live view use it)."""
    t = trace(fig, name)
    return 0 if t is None else sum(1 for y in t.get("y", ()) if y is not None)
