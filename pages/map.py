"""2D map: the learned movie (or user) vectors squeezed into a picture.

PCA, t-SNE and (when installed) UMAP of the factor matrix, coloured by genre, mean rating,
popularity or bias and sized by popularity; a search that stars one movie and rings its
nearest neighbours (cosine of the item factors); the coordinates as CSV. Below: the map
learning epoch by epoch (Procrustes-aligned PCA frames) and, on synthetic data, the
planted factors beside the learned ones. Projections come from
:mod:`mfcore.inspect.projection`, cached per run, checkpoint, method and seed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from mfcore.inspect import projection as proj
from mfcore.inspect import views
from mfcore.training.snapshots import snapshot_epochs
from ui import map_charts as charts
from ui.layout import chart_frame
from ui.selection import SelectedRun, selected_run
from ui.text import md

MAP_MAX_POINTS = 60_000  # WebGL draws ml-25m's 59,047 movies; users past this are sampled
ANIMATION_MAX_POINTS = 4_000  # SVG frames (plotly cannot animate WebGL) stay smooth up to here
METHOD_LABELS = proj.NAMES
WHAT = {"movies": ("item_factors", charts.ITEM_COLOURS), "users": ("user_factors", charts.USER_COLOURS)}



# ---------------------------------------------------------------------------- cached numbers
@st.cache_resource(show_spinner="Listing the movies…", max_entries=6)
def _items(run_id: str, stamp: float, _sel: SelectedRun) -> pd.DataFrame:
    """One row per model item, in model order, with what the map draws (read-only)."""
    table = views.item_table(_sel.model, _sel.data)
    table["genre"] = charts.first_genre(table["genres"])
    table["size"] = charts.point_sizes(table["ratings"].to_numpy())
    table["hover"] = charts.item_hover(table)
    table["label"] = table["title"].where(table["title"] != "", "item " + table["item"].astype(str))
    return table


@st.cache_resource(show_spinner="Listing the users…", max_entries=6)
def _users(run_id: str, stamp: float, _sel: SelectedRun) -> pd.DataFrame:
    table = views.user_table(_sel.model, _sel.data)
    table["size"] = charts.point_sizes(table["ratings"].to_numpy(), small=2.5, large=10.0)
    table["hover"] = charts.user_hover(table)
    table["label"] = "user " + table["user"].astype(str)
    return table


@st.cache_data(show_spinner=False, max_entries=32)
def _projection(run_id: str, stamp: float, what: str, method: str, seed: int, cap: int,
                _sel: SelectedRun) -> proj.Projection:
    """The 2D projection (cached per run, checkpoint time, what, method, seed and sample cap).

    PCA is fitted on every row (fast) and only the drawing is thinned past ``cap`` (the
    browser slows past ~60,000 WebGL points); t-SNE/UMAP run on the sample itself.
    """
    factors = _sel.model.item_factors() if what == "movies" else _sel.model.user_factors()
    if method != "pca":
        # Past the cap, the most-rated rows: the movies people search for.
        table = _items(run_id, stamp, _sel) if what == "movies" else _users(run_id, stamp, _sel)
        return proj.project(factors, method, seed=seed, max_points=cap, priority=table["ratings"].to_numpy())
    p = proj.project(factors, "pca")
    n = len(p.rows)
    if n <= cap:
        return p
    keep = np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))
    return dataclasses.replace(p, coords=p.coords[keep], rows=p.rows[keep],
                               note=f"a random {cap:,} of the {n:,} {what} (PCA fitted on all of them; the browser "
                                    "slows down with more points)")


@st.cache_data(show_spinner="Aligning the epochs…", max_entries=8)
def _frames(run_id: str, stamp: float, what: str, cap: int,
            _sel: SelectedRun) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """(model rows drawn, one aligned PCA frame per kept snapshot, the epoch of each)."""
    key = WHAT[what][0]
    snaps = _sel.model.snapshots
    n = len(snaps[0][key])
    rows = np.arange(n) if n <= cap else np.sort(np.random.default_rng(0).choice(n, cap, replace=False))
    return rows, proj.aligned_frames([s[key][rows] for s in snaps]), snapshot_epochs(snaps)


@st.cache_data(show_spinner="Comparing with the planted factors…", max_entries=8)
def _planted(run_id: str, stamp: float, _sel: SelectedRun) -> dict[str, Any] | None:
    """Planted and learned item maps (learned rotated onto planted) and recovery per epoch."""
    from mfcore.data.synthetic import factor_recovery

    model, data = _sel.model, _sel.data
    item_rows = data.item_ids.indices_of(model.item_ids.raw)
    user_rows = data.user_ids.indices_of(model.user_ids.raw)
    if (item_rows < 0).any() or (user_rows < 0).any():
        return None
    truth = data.truth
    planted = proj.project(truth["item_factors"][item_rows], "pca")
    learned = proj.project(model.item_factors(), "pca")
    curve = proj.recovery_over_epochs(model.snapshots, truth, item_rows=item_rows, user_rows=user_rows)
    return {
        "planted": planted.coords,
        "planted_ev": planted.explained_variance,
        "learned": proj.align_to(planted.coords, learned.coords),
        "curve": curve,
        "final_items": factor_recovery(model.item_factors(), truth["item_factors"][item_rows]),
        "final_users": factor_recovery(model.user_factors(), truth["user_factors"][user_rows]),
        "rank": int(truth["item_factors"].shape[1]),
    }


def id_col(what: str) -> str:
    return "item" if what == "movies" else "user"


@st.cache_data(show_spinner=False, max_entries=8)  # an ml-25m map figure pickles to ~10-20 MB
def _map_view(run_id: str, stamp: float, what: str, method: str, seed: int, cap: int, colour: str, searched: Any,
              n_neigh: int, floor: int, _sel: SelectedRun) -> dict[str, Any]:
    """Everything the map section draws for one choice of controls: the figure, the drawn
    points (for the CSV), the neighbours table and the caption. Cached, so a rerun that
    changes nothing here (another section's widget, a download) costs a cache lookup."""
    table = _items(run_id, stamp, _sel) if what == "movies" else _users(run_id, stamp, _sel)
    p = _projection(run_id, stamp, what, method, seed, cap, _sel)
    points = table.iloc[p.rows].reset_index(drop=True)
    points["x"], points["y"] = p.coords[:, 0], p.coords[:, 1]
    pos = pd.Series(np.arange(len(points)), index=points[id_col(what)].to_numpy())
    focus = neighbours = sim = None
    missing = False
    if searched is not None:
        if searched in pos.index:
            focus = points.iloc[[int(pos[searched])]]
        else:
            missing = True
        if what == "movies" and n_neigh > 0:
            # The same list as One movie's "Most similar movies" (same function, same floor).
            sim = views.similar_movies(_sel.model, _sel.data, searched, n=n_neigh, min_ratings=floor, items=table)
            names = table.set_index("item")
            sim = sim.assign(rank=np.arange(1, len(sim) + 1), title=names.loc[sim["item"], "label"].to_numpy(),
                             on_map=sim["item"].isin(pos.index).to_numpy())
            on_map = sim[sim["on_map"]]
            neighbours = points.iloc[pos[on_map["item"]].to_numpy()].assign(rank=on_map["rank"].to_numpy())
    k = _sel.model.model_config.n_factors
    label = METHOD_LABELS[method]
    axes = (f"{label} 1", f"{label} 2")
    note = f"Showing {p.note}."
    if method == "pca" and p.explained_variance is not None:
        ev = p.explained_variance
        axes = (f"PC1 ({100 * ev[0]:.0f}% of the spread)", f"PC2 ({100 * ev[1]:.0f}%)")
        note += (f" The two axes hold {100 * sum(ev):.0f}% of the variance of the {k} factors; "
                 "points close here can still differ along the other directions.")
    else:
        note += " t-SNE/UMAP keep who is near whom; the distance between far groups and the axes mean nothing."
    fig = chart_frame(charts.map_figure(points, colour, colours=WHAT[what][1], axes=axes, neighbours=neighbours,
                                        focus=focus, title=f"{label} of the {k}-factor {what[:-1]} vectors"))
    return {"fig": fig, "points": points, "sim": sim, "missing": missing, "note": note}


@st.cache_data(show_spinner="Aligning the epochs…", max_entries=8)
def _animation(run_id: str, stamp: float, what: str, colour: str, _sel: SelectedRun) -> dict[str, Any]:
    rows, frames, epochs = _frames(run_id, stamp, what, ANIMATION_MAX_POINTS, _sel)
    table = _items(run_id, stamp, _sel) if what == "movies" else _users(run_id, stamp, _sel)
    points = table.iloc[rows].reset_index(drop=True)
    every = epochs == list(range(1, len(epochs) + 1))
    title = (f"The {what[:-1]} vectors after each of {len(frames)} epochs (PCA)" if every else
             f"The {what[:-1]} vectors at {len(frames)} of the run's {epochs[-1]} epochs (PCA)")
    fig = chart_frame(charts.animation_figure(frames, points, colour, colours=WHAT[what][1], epochs=epochs,
                                              title=title))
    return {"fig": fig, "drawn": len(rows), "total": len(table), "epochs": epochs, "every": every}


@st.cache_data(show_spinner=False, max_entries=8)
def _planted_figures(run_id: str, stamp: float, colour: str, _sel: SelectedRun):
    res = _planted(run_id, stamp, _sel)
    table = _items(run_id, stamp, _sel)
    ev = res["planted_ev"]
    planted = table.assign(x=res["planted"][:, 0], y=res["planted"][:, 1])
    learned = table.assign(x=res["learned"][:, 0], y=res["learned"][:, 1])
    return (chart_frame(charts.map_figure(planted, colour, title=f"Planted rank-{res['rank']} movie factors (PCA)",
                                          axes=(f"PC1 ({100 * ev[0]:.0f}%)", f"PC2 ({100 * ev[1]:.0f}%)"),
                                          height=460, legend=False)),
            chart_frame(charts.map_figure(learned, colour, title="Learned movie factors (PCA, turned onto the planted)",
                                          axes=("", ""), height=460, legend=False)))


def _csv(points: pd.DataFrame, id_name: str, method: str) -> bytes:
    cols = [c for c in (id_name, "title", "genres", "x", "y", "ratings", "mean_rating", "bias") if c in points.columns]
    return points[cols].assign(method=method).to_csv(index=False).encode("utf-8")


# ---------------------------------------------------------------------------- sections
def controls(sel: SelectedRun) -> tuple[str, str]:
    c1, c2 = st.columns([1, 2])
    what = c1.radio("Show", ["movies", "users"], horizontal=True, key="map_what",
                    help="Movies: the item factor vectors q_i. Users: the user factor vectors p_u.")
    colours = dict(WHAT[what][1])
    users = sel.data.users
    for col in ("gender", "age_group", "occupation"):
        if what == "users" and (users is None or col not in users.columns):
            colours.pop(col, None)
    options = list(colours)
    if st.session_state.get("map_colour") not in options:
        st.session_state["map_colour"] = options[0]
    colour = c2.selectbox("Colour by", options, format_func=lambda c: colours[c][0], key="map_colour",
                          help="Size always grows with popularity (how many ratings).")
    return what, colour


def _search(sel: SelectedRun, what: str, table: pd.DataFrame) -> tuple[Any | None, int, int]:
    """The searched movie (raw id) or user, how many neighbours to ring, and the least
    number of ratings a neighbour must have."""
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
    if what == "users":
        text = c1.text_input("Find a user (id)", key="map_user_search", placeholder="e.g. 42")
        text = (text or "").strip()
        if not text:
            return None, 0, 0
        hit = table.index[table["user"].astype(str) == text]
        if not len(hit):
            st.warning(f"There is no user **{md(text)}** in this model.", icon=":material/person_off:")
            return None, 0, 0
        return table.at[hit[0], "user"], 0, 0
    text = c1.text_input("Find a movie", key="map_search", placeholder="part of a title, e.g. star wars",
                         help="Highlights the movie (red star) and rings its nearest neighbours.")
    hits = charts.find_titles(table, text)
    n = int(c3.number_input("Neighbours", 0, 50, 10, key="map_neighbours",
                            help="Movies with the most similar factor vectors (cosine)."))
    floor = int(c4.number_input("Min. ratings", 0, 10_000, views.SIMILAR_MIN_RATINGS, step=5,
                                key="map_neighbour_floor",
                                help="Only movies with at least this many ratings are neighbours (rarely rated "
                                     "movies have noisy vectors). One movie's *Most similar movies* uses the same "
                                     f"rule, {views.SIMILAR_MIN_RATINGS} by default, so both lists agree."))
    if not (text or "").strip():
        return None, n, floor
    if not len(hits):
        st.warning(f"No movie title contains “{md(text.strip())}”.", icon=":material/search_off:")
        return None, n, floor
    labels = dict(zip(hits["item"], hits["label"] + " · " + hits["ratings"].map("{:,}".format) + " ratings"))
    options = list(labels)
    if st.session_state.get("map_pick") not in labels:
        st.session_state["map_pick"] = options[0]
    item = c2.selectbox(f"{len(hits)} match{'es' if len(hits) != 1 else ''}", options, key="map_pick",
                        format_func=lambda i: labels.get(i, str(i)))
    return (item.item() if isinstance(item, np.generic) else item), n, floor


def the_map(sel: SelectedRun, key: tuple[str, float], what: str, colour: str) -> None:
    methods = (["umap"] if proj.umap_available() else []) + ["tsne", "pca"]
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    method = c1.radio("Projection", methods, horizontal=True, format_func=METHOD_LABELS.get, key="map_method",
                      help="PCA: a linear view along the two directions of largest spread; distances mean "
                           "something. t-SNE/UMAP: neighbourhoods are kept, global distances and cluster sizes "
                           "are not." + ("" if "umap" in methods else " (UMAP: pip install umap-learn.)"))
    table = _items(*key, sel) if what == "movies" else _users(*key, sel)
    n = len(table)
    if method == "pca":
        seed, cap = 0, min(n, MAP_MAX_POINTS)
    else:
        seed = int(c2.number_input("Seed", 0, 10_000, 0, key="map_seed",
                                   help="t-SNE and UMAP start from a random layout: another seed, another picture."))
        top = min(n, proj.TSNE_MAX_POINTS)
        low = min(100, top)
        # The default goes through session state (no value= below), so it can be preset and
        # is clamped when another run has fewer points.
        cap0 = st.session_state.get("map_cap", top)
        st.session_state["map_cap"] = int(min(max(cap0, low), top))
        cap = int(c3.number_input("Points", low, top, step=500, key="map_cap",
                                  help=f"Every point up to {proj.TSNE_MAX_POINTS:,}; past that, or with a smaller "
                                       "number here, the most-rated ones."))
    searched, n_neigh, floor = _search(sel, what, table)
    spin = f"{METHOD_LABELS[method]} of {min(cap, n):,} points… (once per run, seed and number of points)"
    with st.spinner(spin):
        view = _map_view(*key, what, method, seed, cap, colour, searched, n_neigh, floor, sel)
    if view["missing"]:
        hint = "draw more points, or choose PCA." if method != "pca" else "only a sample of this many points is drawn."
        st.info(f"{md(table.set_index(id_col(what)).at[searched, 'label'])} is not among the points drawn: {hint}",
                icon=":material/info:")
    st.plotly_chart(view["fig"], key="map_chart", config={"scrollZoom": True})
    st.caption(view["note"] + " Drag to zoom, double-click to reset; hover a point for its numbers.")
    points, sim = view["points"], view["sim"]
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    if sim is not None and len(sim):
        left.markdown(f"**Nearest neighbours of {md(table.set_index('item').at[searched, 'label'])}** "
                      f"(cosine of the factor vectors; movies with at least {floor:,} ratings, the same list as "
                      "One movie's *Most similar movies*)")
        cols = ["rank", "title", "similarity", "ratings"] + ([] if sim["on_map"].all() else ["on_map"])
        left.dataframe(sim[cols], hide_index=True,
                       key="map_neighbours_table", column_config={
                           "rank": st.column_config.NumberColumn("#", format="%d", width="small",
                                                                 help="The number next to its ring on the map"),
                           "title": st.column_config.TextColumn("title", width="medium"),
                           "similarity": st.column_config.ProgressColumn("cosine", format="%.3f", min_value=-1,
                                                                         max_value=1),
                           "ratings": st.column_config.NumberColumn("ratings", format="%d"),
                           "on_map": st.column_config.CheckboxColumn("on the map"),
                       })
    right.download_button(
        "Download coordinates (CSV)", data=lambda: _csv(points, id_col(what), method), on_click="ignore",
        file_name=f"map_{sel.run_id}_{what}_{method}.csv", mime="text/csv", icon=":material/download:",
        key="map_download", help=f"{len(points):,} rows: id, title, x, y and the numbers shown on hover.",
    )


def watch_it_learn(sel: SelectedRun, key: tuple[str, float], what: str, colour: str) -> None:
    st.subheader("Watch the map learn", anchor=False)
    snaps = sel.model.snapshots
    if not snaps:
        st.info("This run kept no per-epoch snapshots: they are kept for datasets up to the size of ml-1m "
                "(bigger ones would need too much memory). Train a run on smaller data to see the map move.",
                icon=":material/movie_off:")
        return
    anim = _animation(*key, what, colour, sel)
    st.plotly_chart(anim["fig"], key="map_animation")
    sample = ("" if anim["drawn"] == anim["total"] else
              f" A fixed random sample of {anim['drawn']:,} of the {anim['total']:,} {what}.")
    epochs = anim["epochs"]
    kept = ("" if anim["every"] else
            f" The run kept its factors at {len(epochs)} of its {epochs[-1]} epochs, spread geometrically (dense at "
            f"the start, where they move most): {', '.join(map(str, epochs[:6]))}, … {epochs[-1]}; the slider is "
            "labelled with those epochs.")
    st.caption("Press ▶ or drag the slider. Each epoch's PCA picture is rotated (or mirrored) onto the next one's "
               "by orthogonal Procrustes, so the map does not spin or flip between epochs: what moves is what "
               "the model learned. The axes hold every point of every frame. The last frame is the PCA map "
               "(choose PCA above to compare)." + kept + sample)


def planted_vs_learned(sel: SelectedRun, key: tuple[str, float], colour: str) -> None:
    st.subheader("Planted versus learned", anchor=False)
    res = _planted(*key, sel)
    if res is None:
        st.info("The model's ids do not match this synthetic dataset's, so the planted factors cannot be lined up.")
        return
    colour = colour if colour in charts.ITEM_COLOURS else "genre"
    planted, learned = _planted_figures(*key, colour, sel)
    left, right = st.columns(2)
    left.plotly_chart(planted, key="map_planted")
    right.plotly_chart(learned, key="map_learned")
    st.caption("Both pictures are PCA maps; the learned one is rotated/mirrored onto the planted one (orthogonal "
               "Procrustes), since a factorisation can only be learned up to such a rotation. Colours as in the "
               "map above; on synthetic data “genre” is the planted factor a movie loads on most (and its sign).")
    c1, c2 = st.columns(2)
    c1.metric("Movie-factor recovery", f"{res['final_items']:.3f}")
    c2.metric("User-factor recovery", f"{res['final_users']:.3f}")
    curve = res["curve"]
    n_items = len(_items(*key, sel))
    if len(curve):
        st.plotly_chart(chart_frame(charts.recovery_figure(curve, baseline=math.sqrt(res["rank"] / max(1, n_items)))),
                        key="map_recovery")
    st.markdown("**Recovery** is the mean cosine of the angles between the space the learned factors span and the "
                "space the planted ones span: 1 means the model found the planted taste directions exactly (up to a "
                "rotation, which no factorisation can pin down), while random directions would score only about "
                f"√(rank / movies) ≈ {math.sqrt(res['rank'] / max(1, n_items)):.2f}.")


# ---------------------------------------------------------------------------- the page
proj.warm_up_in_background()  # the 2D map's UMAP/t-SNE kernels compile while this page is read
st.title("2D map")
sel = selected_run()
if sel is not None:
    st.caption(sel.title)
    key = (sel.run_id, sel.stamp)
    what, colour = controls(sel)
    st.fragment(the_map)(sel, key, what, colour)
    st.divider()
    st.fragment(watch_it_learn)(sel, key, what, colour)
    if sel.data.truth is not None:
        st.divider()
        planted_vs_learned(sel, key, colour)
