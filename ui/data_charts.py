"""Plotly figures for the data page. Pure builders: arrays in, ``go.Figure`` out (no Streamlit).

The inputs are the plain arrays of :func:`ui.datasets.compute_stats`, so the figures can be
built (and tested) without loading a dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from ui.datasets import human_bytes
from ui.layout import chart_frame

_MARGIN = dict(l=10, r=10, t=50, b=10)
_HEIGHT = 320


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title=dict(text=title), xaxis_title=x, yaxis_title=y, margin=_MARGIN, height=_HEIGHT,
        showlegend=False, bargap=0.15,
    )
    return chart_frame(fig)  # titles clear of plotly's toolbar, axes sized to their labels (issue 10)


def rating_histogram(hist: dict[str, Any], mean: float | None = None) -> go.Figure:
    """Bars of how many ratings have each value (or fall in each bin for continuous ones)."""
    x, count = np.asarray(hist["x"]), np.asarray(hist["count"])
    total = max(1, int(count.sum()))
    fig = go.Figure(
        go.Bar(
            x=x, y=count, width=hist.get("width"),
            customdata=100.0 * count / total,
            hovertemplate="rating %{x}<br>%{y:,} ratings (%{customdata:.1f}%)<extra></extra>",
        )
    )
    title = "How often each rating is given"
    if mean is not None and np.isfinite(mean):
        fig.add_vline(x=mean, line_dash="dash", line_color="#444")
        title = f"Each rating's count (dashed: mean {mean:.2f})"
    what = "rating" if hist.get("discrete", True) else "rating (40 bins: the ratings are continuous)"
    fig = _layout(fig, title, what, "ratings")
    if hist.get("discrete", True):
        fig.update_xaxes(tickmode="array", tickvals=x)
    return fig


def long_tail(curve: dict[str, Any], what: str, *, log_y: bool = True) -> go.Figure:
    """Ratings per item (or per user), sorted from most to least: the long tail.

    ``curve`` holds ``rank`` (1 = most ratings) and ``count``; ``what`` is "item", "movie"
    or "user".
    """
    rank, count = np.asarray(curve["rank"]), np.asarray(curve["count"])
    fig = go.Figure(
        go.Scatter(
            x=rank, y=count, mode="lines", fill="tozeroy", line=dict(width=2),
            hovertemplate=f"{what} #%{{x:,}}<br>%{{y:,}} ratings<extra></extra>",
        )
    )
    fig = _layout(fig, f"Ratings per {what}, most-rated first", f"{what}s ranked by ratings",
                  "ratings" + (" (log scale)" if log_y else ""))
    if log_y:
        fig.update_yaxes(type="log", tickvals=log_ticks(count), tickformat=",")
    return fig


def log_ticks(values: np.ndarray, max_ticks: int = 8) -> list[int]:
    """Readable log-axis ticks (1, 2, 5, 10, 20, 50, ...; powers of ten only when there are
    many) covering ``values``, instead of plotly's crowded minor digits."""
    values = np.asarray(values)
    positive = values[values > 0]
    if len(positive) == 0:
        return [1]
    lo, hi = float(positive.min()), float(positive.max())
    top = int(np.ceil(np.log10(hi))) + 1
    ticks = [m * 10**e for e in range(top) for m in (1, 2, 5) if lo / 1.5 <= m * 10**e <= hi * 1.5]
    if len(ticks) > max_ticks:
        ticks = [10**e for e in range(top) if lo / 10 < 10**e <= hi * 10]
    return ticks


def memory_bars(dense_bytes: int, sparse_bytes: int) -> go.Figure:
    """Dense float64 matrix versus the sparse arrays actually kept, on a linear axis."""
    labels = ["every cell", "only the ratings"]
    values = [max(1, int(dense_bytes)), max(1, int(sparse_bytes))]
    fig = go.Figure(
        go.Bar(
            y=labels, x=values, orientation="h", text=[human_bytes(v) for v in values],
            textposition="outside", cliponaxis=False, marker_color=["#d62728", "#2ca02c"],
            hovertemplate="%{y}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(text="Memory needed"), margin=dict(_MARGIN, r=70),
        height=220, showlegend=False, xaxis_title="memory",
    )
    chart_frame(fig)
    # A linear axis on purpose: the sliver of the sparse bar is the point.
    fig.update_xaxes(tickformat="~s", ticksuffix="B", range=[0, values[0] * 1.02] if values[0] >= values[1] else None)
    fig.update_yaxes(autorange="reversed")
    return fig
