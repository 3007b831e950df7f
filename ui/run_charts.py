"""Plotly figures for training runs: learning curves, overlays, throughput.

Pure builders: DataFrames and dicts in, ``go.Figure`` out. No ``st.*`` here, so the
pages decide where a figure goes and tests can inspect the traces directly.

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
import plotly.graph_objects as go

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

_LAYOUT = dict(
    margin=dict(l=10, r=10, t=40, b=10),
    height=340,
    legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0.0),
    hovermode="x unified",
)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _rmse_of_loss(losses: Iterable[float]) -> list[float | None]:
    """sqrt of a mean squared error; None (a gap in the line) for NaN/inf/negative."""
    return [math.sqrt(v) if _finite(v) and v >= 0 else None for v in losses]


def _clean(history: pd.DataFrame | None) -> pd.DataFrame:
    if history is None or len(history) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in HISTORY_COLUMNS})
    return history.sort_values("epoch")


def _add_baselines(fig: go.Figure, baselines: Mapping[str, float] | None) -> None:
    """Horizontal dashed lines, drawn as traces so they appear in the legend."""
    for key, name, colour in BASELINE_LINES:
        value = (baselines or {}).get(key)
        if not _finite(value):
            continue
        fig.add_hline(y=value, line=dict(color=colour, dash="dash", width=1.5))
        # An invisible-in-the-plot trace that carries the legend entry and hover value.
        fig.add_trace(go.Scatter(
            x=[None], y=[None], mode="lines", name=f"{name} {value:.4f}",
            line=dict(color=colour, dash="dash", width=1.5), hoverinfo="skip",
        ))


def learning_curve(
    history: pd.DataFrame | None,
    baselines: Mapping[str, float] | None = None,
    *,
    progress: Sequence[Mapping[str, float]] | None = None,
    epochs_planned: int | None = None,
    title: str = "Learning curve",
) -> go.Figure:
    """Train RMSE (sqrt of the train loss) and test RMSE per epoch, with the baselines.

    ``progress`` are within-epoch points (dicts with ``epoch``, ``done``, ``total``,
    ``train_loss``) collected while epochs are long; they are drawn at fractional
    epochs ``epoch - 1 + done/total`` as a thin dotted line, so a slow epoch shows
    movement before its end. The within-epoch loss is the running mean over the
    epoch so far, which already smooths the per-batch noise.
    """
    h = _clean(history)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=h["epoch"].tolist(), y=_rmse_of_loss(h["train_loss"]), mode="lines+markers",
        name="train (√ loss)", line=dict(color=TRAIN_COLOUR), marker=dict(size=5),
    ))
    fig.add_trace(go.Scatter(
        x=h["epoch"].tolist(), y=[v if _finite(v) else None for v in h["test_rmse"]], mode="lines+markers",
        name="test RMSE", line=dict(color=TEST_COLOUR), marker=dict(size=5),
    ))
    xs, ys = within_epoch_points(progress)
    if xs:
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name="train, within epoch", connectgaps=False,
            line=dict(color=TRAIN_COLOUR, dash="dot", width=1),
        ))
    _add_baselines(fig, baselines)
    xmax = max([epochs_planned or 0, *(h["epoch"].tolist() or [0])])
    fig.update_layout(
        title=title, xaxis_title="epoch", yaxis_title="RMSE", uirevision="learning-curve", **_LAYOUT,
    )
    if xmax:
        fig.update_xaxes(range=[0, xmax + 0.5])
    return fig


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


def overlay(
    runs: Sequence[Mapping[str, Any]],
    *,
    metric: str = "test_rmse",
    title: str | None = None,
) -> go.Figure:
    """Several runs' curves on one chart.

    Each run is a mapping with ``label``, ``history`` (DataFrame) and optionally
    ``baselines``. ``metric`` is a history column; ``train_loss`` is drawn as its
    square root (RMSE) so it shares the axis with ``test_rmse``. Baselines are drawn
    once per distinct value (runs on the same data and split share them).
    """
    fig = go.Figure()
    seen_baselines: set[tuple[str, float]] = set()
    for n, run in enumerate(runs):
        h = _clean(run.get("history"))
        colour = OVERLAY_COLOURS[n % len(OVERLAY_COLOURS)]
        if metric == "train_loss":
            ys = _rmse_of_loss(h["train_loss"])
        else:
            ys = [v if _finite(v) else None for v in h[metric]] if metric in h else []
        fig.add_trace(go.Scatter(
            x=h["epoch"].tolist(), y=ys, mode="lines+markers", name=str(run.get("label", f"run {n + 1}")),
            line=dict(color=colour), marker=dict(size=4),
        ))
        for key, name, base_colour in BASELINE_LINES:
            value = (run.get("baselines") or {}).get(key)
            if _finite(value) and (key, round(value, 6)) not in seen_baselines and metric in ("test_rmse", "train_loss"):
                seen_baselines.add((key, round(value, 6)))
                fig.add_hline(
                    y=value, line=dict(color=base_colour, dash="dash", width=1),
                    annotation_text=f"{name} {value:.4f}", annotation_position="top right",
                )
    label = {"test_rmse": "test RMSE", "train_loss": "train RMSE (√ loss)", "test_mae": "test MAE",
             "examples_per_second": "ratings / second"}.get(metric, metric)
    fig.update_layout(title=title or label, xaxis_title="epoch", yaxis_title=label,
                      uirevision=f"overlay-{metric}", **_LAYOUT)
    return fig


def throughput(history: pd.DataFrame | None, *, title: str = "Throughput") -> go.Figure:
    """Training ratings per second, per epoch (evaluation time excluded)."""
    h = _clean(history)
    fig = go.Figure(go.Bar(
        x=h["epoch"].tolist(), y=[v if _finite(v) else None for v in h["examples_per_second"]],
        name="ratings / s", marker_color=TRAIN_COLOUR,
    ))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="ratings / second",
                      uirevision="throughput", showlegend=False,
                      **{k: v for k, v in _LAYOUT.items() if k not in ("legend",)})
    fig.update_layout(height=260)
    return fig


def point_count(fig: go.Figure, name: str = "test RMSE") -> int:
    """How many non-empty points the named trace has (tests and the live view use it)."""
    for trace in fig.data:
        if trace.name == name:
            return sum(1 for y in (trace.y or ()) if y is not None)
    return 0
