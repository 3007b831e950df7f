"""Plotly figures for the inspection pages: embeddings & biases, one user, one movie.

Pure builders: DataFrames and arrays in (from :mod:`mfcore.inspect.views`), ``go.Figure``
out. No ``st.*`` here, so the pages decide where a figure goes and tests can read the
traces directly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.data_charts import log_ticks
from ui.text import html
from ui.text import short as text_short

# One colour per role, the same on every inspection page.
USER_COLOUR = "#1f77b4"
ITEM_COLOUR = "#ff7f0e"
TRAIN_COLOUR = "#1f77b4"
TEST_COLOUR = "#d62728"
OTHER_COLOUR = "#7f7f7f"
PREDICTED_COLOUR = "#1f77b4"
ACTUAL_COLOUR = "#2ca02c"
UP_COLOUR = "#2ca02c"
DOWN_COLOUR = "#d62728"
TOTAL_COLOUR = "#1f3b73"
HEATMAP_SCALE = "RdBu_r"  # red positive, blue negative, white at zero

_MARGIN = dict(l=10, r=10, t=50, b=10)


def _layout(fig: go.Figure, title: str, *, height: int = 340, x: str | None = None, y: str | None = None,
            legend: bool = False) -> go.Figure:
    fig.update_layout(
        title=dict(text=title), margin=_MARGIN, height=height, showlegend=legend,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
    )
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    return fig


def _short(text: str, n: int = 38) -> str:
    """A (user-supplied) name cut to ``n`` characters and HTML-escaped: plotly text (issue 11)."""
    return text_short(text, n)


def unique_labels(labels: Sequence[str], ids: Sequence[object]) -> list[str]:
    """Labels made unique (a categorical plotly axis merges equal ones) by adding the id
    to those that repeat."""
    labels = [str(x) for x in labels]
    seen = pd.Series(labels).duplicated(keep=False).to_numpy()
    return [f"{lab} [{i}]" if dup else lab for lab, i, dup in zip(labels, ids, seen)]


# ----------------------------------------------------------------------------- embeddings page


def factor_heatmap(values: np.ndarray, labels: Sequence[str], title: str, *, groups: np.ndarray | None = None,
                   what: str = "row", height: int = 520) -> go.Figure:
    """Rows x factors as a heatmap (red positive, blue negative, white zero).

    ``labels`` name the rows (shown on hover, top to bottom as given); the colour range
    is symmetric and stops at the 99th percentile of |value|, so a few extreme entries
    do not wash the rest out. ``groups`` (cluster of each row, in order) draws a line
    between consecutive groups.
    """
    z = np.asarray(values, dtype=np.float64)
    k = z.shape[1] if z.ndim == 2 else 0
    finite = np.abs(z[np.isfinite(z)])
    top = float(np.percentile(finite, 99)) if finite.size else 1.0
    top = top if top > 0 else 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(k)), y=[html(lab) for lab in labels], colorscale=HEATMAP_SCALE, zmid=0.0, zmin=-top, zmax=top,
        colorbar=dict(thickness=12, title=dict(text="value", side="right")),
        hovertemplate=f"%{{y}}<br>factor %{{x}}: %{{z:.3f}}<extra></extra>",
    ))
    if groups is not None and len(groups) > 1:
        # One layout update for all cluster borders (add_hline per line is slow).
        fig.update_layout(shapes=[
            dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=b + 0.5, y1=b + 0.5,
                 line=dict(color="black", width=1))
            for b in np.flatnonzero(np.diff(np.asarray(groups)) != 0)
        ])
    _layout(fig, title, height=height, x="factor", y=f"{what}s ({len(z):,})")
    # No tick marks or labels for hundreds of rows: the row names are on hover.
    fig.update_yaxes(autorange="reversed", showticklabels=False, ticks="", showgrid=False, type="category")
    fig.update_xaxes(dtick=1 if k <= 16 else (4 if k <= 64 else 16), type="linear")
    return fig


def factor_share(spread: pd.DataFrame) -> go.Figure:
    """Bars: each factor's share of the variance of the dot products, with the user and item
    standard deviations on hover."""
    fig = go.Figure(go.Bar(
        x=spread["factor"], y=100.0 * spread["share"], marker_color="#6a51a3",
        customdata=np.c_[spread["user_std"], spread["item_std"]],
        hovertemplate=("factor %{x}: %{y:.1f}% of the variance<br>std over users %{customdata[0]:.3f}, "
                       "over movies %{customdata[1]:.3f}<extra></extra>"),
    ))
    return _layout(fig, "How much each factor varies: var(users) × var(items), as a share of the sum",
                   height=280, x="factor", y="% of the variance")


def factor_histograms(hist: pd.DataFrame, *, item_word: str = "movies", columns: int = 4) -> go.Figure:
    """Small multiples: per chosen factor, the distribution of its user values and its item
    values (percent of each side), on shared bins (:func:`mfcore.inspect.views.factor_histograms`)."""
    factors = list(dict.fromkeys(hist["factor"].tolist()))
    if not factors:
        return _layout(go.Figure(), "No factor chosen", height=200)
    rows = math.ceil(len(factors) / columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[f"factor {f}" for f in factors],
                        horizontal_spacing=0.04, vertical_spacing=0.12 if rows > 1 else 0.2)
    for n, f in enumerate(factors):
        r, c = n // columns + 1, n % columns + 1
        for side, colour, name in (("users", USER_COLOUR, "users"), ("items", ITEM_COLOUR, item_word)):
            part = hist[(hist["factor"] == f) & (hist["side"] == side)]
            fig.add_trace(go.Bar(
                x=(part["left"] + part["right"]) / 2, y=part["percent"], width=(part["right"] - part["left"]),
                name=name, legendgroup=side, showlegend=n == 0, marker_color=colour, opacity=0.6,
                hovertemplate=f"{name}<br>value %{{x:.3f}}: %{{y:.1f}}%<extra></extra>",
            ), row=r, col=c)
    fig.update_layout(barmode="overlay", bargap=0)
    fig.update_annotations(font_size=12)
    return _layout(fig, f"Factor values: users and {item_word} (percent of each)", height=120 + 190 * rows,
                   legend=True)


def norm_vs_popularity(table: pd.DataFrame, what: str, *, label: str = "title", colour: str = ITEM_COLOUR,
                       max_points: int = 20_000, seed: int = 0) -> go.Figure:
    """Scatter: vector length (L2 norm) against the number of ratings, log x.

    Rows without ratings cannot sit on a log axis and are left out (the title says how
    many); more than ``max_points`` rows are drawn as a seeded random sample (the title
    says so), which keeps ml-25m's 162k users light in the browser.
    """
    rated = table[table["ratings"] > 0]
    left_out = len(table) - len(rated)
    sampled = len(rated) > max_points
    if sampled:
        keep = np.sort(np.random.default_rng(seed).choice(len(rated), size=max_points, replace=False))
        total, rated = len(rated), rated.iloc[keep]
    hover_label = rated[label].astype(str).map(_short) if label in rated else rated.index.astype(str)
    # WebGL for thousands of points (one canvas, not one SVG node per point), SVG for few.
    trace = go.Scattergl if len(rated) > 1000 else go.Scatter
    fig = go.Figure(trace(
        x=rated["ratings"], y=rated["norm"], mode="markers",
        marker=dict(size=5, color=colour, opacity=0.55),
        customdata=np.c_[hover_label, rated["bias"]],
        hovertemplate="%{customdata[0]}<br>%{x:,} ratings<br>norm %{y:.3f}<br>bias %{customdata[1]:.3f}<extra></extra>",
    ))
    title = f"{what.capitalize()}: vector length against ratings"
    notes = ([f"a random {max_points:,} of {total:,}"] if sampled else []) + (
        [f"{left_out:,} without ratings left out"] if left_out else [])
    if notes:
        title += f" ({'; '.join(notes)})"
    _layout(fig, title, height=360, x="ratings (log scale)", y="‖vector‖ (L2 norm)")
    fig.update_xaxes(type="log", tickvals=log_ticks(rated["ratings"].to_numpy()), tickformat=",")
    return fig


def factor_ends(low: pd.DataFrame, high: pd.DataFrame, factor: int, *, height: int | None = None) -> go.Figure:
    """Horizontal bars: the items at the negative and the positive end of one factor."""
    both = pd.concat([low.sort_values("value", ascending=False), high.sort_values("value")])
    both = both.drop_duplicates("item")
    labels = unique_labels([_short(t, 45) for t in both["title"]], both["item"].tolist())
    fig = go.Figure(go.Bar(
        x=both["value"], y=labels, orientation="h",
        marker_color=np.where(both["value"] >= 0, "#b2182b", "#2166ac"),
        customdata=np.c_[both["genres"].astype(str).map(html), both["ratings"]],
        hovertemplate="%{y}<br>value %{x:.3f}<br>%{customdata[0]}<br>%{customdata[1]:,} ratings<extra></extra>",
    ))
    _layout(fig, f"Factor {factor}: the movies at both ends", height=height or max(320, 22 * len(both) + 80),
            x=f"value of factor {factor}")
    fig.update_yaxes(type="category", automargin=True)
    return fig


def genre_means(profile: pd.DataFrame, factor: int, *, height: int | None = None) -> go.Figure:
    """Horizontal bars: the mean value of one factor over each genre's movies."""
    fig = go.Figure(go.Bar(
        x=profile["mean"], y=[html(g) for g in profile["genre"]], orientation="h",
        marker_color=np.where(profile["mean"] >= 0, "#b2182b", "#2166ac"),
        customdata=profile["items"],
        hovertemplate="%{y}: %{x:+.3f} from the average, over %{customdata:,} movies<extra></extra>",
    ))
    _layout(fig, f"Factor {factor} by genre, relative to the average movie",
            height=height or max(320, 22 * len(profile) + 80),
            x=f"genre's mean − all movies' mean")
    fig.update_yaxes(type="category", automargin=True)
    return fig


# ----------------------------------------------------------------------------- one user


def _jitter(n: int, seed: int = 0, width: float = 0.12) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-width, width, n)


def actual_vs_predicted(frame: pd.DataFrame, scale: tuple[float, float], *, jitter: bool = True) -> go.Figure:
    """Scatter of one user's ratings: actual (x, jittered so equal stars do not overlap)
    against predicted (y); train and test in different colours and symbols; the diagonal
    is a perfect prediction. Hover shows the title and the exact numbers."""
    lo, hi = (float(v) for v in scale)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#999", dash="dash"),
                             name="perfect prediction", hoverinfo="skip"))
    styles = {"train": (TRAIN_COLOUR, "circle"), "test": (TEST_COLOUR, "diamond"), "not used": (OTHER_COLOUR, "x")}
    for n, (name, (colour, symbol)) in enumerate(styles.items()):
        part = frame[frame["set"] == name]
        if part.empty:
            continue
        x = part["rating"].to_numpy(dtype=np.float64)
        if jitter:
            x = x + _jitter(len(part), seed=n)
        trace = go.Scattergl if len(part) > 1000 else go.Scatter  # heavy raters: one canvas, not 1000s of nodes
        fig.add_trace(trace(
            x=x, y=part["predicted"], mode="markers", name=f"{name} ({len(part)})",
            marker=dict(color=colour, symbol=symbol, size=8 if name == "test" else 6, opacity=0.75),
            customdata=np.c_[part["title"].astype(str).map(html), part["rating"], part["genres"].astype(str).map(html)],
            hovertemplate=("%{customdata[0]}<br>%{customdata[2]}<br>rated %{customdata[1]}, "
                           "predicted %{y:.2f}<extra>" + name + "</extra>"),
        ))
    _layout(fig, "Their ratings: actual against predicted", height=420, x="actual rating (jittered)",
            y="predicted rating", legend=True)
    pad = 0.35
    fig.update_xaxes(range=[lo - pad, hi + pad])
    fig.update_yaxes(range=[lo - pad, hi + pad])
    return fig


def _waterfall_trace(steps: pd.DataFrame) -> tuple[go.Waterfall, list[float]]:
    """One plotly waterfall for ``steps`` and the running level after each bar."""
    measure = steps["measure"].tolist()
    values = steps["value"].to_numpy(dtype=np.float64)
    running, levels = 0.0, []
    for m, v in zip(measure, values):
        running = v if m in ("absolute", "total") else running + v
        levels.append(running)
    text = [f"{v:.3f}" if m != "relative" else f"{v:+.3f}" for m, v in zip(measure, values)]
    trace = go.Waterfall(
        x=steps["label"], y=[None if m == "total" else v for m, v in zip(measure, values)], measure=measure,
        text=text, textposition="outside", cliponaxis=False,
        increasing=dict(marker=dict(color=UP_COLOUR)), decreasing=dict(marker=dict(color=DOWN_COLOUR)),
        totals=dict(marker=dict(color=TOTAL_COLOUR)), connector=dict(line=dict(color="#999", width=1)),
        hovertemplate="%{x}: %{text}<extra></extra>",
    )
    return trace, levels


def _zoom(levels: list[float]) -> list[float]:
    lo, hi = min(levels), max(levels)
    span = max(hi - lo, 0.2)
    return [lo - 0.25 * span, hi + 0.2 * span]


def decomposition_lines(d: dict, user_symbol: str = "u") -> list[str]:
    """The waterfall's sum in words (markdown lines): the raw sum term by term, then what the
    output does to it (sigmoid, clipping). ``d`` is a decomposition from mfcore.inspect."""
    parts = d["parts"]
    factor_sum = sum(v for name, v in parts.items() if name.startswith("factor "))
    terms = [parts[name] for name in ("global", "user bias", "item bias") if name in parts] + [factor_sum]
    sum_text = f"{terms[0]:.3f} " + " ".join(f"{'−' if v < 0 else '+'} {abs(v):.3f}" for v in terms[1:])
    u = user_symbol
    dot = f"Σ_f p_{u}{',' if len(u) > 1 else ''}f·q_if"
    formula = f"g + b_{u} + b_i + {dot}" if "user bias" in parts else f"g + {dot}"
    lo, hi = d["rating_scale"]
    lines = [f"**Raw sum** {formula} = {sum_text} = **{d['raw']:.4f}**."]
    if d["output"] == "sigmoid":
        a, b = d["output_range"]
        squashed = a + (b - a) / (1 + math.exp(-d["raw"]))
        clipped = "" if lo <= squashed <= hi else f", then clipped to [{lo:g}, {hi:g}]"
        lines.append(f"The output is a **sigmoid**: {a:g} + ({b:g} − {a:g})·σ({d['raw']:.3f}) = {squashed:.4f}{clipped}.")
    elif not lo <= d["raw"] <= hi:
        lines.append(f"The raw sum is outside the rating scale, so the prediction is **clipped** to [{lo:g}, {hi:g}].")
    return lines


def prediction_waterfall(steps: pd.DataFrame, title: str) -> go.Figure:
    """The waterfall of :func:`mfcore.inspect.views.waterfall_steps`.

    A linear, unclipped prediction: one panel, from the global mean through the biases and
    the factors to the prediction. When the output squashes (sigmoid) or clips, a second,
    narrow panel shows that last stage on its own axis: raw sum -> sigmoid/clip ->
    prediction, so the parts stay readable next to a large output step. The y axes zoom
    on the range the running sum visits (they do not start at 0).
    """
    output_rows = steps["kind"].isin(["output"]).to_numpy()
    if not output_rows.any():
        trace, levels = _waterfall_trace(steps)
        fig = go.Figure(trace)
        _layout(fig, title, height=440, y="rating (axis does not start at 0)")
        fig.update_yaxes(range=_zoom(levels))
        fig.update_xaxes(type="category", tickangle=-35)
        return fig
    raw_at = int(np.flatnonzero(steps["kind"].to_numpy() == "raw")[0])
    parts = steps.iloc[: raw_at + 1]
    final = steps.iloc[raw_at:].copy()
    final.iloc[0, final.columns.get_loc("measure")] = "absolute"
    sigmoid = "sigmoid" in final["label"].tolist()
    fig = make_subplots(rows=1, cols=2, column_widths=[0.78, 0.22], horizontal_spacing=0.07,
                        subplot_titles=["the parts, " + ("before the sigmoid" if sigmoid else "before clipping"),
                                        "output"])
    left, left_levels = _waterfall_trace(parts)
    right, right_levels = _waterfall_trace(final)
    fig.add_trace(left, row=1, col=1)
    fig.add_trace(right, row=1, col=2)
    _layout(fig, title, height=460)
    fig.update_yaxes(range=_zoom(left_levels), title_text="score before the sigmoid" if sigmoid else
                     "rating (axis does not start at 0)", row=1, col=1)
    fig.update_yaxes(range=_zoom(right_levels), title_text="rating", row=1, col=2)
    fig.update_xaxes(type="category", tickangle=-35)
    fig.update_annotations(font_size=12)
    return fig


# ----------------------------------------------------------------------------- one movie


def rating_distributions(predicted: np.ndarray, actual: np.ndarray, scale: tuple[float, float],
                         bin_width: float = 0.25) -> go.Figure:
    """Overlaid histograms, in percent: the movie's predicted rating for every user, and
    the ratings it actually got (numpy-binned, so a large user base stays small to send)."""
    lo, hi = (float(v) for v in scale)
    edges = np.arange(lo - bin_width / 2, hi + bin_width, bin_width)
    fig = go.Figure()
    for values, name, colour in ((np.asarray(predicted), "predicted, all users", PREDICTED_COLOUR),
                                 (np.asarray(actual), "actual ratings", ACTUAL_COLOUR)):
        if len(values) == 0:
            continue
        count, _ = np.histogram(values, bins=edges)
        fig.add_trace(go.Bar(
            x=(edges[:-1] + edges[1:]) / 2, y=100.0 * count / len(values), width=bin_width,
            name=f"{name} ({len(values):,})", marker_color=colour, opacity=0.6,
            customdata=count, hovertemplate=f"{name}<br>%{{x:.2f}}: %{{y:.1f}}% (%{{customdata:,}})<extra></extra>",
        ))
    fig.update_layout(barmode="overlay", bargap=0)
    _layout(fig, "Its predicted rating across all users, and its actual ratings", height=360,
            x="rating", y="% of each", legend=True)
    fig.update_xaxes(range=[lo - 0.5, hi + 0.5])
    return fig


def group_bars(table: pd.DataFrame, title: str, *, height: int | None = None) -> go.Figure:
    """Grouped bars per demographic group: mean predicted rating (all users in the group)
    and mean actual rating (those who rated it). Beside each group's name: how many users
    it has and how many of them rated the movie; the same on hover. More than 8 groups
    (occupations) are drawn as horizontal bars so their names stay readable."""
    many = len(table) > 8
    names = [f"{html(g)} ({u:,} / {r:,})" if many else f"{html(g)}<br>{u:,} / {r:,}"
             for g, u, r in zip(table["group"], table["users"], table["raters"])]
    bars = []
    for column, count, name, colour, what in (
        ("mean_predicted", "users", "mean predicted (all its users)", PREDICTED_COLOUR, "over %{customdata:,} users"),
        ("mean_actual", "raters", "mean actual (those who rated it)", ACTUAL_COLOUR, "from %{customdata:,} ratings"),
    ):
        value = "%{x:.2f}" if many else "%{y:.2f}"
        xy = dict(y=names, x=table[column], orientation="h") if many else dict(x=names, y=table[column])
        bars.append(go.Bar(**xy, name=name, marker_color=colour, customdata=table[count],
                           hovertemplate=f"{name.split(' (')[0]} {value} {what}<extra></extra>"))
    fig = go.Figure(bars)
    fig.update_layout(barmode="group")
    _layout(fig, title, height=height or (max(360, 34 * len(table) + 120) if many else 360), legend=True)
    finite = pd.concat([table["mean_predicted"], table["mean_actual"]]).dropna()
    value_axis, group_axis = (fig.update_xaxes, fig.update_yaxes) if many else (fig.update_yaxes, fig.update_xaxes)
    value_axis(title_text="mean rating")
    if len(finite):
        value_axis(range=[max(0.0, float(finite.min()) - 0.4), float(finite.max()) + 0.2])
    group_axis(type="category", title_text="group (users / of them rated it)")
    if many:
        fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def group_spread(groups: list[dict], title: str, scale: tuple[float, float], *, height: int | None = None) -> go.Figure:
    """Box plots per demographic group: the predicted rating of every user in the group
    (blue) beside the actual ratings of those who rated the movie (green), with the mean
    as a dashed line in each box and the counts in the group's name. The rating axis spans
    the whole rating scale (an honest axis: differences look as large as they are).
    More than 8 groups (occupations) are drawn horizontally so their names stay readable.
    ``groups``: :func:`mfcore.inspect.views.group_values`."""
    many = len(groups) > 8
    lo, hi = (float(v) for v in scale)
    fig = go.Figure()
    for key, name, colour in (("predicted", "predicted (every user in the group)", PREDICTED_COLOUR),
                              ("actual", "actual (those who rated it)", ACTUAL_COLOUR)):
        values, labels = [], []
        for g in groups:
            label = f"{html(g['group'])} ({g['users']:,} / {g['raters']:,})" if many else \
                f"{html(g['group'])}<br>{g['users']:,} / {g['raters']:,}"
            values.append(g[key])
            labels += [label] * len(g[key])
        v = np.concatenate(values) if values else np.zeros(0)
        xy = dict(x=v, y=labels, orientation="h") if many else dict(x=labels, y=v)
        fig.add_trace(go.Box(**xy, name=name, marker_color=colour, boxmean=True, boxpoints=False,
                             hoverinfo="x+y" if many else "y"))
    fig.update_layout(boxmode="group")
    _layout(fig, title, height=height or (max(380, 44 * len(groups) + 140) if many else 380), legend=True)
    value_axis, group_axis = (fig.update_xaxes, fig.update_yaxes) if many else (fig.update_yaxes, fig.update_xaxes)
    value_axis(range=[lo - 0.25, hi + 0.25], title_text=f"rating (the whole {lo:g}–{hi:g} scale)", dtick=1 if hi - lo >= 3 else 0.5)
    group_axis(type="category", title_text="group (its users / of them rated it)")
    if many:
        fig.update_yaxes(autorange="reversed", automargin=True)
    return fig
