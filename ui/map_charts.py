"""Plotly figures for the 2D map and the new-user pages, and the title search they share.

Pure builders: arrays and DataFrames in, ``go.Figure`` out; no ``st.*`` here, so the pages
decide where a figure goes and tests can read the traces directly.

The static map uses WebGL (``go.Scattergl``) so that every item of ml-25m (~59,000) draws;
the epoch animation uses SVG ``go.Scatter`` because plotly.js does not animate WebGL
traces reliably (plotly.js issues 5688, 6251, 6897), and it has at most a few thousand points.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from ui.data_charts import log_ticks
from ui.text import html
from ui.text import short as text_short

PALETTE = qualitative.Dark24 + qualitative.Light24
FOCUS_COLOUR = "#d62728"
NEIGHBOUR_COLOUR = "#111111"
YOU_COLOUR = "#d62728"
USERS_COLOUR = "#1f77b4"
DIM_OPACITY = 0.25  # the other points when a movie is highlighted
MAX_CATEGORIES = 24  # more categories than this are merged into "other"

# What a map point can be coloured by: column -> (label, kind). kind: "category", "log" or "linear".
ITEM_COLOURS = {
    "genre": ("first genre", "category"),
    "mean_rating": ("mean rating", "linear"),
    "ratings": ("popularity (ratings)", "log"),
    "bias": ("movie bias", "diverging"),
}
USER_COLOURS = {
    "mean_rating": ("mean rating", "linear"),
    "ratings": ("ratings given", "log"),
    "bias": ("user bias", "diverging"),
    "gender": ("gender", "category"),
    "age_group": ("age band", "category"),
    "occupation": ("occupation", "category"),
}

_MARGIN = dict(l=10, r=10, t=50, b=10)


# ----------------------------------------------------------------------------- helpers
def first_genre(genres: Sequence[str]) -> np.ndarray:
    """The first ``|``-separated genre of each entry ("(none)" when empty)."""
    out = pd.Series(list(genres), dtype=object).fillna("").astype(str).str.split("|").str[0].str.strip()
    return out.replace({"": "(none)", "(no genres listed)": "(none)"}).to_numpy(dtype=object)


def point_sizes(counts: np.ndarray, small: float = 3.0, large: float = 14.0) -> np.ndarray:
    """Marker sizes growing with the square root of ``counts`` (area ~ popularity)."""
    c = np.sqrt(np.maximum(np.asarray(counts, dtype=np.float64), 0.0))
    top = c.max() if len(c) else 0.0
    if top <= 0:
        return np.full(len(c), small, dtype=np.float32)
    return (small + (large - small) * c / top).astype(np.float32)


def _short(text: str, n: int = 48) -> str:
    """A (user-supplied) name cut to ``n`` characters and HTML-escaped: plotly text (issue 11)."""
    return text_short(text, n)


def _fmt_many(values: Sequence[float], spec: str) -> list[str]:
    """``format(v, spec)`` for each value, "–" for NaN (vectorised enough for 60,000 rows)."""
    v = np.asarray(values, dtype=np.float64)
    return [format(x, spec) if x == x else "–" for x in v.tolist()]


def item_hover(table: pd.DataFrame) -> list[str]:
    """Hover text of a movie point: title, genres, ratings, mean rating, bias."""
    titles = [_short(t, 60) for t in table["title"].astype(str).tolist()]
    genres = [html(g) for g in table["genres"].fillna("").astype(str).replace("", "–").tolist()]
    counts = [f"{int(n):,}" for n in table["ratings"].tolist()]
    return [f"<b>{t}</b><br>{g}<br>{n} ratings · mean {m} · bias {b}"
            for t, g, n, m, b in zip(titles, genres, counts, _fmt_many(table["mean_rating"], ".2f"),
                                     _fmt_many(table["bias"], "+.3f"))]


def user_hover(table: pd.DataFrame) -> list[str]:
    """Hover text of a user point: id, demographics when known, ratings, mean rating, bias."""
    demo = [[html(v) for v in table[c].astype(str).tolist()] for c in ("age", "gender", "occupation")
            if c in table.columns]
    extra = ["<br>" + " · ".join(parts) for parts in zip(*demo)] if demo else [""] * len(table)
    counts = [f"{int(n):,}" for n in table["ratings"].tolist()]
    return [f"<b>user {u}</b>{e}<br>{n} ratings · mean {m} · bias {b}"
            for u, e, n, m, b in zip(table["user"].tolist(), extra, counts, _fmt_many(table["mean_rating"], ".2f"),
                                     _fmt_many(table["bias"], "+.3f"))]


def find_titles(table: pd.DataFrame, query: str, limit: int = 50) -> pd.DataFrame:
    """Rows of ``table`` (columns ``item``, ``title``, ``ratings``) matching ``query``:
    case-insensitive; titles that start with it first, then titles containing it, each
    most-rated first; a query that is a raw id also matches that id."""
    q = (query or "").strip().lower()
    if not q:
        return table.iloc[:0]
    titles = table["title"].fillna("").astype(str).str.lower()
    # "toy story" should also match "Toy Story (1995)" and "Story of Us, The" -> only the title text.
    starts = titles.str.startswith(q)
    contains = titles.str.contains(re.escape(q), regex=True)
    by_id = table["item"].astype(str) == q
    rank = np.where(by_id, 0, np.where(starts, 1, np.where(contains, 2, 3)))
    hits = table.assign(_rank=rank)[rank < 3]
    return hits.sort_values(["_rank", "ratings", "title"], ascending=[True, False, True], kind="stable") \
        .drop(columns="_rank").head(limit)


def _categories(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Categories by frequency (the rarest merged into "other" past MAX_CATEGORIES) and
    each point's category."""
    labels = pd.Series(values, dtype=object).fillna("(none)").astype(str)
    order = labels.value_counts(sort=True)
    if len(order) > MAX_CATEGORIES:
        keep = set(order.index[: MAX_CATEGORIES - 1])
        labels = labels.where(labels.isin(keep), "other")
        order = labels.value_counts(sort=True)
    cats = [c for c in order.index if c != "other"] + (["other"] if "other" in order.index else [])
    return cats, labels.to_numpy(dtype=object)


def _continuous_marker(values: np.ndarray, kind: str, label: str) -> dict:
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    marker: dict = dict(colorscale="Viridis", showscale=True,
                        colorbar=dict(title=dict(text=label, side="right"), thickness=12, len=0.8))
    if kind == "log":
        ticks = log_ticks(finite if len(finite) else np.array([1.0]))
        marker.update(color=np.log10(np.maximum(v, 1.0)), colorscale="Viridis")
        marker["colorbar"].update(tickvals=np.log10(ticks).tolist(), ticktext=[f"{t:,}" for t in ticks])
    elif kind == "diverging":
        span = float(np.nanpercentile(np.abs(finite), 98)) if len(finite) else 1.0
        marker.update(color=np.clip(np.nan_to_num(v), -span, span), colorscale="RdBu_r", cmid=0.0,
                      cmin=-span or -1.0, cmax=span or 1.0)
    else:
        marker.update(color=np.nan_to_num(v, nan=float(np.nanmean(finite)) if len(finite) else 0.0))
    return marker


def _groups(points: pd.DataFrame, colour: str, kind: str, label: str) -> list[tuple[str, np.ndarray, dict]]:
    """(legend name, row positions, marker) for each trace the colouring needs."""
    sizes = points["size"].to_numpy(dtype=np.float32)
    if kind == "category":
        cats, labels = _categories(points[colour].to_numpy(dtype=object))
        out = []
        for n, cat in enumerate(cats):
            rows = np.flatnonzero(labels == cat)
            colour_n = "#b0b0b0" if cat in ("other", "(none)") else PALETTE[n % len(PALETTE)]
            out.append((cat, rows, dict(color=colour_n, size=sizes[rows])))
        return out
    marker = _continuous_marker(points[colour].to_numpy(), kind, label)
    marker["size"] = sizes
    return [(label, np.arange(len(points)), marker)]


def _ranges(coords: Sequence[np.ndarray], robust: bool = False) -> tuple[list[float], list[float]]:
    """Axis ranges holding every point (``robust``: the central 99% of them, so a few far
    outliers do not shrink the picture), with a margin."""
    allc = np.vstack([np.asarray(c, dtype=np.float64) for c in coords if len(c)]) if len(coords) else np.zeros((1, 2))
    if robust and len(allc) > 200:
        lo, hi = np.percentile(allc, 0.5, axis=0), np.percentile(allc, 99.5, axis=0)
    else:
        lo, hi = allc.min(axis=0), allc.max(axis=0)
    pad = np.maximum((hi - lo) * (0.12 if robust else 0.05), 1e-3)
    return [float(lo[0] - pad[0]), float(hi[0] + pad[0])], [float(lo[1] - pad[1]), float(hi[1] + pad[1])]


def _layout(fig: go.Figure, title: str, height: int, axes: tuple[str, str], legend: bool) -> None:
    fig.update_layout(
        title=dict(text=title), margin=_MARGIN, height=height, showlegend=legend, hovermode="closest",
        legend=dict(itemsizing="constant", title=None), plot_bgcolor="white",
    )
    fig.update_xaxes(title_text=axes[0], showgrid=True, gridcolor="#eee", zeroline=False)
    fig.update_yaxes(title_text=axes[1], showgrid=True, gridcolor="#eee", zeroline=False)


# ----------------------------------------------------------------------------- the 2D map
def map_figure(points: pd.DataFrame, colour: str, *, colours: dict[str, tuple[str, str]] = ITEM_COLOURS,
               title: str = "", axes: tuple[str, str] = ("", ""), neighbours: pd.DataFrame | None = None,
               focus: pd.DataFrame | None = None, height: int = 640, legend: bool = True) -> go.Figure:
    """Every row of ``points`` (columns ``x``, ``y``, ``hover``, ``size`` and ``colour``)
    as a WebGL marker, coloured by ``colour`` (see :data:`ITEM_COLOURS`/:data:`USER_COLOURS`).

    ``neighbours`` (``x``, ``y``, ``label``, optional ``rank``) are ringed and numbered
    by rank, and ``focus`` (one row) gets a red star and its title on top; the other
    points then fade so the highlight stands out. ``legend=False`` hides the legend and
    the colour bar (for small side-by-side maps).
    """
    label, kind = colours[colour]
    highlight = (neighbours is not None and len(neighbours)) or (focus is not None and len(focus))
    fig = go.Figure()
    for name, rows, marker in _groups(points, colour, kind, label):
        marker = dict(marker, opacity=DIM_OPACITY if highlight else 0.75, line=dict(width=0))
        fig.add_trace(go.Scattergl(
            x=points["x"].to_numpy()[rows], y=points["y"].to_numpy()[rows], mode="markers", name=html(name),
            marker=marker, text=points["hover"].to_numpy(dtype=object)[rows].tolist(),
            hovertemplate="%{text}<extra></extra>", showlegend=kind == "category",
        ))
    # Highlights are SVG traces: plotly draws them above the WebGL layer, with text labels.
    if neighbours is not None and len(neighbours):
        fig.add_trace(go.Scatter(
            x=neighbours["x"], y=neighbours["y"], mode="markers+text", name="nearest neighbours (rank)",
            # Ranks, not titles: ten titles around one spot overlap into an unreadable blot.
            text=[str(r) for r in (neighbours["rank"] if "rank" in neighbours else range(1, len(neighbours) + 1))],
            textposition="top right", textfont=dict(size=12, color=NEIGHBOUR_COLOUR),
            marker=dict(size=12, color="rgba(0,0,0,0)", line=dict(width=2, color=NEIGHBOUR_COLOUR)),
            hovertext=neighbours["hover"] if "hover" in neighbours else neighbours["label"].map(html),
            hovertemplate="%{hovertext}<extra>neighbour</extra>",
        ))
    if focus is not None and len(focus):
        fig.add_trace(go.Scatter(
            x=focus["x"], y=focus["y"], mode="markers+text", name="searched",
            text=[_short(t, 40) for t in focus["label"]], textposition="bottom center",
            textfont=dict(size=13, color=FOCUS_COLOUR),
            marker=dict(size=20, symbol="star", color=FOCUS_COLOUR, line=dict(width=1, color="white")),
            hovertext=focus["hover"] if "hover" in focus else focus["label"].map(html),
            hovertemplate="%{hovertext}<extra>searched</extra>",
        ))
    _layout(fig, title, height, axes, legend=legend and (kind == "category" or bool(highlight)))
    if not legend:
        fig.update_traces(marker_showscale=False, selector=dict(type="scattergl"))
    return fig


# ----------------------------------------------------------------------------- watch it learn
BUTTONS_PAD_PX = 55  # from the plot's bottom edge to Play/Pause: room for the x axis' ticks and title
SLIDER_PAD_PX = BUTTONS_PAD_PX + 40  # ... and to the epoch slider, under the buttons


def animation_figure(frames: Sequence[np.ndarray], points: pd.DataFrame, colour: str, *,
                     colours: dict[str, tuple[str, str]] = ITEM_COLOURS, epochs: Sequence[int] | None = None,
                     title: str = "", height: int = 620, frame_ms: int = 700) -> go.Figure:
    """One plotly frame per kept snapshot (``frames[e]``: [n, 2] coordinates of the rows of
    ``points``), labelled with ``epochs`` (the epoch each snapshot shows; default 1, 2, ...),
    an epoch slider and Play/Pause buttons. The axes are fixed over all frames, and hold
    every point of every frame, so that only the points move and none leaves the picture."""
    label, kind = colours[colour]
    epochs = list(epochs) if epochs is not None else list(range(1, len(frames) + 1))
    groups = _groups(points, colour, kind, label)
    hover = points["hover"].to_numpy(dtype=object)
    fig = go.Figure()
    first = np.asarray(frames[0])
    for name, rows, marker in groups:
        fig.add_trace(go.Scatter(
            x=first[rows, 0], y=first[rows, 1], mode="markers", name=html(name),
            marker=dict(marker, opacity=0.75, line=dict(width=0)), text=hover[rows].tolist(),
            hovertemplate="%{text}<extra></extra>", showlegend=kind == "category",
        ))
    fig.frames = [
        go.Frame(name=str(ep), traces=list(range(len(groups))),
                 data=[go.Scatter(x=np.asarray(f)[rows, 0], y=np.asarray(f)[rows, 1]) for _, rows, _ in groups])
        for ep, f in zip(epochs, frames)
    ]
    step_args = dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=250))
    fig.update_layout(
        # Play/Pause under the x axis on the left, the epoch slider below them: the space above the
        # plot is the title's (ui.layout.chart_frame puts it there, clear of plotly's toolbar).
        updatemenus=[dict(
            type="buttons", direction="left", x=0.0, y=0.0, xanchor="left", yanchor="top", showactive=False,
            pad=dict(t=BUTTONS_PAD_PX, r=6),
            buttons=[
                dict(label="▶ Play", method="animate",
                     args=[None, dict(frame=dict(duration=frame_ms, redraw=False), fromcurrent=True,
                                      transition=dict(duration=int(frame_ms * 0.6)), mode="immediate")]),
                dict(label="❚❚ Pause", method="animate",
                     args=[[None], dict(frame=dict(duration=0, redraw=False), transition=dict(duration=0),
                                        mode="immediate")]),
            ],
        )],
        sliders=[dict(
            active=0, x=0.0, len=1.0, y=0.0, yanchor="top", pad=dict(t=SLIDER_PAD_PX, b=0),
            currentvalue=dict(prefix="epoch ", visible=True, xanchor="right", font=dict(size=14)),
            steps=[dict(label=str(ep), method="animate", args=[[str(ep)], step_args]) for ep in epochs],
        )],
    )
    xr, yr = _ranges(frames)
    _layout(fig, title, height, ("PC1 (aligned)", "PC2 (aligned)"), legend=kind == "category")
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=SLIDER_PAD_PX + 90))
    fig.update_xaxes(range=xr, autorange=False)
    fig.update_yaxes(range=yr, autorange=False)
    return fig


# ----------------------------------------------------------------------------- planted vs learned
def recovery_figure(curve: pd.DataFrame, *, baseline: float | None = None, height: int = 320) -> go.Figure:
    """Factor recovery (0..1) of items and users over epochs; ``baseline``: what random
    directions would score."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=curve["epoch"], y=curve["items"], mode="lines+markers", name="movie factors",
                             line=dict(color="#ff7f0e")))
    fig.add_trace(go.Scatter(x=curve["epoch"], y=curve["users"], mode="lines+markers", name="user factors",
                             line=dict(color="#1f77b4")))
    if baseline is not None:
        fig.add_hline(y=baseline, line=dict(dash="dot", color="#888"),
                      annotation_text=f"random directions ≈ {baseline:.2f}", annotation_position="bottom right")
    fig.update_layout(title=dict(text="Recovery of the planted factors, per epoch"), margin=_MARGIN, height=height,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                      hovermode="x unified")
    fig.update_xaxes(title_text="epoch", dtick=1 if len(curve) <= 20 else None)
    fig.update_yaxes(title_text="recovery (1 = planted subspace found)", range=[0, 1.02])
    return fig


# ----------------------------------------------------------------------------- new user
def users_map_with_you(coords: np.ndarray, hover: Sequence[str], you: np.ndarray, *, title: str = "",
                       axes: tuple[str, str] = ("PC1", "PC2"), you_label: str = "you",
                       height: int = 520) -> go.Figure:
    """Every trained user as a small WebGL dot and the folded-in visitor (``you``: [2])
    as a red star, on the users' own PCA axes."""
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=coords[:, 0], y=coords[:, 1], mode="markers", name="trained users",
        marker=dict(size=5, color=USERS_COLOUR, opacity=0.45, line=dict(width=0)), text=list(hover),
        hovertemplate="%{text}<extra></extra>",
    ))
    you = np.asarray(you, dtype=np.float64).reshape(-1)
    fig.add_trace(go.Scatter(
        x=[you[0]], y=[you[1]], mode="markers+text", name=you_label, text=[you_label], textposition="top center",
        textfont=dict(size=14, color=YOU_COLOUR),
        marker=dict(size=22, symbol="star", color=YOU_COLOUR, line=dict(width=1, color="white")),
        hovertemplate=f"{you_label}: (%{{x:.3f}}, %{{y:.3f}})<extra></extra>",
    ))
    _layout(fig, title, height, axes, legend=True)
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    return fig
