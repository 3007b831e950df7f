"""Embeddings & biases: what the selected run's factor matrices and biases look like.

Heatmaps of the user and item factor matrices, the spread and distribution of each
factor, vector length against popularity, the highest and lowest biases, and what one
factor separates. The numbers come from :mod:`mfcore.inspect.views`, cached per run
(id + checkpoint time); each section with controls is a fragment, so moving a control
redraws that section only.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from mfcore.inspect import projection as proj
from mfcore.inspect import views
from ui import inspect_charts as charts
from ui.layout import chart_frame
from ui.selection import SelectedRun, selected_run

HEATMAP_ROWS = (100, 200, 300, 500, 1000, 2000)
ORDER_LABELS = {"popularity": "Popularity", "cluster": "Clusters (k-means)", "pc1": "First principal component"}



# ---------------------------------------------------------------------------- cached numbers
# Figures are cached with their numbers: building a plotly figure of a few thousand rows
# costs more than the numbers, and a cached figure is only serialised on a rerun.
@st.cache_resource(show_spinner="Summarising the factors…", max_entries=6)
def _tables(run_id: str, stamp: float, _sel: SelectedRun) -> dict[str, Any]:
    """Item and user tables (bias, ratings, norm, titles, demographics), factor spread, and
    the per-run figures (factor share, norm against popularity)."""
    model, data = _sel.model, _sel.data
    items = views.item_table(model, data)
    users = views.user_table(model, data)
    if data.users is not None and {"gender", "age", "occupation"} <= set(data.users.columns):
        users["label"] = [f"user {u} ({g}, {a}, {o})" for u, g, a, o in
                          zip(users["user"], users["gender"], users["age"], users["occupation"])]
    else:
        users["label"] = [f"user {u}" for u in users["user"]]
    spread = views.factor_spread(model)
    return {
        "items": items, "users": users, "spread": spread,
        "share_fig": charts.factor_share(spread),
        "norm_users_fig": charts.norm_vs_popularity(users, "users", label="label", colour=charts.USER_COLOUR),
        "norm_items_fig": charts.norm_vs_popularity(items, "movies", label="title", colour=charts.ITEM_COLOUR),
    }


@st.cache_resource(show_spinner="Ordering the rows…", max_entries=24)
def _heatmap(run_id: str, stamp: float, side: str, order: str, max_rows: int, _sel: SelectedRun,
             _table: pd.DataFrame) -> dict[str, Any]:
    model = _sel.model
    factors = model.user_factors() if side == "users" else model.item_factors()
    what = "users" if side == "users" else "movies"
    ordered = views.row_order(factors, _table["ratings"].to_numpy(), order, max_rows=max_rows, seed=0, what=what)
    label_col = "label" if side == "users" else "title"
    labels = charts.unique_labels(_table[label_col].to_numpy()[ordered.rows], _table.iloc[ordered.rows].iloc[:, 0])
    one = "user" if side == "users" else "movie"
    fig = charts.factor_heatmap(factors[ordered.rows], labels, f"{one.capitalize()} factors", groups=ordered.groups,
                                what=one)
    return {"fig": fig, "note": ordered.note}


@st.cache_resource(show_spinner=False, max_entries=64)
def _histograms(run_id: str, stamp: float, chosen: tuple[int, ...], _sel: SelectedRun):
    hist = views.factor_histograms(_sel.model.user_factors(), _sel.model.item_factors(), list(chosen))
    return charts.factor_histograms(hist)


@st.cache_resource(show_spinner=False, max_entries=128)
def _factor_meaning(run_id: str, stamp: float, factor: int, min_ratings: int, _sel: SelectedRun) -> dict[str, Any]:
    low, high = views.factor_extremes(_sel.model, _sel.data, factor, n=10, min_ratings=min_ratings)
    profile = views.genre_profile(_sel.model, _sel.data, factor, min_ratings=min_ratings)
    height = max(320, 22 * max(len(low) + len(high), len(profile)) + 90)
    return {
        "low": low, "high": high,
        "ends_fig": charts.factor_ends(low, high, factor, height=height),
        "genre_fig": charts.genre_means(profile, factor, height=height) if len(profile) else None,
    }


# ---------------------------------------------------------------------------- sections
def heatmaps(sel: SelectedRun, key: tuple[str, float], tables: dict[str, Any]) -> None:
    st.caption("Each row is one user's (left) or one movie's (right) vector; each column one factor. "
               "Red is positive, blue negative. A user's predicted rating for a movie adds up the products "
               "of their two rows, column by column.")
    c1, c2 = st.columns([3, 2])
    order = c1.segmented_control("Order the rows by", list(ORDER_LABELS), format_func=ORDER_LABELS.get,
                                 default="popularity", key="emb_order", required=True) or "popularity"
    max_rows = c2.select_slider("Rows drawn at most", HEATMAP_ROWS, value=500, key="emb_rows",
                                help="Larger sets are drawn as a random sample of this size (seed 0).")
    left, right = st.columns(2)
    for col, side, table in ((left, "users", tables["users"]), (right, "items", tables["items"])):
        h = _heatmap(*key, side, order, int(max_rows), sel, table)
        col.plotly_chart(chart_frame(h["fig"]), key=f"emb_heat_{side}")
        col.caption(h["note"])


def distributions(sel: SelectedRun, key: tuple[str, float], tables: dict[str, Any]) -> None:
    spread = tables["spread"]
    st.plotly_chart(chart_frame(tables["share_fig"]), key="emb_share")
    k = len(spread)
    default = sorted(spread.nlargest(min(4, k), "share")["factor"].tolist())
    chosen = st.multiselect("Histograms of these factors (default: the 4 that vary most; up to 8)", list(range(k)),
                            default=default, format_func=lambda f: f"factor {f}", key="emb_hist_factors",
                            max_selections=8)
    if chosen:
        st.plotly_chart(chart_frame(_histograms(*key, tuple(sorted(chosen)), sel)), key="emb_hists")
    else:
        st.info("Choose at least one factor.")


def norms(sel: SelectedRun, key: tuple[str, float], tables: dict[str, Any]) -> None:
    st.caption("Regularisation pulls vectors toward zero, and only ratings push them out: rarely rated users and "
               "movies keep short vectors, so their predictions lean on the biases. Log x axis.")
    left, right = st.columns(2)
    left.plotly_chart(chart_frame(tables["norm_users_fig"]), key="emb_norm_users")
    right.plotly_chart(chart_frame(tables["norm_items_fig"]), key="emb_norm_items")


BIAS_COLUMNS = {
    "bias": st.column_config.NumberColumn("bias", format="%+.3f"),
    "ratings": st.column_config.NumberColumn("ratings", format="%d"),
    "mean_rating": st.column_config.NumberColumn("mean rating", format="%.2f"),
    "title": st.column_config.TextColumn("title", width="medium"),
    "user": st.column_config.NumberColumn("user", format="%d"),
}


def biases(sel: SelectedRun, key: tuple[str, float], tables: dict[str, Any]) -> None:
    if not sel.model.model_config.use_bias:
        st.info("This run trained plain MF (no user or item biases): every bias is zero.")
        return
    cfg = sel.model.model_config
    units = (" These numbers are added **before the sigmoid** that turns the sum into a rating, so they are in "
             "its input's units, not stars." if cfg.output == "sigmoid" else "")
    st.caption(f"Global term g = {sel.model.global_bias:.3f} ({cfg.global_bias}). A movie's bias is how much better "
               "or worse everyone rates it than g; a user's, how generous they are. Biases of rarely rated movies "
               "are pulled toward zero by regularisation, so a floor on ratings gives the well-supported extremes."
               + units)
    floor = st.columns([1, 2])[0].number_input("Only users and movies with at least this many ratings", 0, 1000, 20,
                                               step=5, key="emb_bias_floor")
    items, users = tables["items"], tables["users"]
    low_i, high_i = views.bias_extremes(items, 10, int(floor))
    low_u, high_u = views.bias_extremes(users, 10, int(floor))
    item_cols = ["title", "bias", "ratings", "mean_rating", "genres"]
    demo = [c for c in ("age", "gender", "occupation") if c in users.columns]
    user_cols = ["user", "bias", "ratings", "mean_rating", *demo]
    c1, c2 = st.columns(2)
    c1.markdown("**Movies with the highest bias**")
    c1.dataframe(high_i[item_cols], hide_index=True, column_config=BIAS_COLUMNS, key="emb_bias_items_high")
    c2.markdown("**Movies with the lowest bias**")
    c2.dataframe(low_i[item_cols], hide_index=True, column_config=BIAS_COLUMNS, key="emb_bias_items_low")
    c3, c4 = st.columns(2)
    c3.markdown("**Users with the highest bias** (generous raters)")
    c3.dataframe(high_u[user_cols], hide_index=True, column_config=BIAS_COLUMNS, key="emb_bias_users_high")
    c4.markdown("**Users with the lowest bias** (harsh raters)")
    c4.dataframe(low_u[user_cols], hide_index=True, column_config=BIAS_COLUMNS, key="emb_bias_users_low")


def factor_meaning(sel: SelectedRun, key: tuple[str, float], tables: dict[str, Any]) -> None:
    st.caption("The movies with the most negative and the most positive value of one factor. Factors have no "
               "names: the model only learned that these movies are rated differently by the same people. "
               "Genres often explain part of it.")
    spread = tables["spread"]
    k = len(spread)
    share = dict(zip(spread["factor"], spread["share"]))
    c1, c2 = st.columns([2, 1])
    order = spread.sort_values("share", ascending=False, kind="stable")["factor"].tolist()
    factor = c1.selectbox("Factor (the ones that vary most first)", order, key="emb_factor",
                          format_func=lambda f: f"factor {f} ({100 * share[f]:.1f}% of the variance)")
    floor = c2.number_input("Movies with at least this many ratings", 0, 1000, 20, step=5, key="emb_factor_floor",
                            help="Rarely rated movies have noisy vectors; a floor keeps the ends meaningful.")
    meaning = _factor_meaning(*key, int(factor), int(floor), sel)
    low, high = meaning["low"], meaning["high"]
    left, right = st.columns([3, 2])
    left.plotly_chart(chart_frame(meaning["ends_fig"]), key="emb_factor_ends")
    if meaning["genre_fig"] is not None:
        right.plotly_chart(chart_frame(meaning["genre_fig"]), key="emb_genres")
    cols = {"title": st.column_config.TextColumn("title", width="medium"),
            "value": st.column_config.NumberColumn("value", format="%+.3f"),
            "ratings": st.column_config.NumberColumn("ratings", format="%d")}
    a, b = st.columns(2)
    a.markdown(f"**Negative end of factor {factor}**")
    a.dataframe(low[["title", "value", "ratings", "genres"]], hide_index=True, column_config=cols, key="emb_low")
    b.markdown(f"**Positive end of factor {factor}**")
    b.dataframe(high[["title", "value", "ratings", "genres"]], hide_index=True, column_config=cols, key="emb_high")


VIEW_KEY = "emb_view"  # the open tab's label
# Tab label -> section; sections with controls are fragments (a control redraws its section only).
VIEWS = {
    "Factor matrices": st.fragment(heatmaps),
    "Factor values": st.fragment(distributions),
    "Length & popularity": norms,
    "Biases": st.fragment(biases),
    "What a factor separates": st.fragment(factor_meaning),
}

# ---------------------------------------------------------------------------- the page
proj.warm_up_in_background()  # the 2D map's UMAP/t-SNE kernels compile while this page is read
st.title("Embeddings & biases")
sel = selected_run()
if sel is not None:
    cfg = sel.model.model_config
    st.caption(f"{sel.title} · {cfg.n_factors} factors · {'biased' if cfg.use_bias else 'plain'} MF · "
               f"{cfg.output} output · {sel.data.n_users:,} users × {sel.data.n_items:,} movies")
    key = (sel.run_id, sel.stamp)
    tables = _tables(*key, sel)
    # Lazy tabs: only the open one runs and is drawn, so each view sends two charts, not ten.
    tabs = st.tabs(list(VIEWS), key=VIEW_KEY, on_change="rerun")
    for tab, name in zip(tabs, VIEWS):
        if tab.open:
            with tab:
                VIEWS[name](sel, key, tables)
