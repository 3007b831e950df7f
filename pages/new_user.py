"""Rate movies yourself: a visitor becomes a user of the trained model in milliseconds.

The visitor rates a few movies (the most-rated ones in an editable table, or any movie
through a search); :func:`mfcore.inspect.foldin.fold_in` solves their vector and bias
with the movie factors held fixed (one small ridge regression, no retraining), and the
page shows their recommendations, any recommendation taken apart into its exact parts,
and where their vector sits among the trained users on the users' PCA map.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from mfcore.errors import MFError
from mfcore.inspect import foldin, views
from mfcore.inspect import projection as proj
from ui import inspect_charts, my_ratings
from ui import map_charts as charts
from ui.text import md
from ui.selection import SelectedRun, selected_run

VERSION_KEY = "new_user_editor_version"  # {run id: int}; bumped to rebuild the table after outside changes
POPULAR_N = 50
USERS_DRAWN = 20_000  # users drawn on the map (the PCA is fitted on all of them)



# ---------------------------------------------------------------------------- cached numbers
@st.cache_resource(show_spinner="Listing the movies…", max_entries=6)
def _items(run_id: str, stamp: float, _sel: SelectedRun) -> pd.DataFrame:
    """The item table in model order with a display label (read-only)."""
    table = views.item_table(_sel.model, _sel.data)
    table["label"] = table["title"].where(table["title"] != "", "item " + table["item"].astype(str))
    return table


@st.cache_data(show_spinner=False, max_entries=6)
def _rating_step(run_id: str, stamp: float, _sel: SelectedRun) -> float:
    """1 when every rating in the data is whole (ml-100k, ml-1m), else 0.5 (half stars)."""
    r = _sel.data.rating
    return 1.0 if np.all(r == np.round(r)) else 0.5


@st.cache_data(show_spinner="Placing the users…", max_entries=6)
def _user_map(run_id: str, stamp: float, _sel: SelectedRun) -> dict[str, Any]:
    """The users' PCA (fitted on every user), the drawn users' coordinates and hover text."""
    P = _sel.model.user_factors()
    fit = proj.fit_pca(P)
    n = len(P)
    rows = np.arange(n) if n <= USERS_DRAWN else np.sort(np.random.default_rng(0).choice(n, USERS_DRAWN, replace=False))
    table = views.user_table(_sel.model, _sel.data).iloc[rows]
    return {"fit": fit, "coords": fit.transform(P[rows]), "hover": charts.user_hover(table), "n": n,
            "drawn": len(rows)}


# ---------------------------------------------------------------------------- session state
def _ratings(run_id: str) -> dict[Any, float]:
    """This person's ratings of the run's dataset: stored with their owner id, so a reload keeps them."""
    return my_ratings.ratings(run_id)


def _version(run_id: str) -> int:
    return st.session_state.setdefault(VERSION_KEY, {}).get(run_id, 0)


def _bump(run_id: str) -> None:
    """Rebuild the popular table from the ratings (after a change made elsewhere)."""
    versions = st.session_state.setdefault(VERSION_KEY, {})
    versions[run_id] = versions.get(run_id, 0) + 1


def _add(run_id: str, item: Any, rating: float) -> None:
    _ratings(run_id)[item] = float(rating)
    my_ratings.sync(run_id)
    _bump(run_id)


def _remove(run_id: str, item: Any) -> None:
    _ratings(run_id).pop(item, None)
    my_ratings.sync(run_id)
    _bump(run_id)


def _clear(run_id: str) -> None:
    _ratings(run_id).clear()
    my_ratings.sync(run_id)
    _bump(run_id)


def editor_key(run_id: str, version: int) -> str:
    """The popular table's widget key (tests seed its edits through it)."""
    return f"new_user_popular_{run_id}_{version}"


# ---------------------------------------------------------------------------- sections
BASE_KEY = "new_user_editor_base"  # {run id: (version, DataFrame)}: the table the editor was built on


def _base(sel: SelectedRun, table: pd.DataFrame, ratings: dict[Any, float]) -> pd.DataFrame:
    """The popular table as the editor was built on, frozen until the version changes.

    The editor must get the *same* data on every rerun: Streamlit's grid resets its pending
    edits when the data it was given changes, so a table rebuilt from the ratings after each
    edit lost the edits typed while the previous one was being saved (issue 10: about half
    of 20 quick edits). The edits live in the editor's own state (cumulative), and are
    applied to the ratings on every run; only a change made elsewhere (Add, Remove, Start
    over) bumps the version and rebuilds the table from the ratings.
    """
    version = _version(sel.run_id)
    bases = st.session_state.setdefault(BASE_KEY, {})
    held = bases.get(sel.run_id)
    if held is not None and held[0] == version:
        return held[1]
    top = table.nlargest(POPULAR_N, "ratings")
    base = pd.DataFrame({
        "item": top["item"].to_numpy(),
        "title": top["label"].to_numpy(),
        "your rating": [ratings.get(i, np.nan) for i in top["item"].tolist()],
        "genres": top["genres"].str.replace("|", ", ", regex=False).to_numpy(),
        "ratings": top["ratings"].to_numpy(),
    })
    bases[sel.run_id] = (version, base)
    return base


def popular(sel: SelectedRun, table: pd.DataFrame, ratings: dict[Any, float], step: float) -> list[tuple[str, Any]]:
    """The most-rated movies with an editable rating column; edits go straight into ``ratings``.

    Returns what this run changed, as (title, new rating or None) pairs, for the confirmation.
    """
    lo, hi = sel.data.rating_scale
    base = _base(sel, table, ratings)
    st.markdown(f"**The {len(base)} most-rated movies**: double-click a cell under *your rating*, type "
                f"{lo:g}–{hi:g} and press Enter; clear it to take the rating back.")
    edited = st.data_editor(
        base, key=editor_key(sel.run_id, _version(sel.run_id)), hide_index=True, height=420,
        disabled=["item", "title", "genres", "ratings"], column_order=["title", "your rating", "genres", "ratings"],
        column_config={
            "title": st.column_config.TextColumn("title", width="medium"),
            "your rating": st.column_config.NumberColumn("your rating", min_value=lo, max_value=hi, step=step,
                                                         format="%g", help=f"{lo:g} (worst) to {hi:g} (best)"),
            "genres": st.column_config.TextColumn("genres", width="small"),
            "ratings": st.column_config.NumberColumn("ratings", format="%d", help="How many users rated it"),
        },
    )
    changed: list[tuple[str, Any]] = []
    for item, title, value in zip(edited["item"].tolist(), edited["title"].tolist(), edited["your rating"].tolist()):
        if value is None or pd.isna(value):
            if ratings.pop(item, None) is not None:
                changed.append((title, None))
        else:
            value = float(np.clip(float(value), lo, hi))
            if ratings.get(item) != value:
                ratings[item] = value
                changed.append((title, value))
    return changed


def confirm(changed: list[tuple[str, Any]], n_ratings: int) -> None:
    """Say which ratings this run saved (the last edits typed), so no edit passes unseen."""
    if not changed:
        return
    words = [f"{md(title)} → **{value:g}**" if value is not None else f"{md(title)} taken back"
             for title, value in changed[-5:]]
    more = f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
    st.success(f"Saved: {', '.join(words)}{more}. You have rated {n_ratings} movie{'s' if n_ratings != 1 else ''}; "
               "a reload keeps them.", icon=":material/check_circle:")


def search_and_add(sel: SelectedRun, table: pd.DataFrame, step: float) -> None:
    lo, hi = sel.data.rating_scale
    st.markdown("**Any other movie**")
    text = st.text_input("Find a movie to rate", key="new_user_search", placeholder="part of a title, e.g. alien")
    if not (text or "").strip():
        return
    hits = charts.find_titles(table, text)
    if not len(hits):
        st.warning(f"No movie title contains “{md(text.strip())}”.", icon=":material/search_off:")
        return
    labels = dict(zip(hits["item"], hits["label"] + " · " + hits["ratings"].map("{:,}".format) + " ratings"))
    if st.session_state.get("new_user_pick") not in labels:
        st.session_state["new_user_pick"] = next(iter(labels))
    item = st.selectbox(f"{len(hits)} match{'es' if len(hits) != 1 else ''}", list(labels), key="new_user_pick",
                        format_func=lambda i: labels.get(i, str(i)))
    item = item.item() if isinstance(item, np.generic) else item
    values = [float(v) for v in np.arange(lo, hi + step / 2, step)]
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    rating = c1.select_slider("Your rating", values, value=values[len(values) // 2], format_func=lambda v: f"{v:g}",
                              key="new_user_rating")
    c2.button("Add", on_click=_add, args=(sel.run_id, item, rating), icon=":material/add:", key="new_user_add",
              type="primary", width="stretch")


def your_ratings(sel: SelectedRun, table: pd.DataFrame, ratings: dict[Any, float],
                 folded: foldin.FoldedUser | None) -> None:
    st.markdown(f"**Your ratings ({len(ratings)})**")
    if not ratings:
        st.caption("None yet.")
        return
    names = table.set_index("item")["label"]
    items = list(ratings)
    mine = pd.DataFrame({"title": names.reindex(items).to_numpy(), "yours": [ratings[i] for i in items]})
    if folded is not None:
        mine["model's fit"] = folded.predict(sel.model, np.asarray(items))
    st.dataframe(mine, hide_index=True, key="new_user_mine", height=min(38 + 35 * len(mine), 260), column_config={
        "title": st.column_config.TextColumn("title", width="medium"),
        "yours": st.column_config.NumberColumn("yours", format="%g"),
        "model's fit": st.column_config.NumberColumn("model's fit", format="%.2f",
                                                     help="What your folded-in vector predicts for the movies you "
                                                          "rated: a handful of numbers cannot fit them all exactly."),
    })
    labels = dict(zip(items, names.reindex(items).fillna("").astype(str)))
    gone = st.selectbox("Take one back", items, format_func=lambda i: labels.get(i) or str(i),
                        key="new_user_remove_pick")
    c1, c2 = st.columns(2)
    c1.button("Remove it", on_click=_remove, args=(sel.run_id, gone), key="new_user_remove", width="stretch",
              icon=":material/remove:")
    c2.button("Start over", on_click=_clear, args=(sel.run_id,), key="new_user_clear", width="stretch",
              icon=":material/restart_alt:")


REC_COLUMNS = {
    "title": st.column_config.TextColumn("title", width="large"),
    "predicted": st.column_config.NumberColumn("predicted for you", format="%.2f"),
    "genres": st.column_config.TextColumn("genres", width="medium"),
    "ratings": st.column_config.NumberColumn("ratings", format="%d", help="How many users rated it"),
    "mean_rating": st.column_config.NumberColumn("mean rating", format="%.2f"),
}


def recommendations(sel: SelectedRun, table: pd.DataFrame, folded: foldin.FoldedUser, took_ms: float) -> pd.DataFrame:
    st.subheader("Recommended for you", anchor=False)
    c1, c2 = st.columns(2)
    n = int(c1.number_input("How many", 1, 100, 10, key="new_user_n"))
    floor = int(c2.number_input("Only movies with at least this many ratings", 0, 10_000, 20, step=5,
                                key="new_user_floor",
                                help="A movie few people rated has a noisy vector that can land on top of anyone's "
                                     "list; 0 lets every movie compete."))
    t0 = time.perf_counter()
    rare = table["item"].to_numpy()[table["ratings"].to_numpy() < floor] if floor > 0 else ()
    recs = foldin.recommend_for(sel.model, folded, n=n, exclude=rare)
    took_ms += 1000 * (time.perf_counter() - t0)
    info = table.set_index("item")
    shown = recs.assign(title=info.loc[recs["item"], "label"].to_numpy(),
                        genres=info.loc[recs["item"], "genres"].str.replace("|", ", ", regex=False).to_numpy(),
                        ratings=info.loc[recs["item"], "ratings"].to_numpy(),
                        mean_rating=info.loc[recs["item"], "mean_rating"].to_numpy())
    st.dataframe(shown[["title", "predicted", "genres", "ratings", "mean_rating"]], hide_index=True,
                 column_config=REC_COLUMNS, key="new_user_recs")
    k = sel.model.model_config.n_factors
    bias = f" and a bias of {folded.bias:+.3f}" if sel.model.model_config.use_bias else ""
    floor_text = f" with at least {floor:,} ratings" if floor > 0 else ""
    st.caption(f"Every movie{floor_text} you have not rated, ranked by predicted rating. Your {k}-number taste "
               f"vector{bias} was solved from your {len(folded.ratings)} rating(s) in {took_ms:.1f} ms by one ridge "
               "regression with the movie factors held fixed: no retraining.")
    if len(folded.ratings) < 5:
        st.caption("With fewer than about five ratings the vector leans on the regularisation and the list is "
                   "close to *most liked overall*; rate a few more to see it turn personal.")
    return shown


def why(sel: SelectedRun, folded: foldin.FoldedUser, recs: pd.DataFrame) -> None:
    st.subheader("Why this recommendation?", anchor=False)
    options = recs["item"].tolist()
    labels = dict(zip(recs["item"], recs["title"]))
    if st.session_state.get("new_user_why") not in labels:
        st.session_state["new_user_why"] = options[0]
    k = sel.model.model_config.n_factors
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    item = c1.selectbox("Recommendation", options, format_func=lambda i: labels.get(i, str(i)), key="new_user_why")
    max_f = int(c2.slider("Factors drawn one by one", 1, k, min(k, 12), key="new_user_wf_factors")) if k > 1 else 1
    d = foldin.decompose_folded(sel.model, folded, item)
    steps = views.waterfall_steps(d, max_factors=max_f)
    st.plotly_chart(inspect_charts.prediction_waterfall(steps, f"You × {charts._short(labels[item], 60)}"),
                    key="new_user_waterfall")
    lines = inspect_charts.decomposition_lines(d, "you")
    lines.append(f"**Prediction: {d['prediction']:.4f}**")
    st.markdown("  \n".join(lines))
    st.caption("Green bars push the prediction up, red ones down. A factor's bar is your value times the movie's "
               "value on that factor: it is large when you both lean the same way (or both the opposite way).")


def where_you_sit(sel: SelectedRun, key: tuple[str, float], folded: foldin.FoldedUser) -> None:
    st.subheader("You among the users", anchor=False)
    um = _user_map(*key, sel)
    fit: proj.PCAFit = um["fit"]
    you = fit.transform(folded.vector)[0]
    ev = fit.explained_variance
    fig = charts.users_map_with_you(um["coords"], um["hover"], you, title="User vectors, PCA",
                                    axes=(f"PC1 ({100 * ev[0]:.0f}%)", f"PC2 ({100 * ev[1]:.0f}%)"))
    st.plotly_chart(fig, key="new_user_map")
    drawn = "" if um["drawn"] == um["n"] else f" (a random {um['drawn']:,} of the {um['n']:,} users are drawn)"
    st.caption("Each dot is a trained user's taste vector" + drawn + ". Your vector is placed with the *same* PCA "
               "that was fitted on the trained users, not a new one, so the star and the dots share the axes. Few "
               "ratings keep you near the middle: the regularisation pulls an uncertain vector towards zero.")


DRAWN_KEY = "new_user_drawn"  # {run id: the ratings the sections under the table were drawn with}
FULL_RUN_KEY = "new_user_full_run"  # True while the whole page runs (False in the fragment's own reruns)


def _signature(ratings: dict[Any, float]) -> tuple:
    return tuple(sorted(((str(k), v) for k, v in ratings.items())))


def _fold(sel: SelectedRun, ratings: dict[Any, float], quiet: bool = False) -> tuple[foldin.FoldedUser | None, float]:
    """The person folded into the model (and how long it took); None without ratings or on an error."""
    if not ratings:
        return None, 0.0
    try:
        t0 = time.perf_counter()
        folded = foldin.fold_in(sel.model, ratings)
        return folded, 1000 * (time.perf_counter() - t0)
    except MFError as exc:
        if not quiet:
            st.error(f"Your ratings could not be used: {md(exc)}")
        return None, 0.0


@st.fragment
def rate_movies(sel: SelectedRun, table: pd.DataFrame, ratings: dict[Any, float], step: float) -> None:
    """The rating controls as one fragment: an edit in the table reruns only this block.

    A whole-page rerun (recommendations, waterfall, the users' map) that is still running
    when the next edit is committed made the grid drop that edit (issue 10, measured in a
    real browser: 11 of 20 quick edits kept with a page rerun per edit, 20 of 20 with this
    fragment). So edits are saved and confirmed here at once, and the sections below
    follow when the person asks (one click), not in the middle of their typing.
    """
    left, right = st.columns([3, 2], gap="large")
    with left:
        changed = popular(sel, table, ratings, step)
        save_error = my_ratings.sync(sel.run_id)
        if save_error:
            st.error(save_error)
        else:
            confirm(changed, len(ratings))
        drawn = st.session_state.setdefault(DRAWN_KEY, {}).get(sel.run_id)
        if not st.session_state.get(FULL_RUN_KEY) and drawn != _signature(ratings):
            if st.button(f"Update recommendations ({len(ratings)} rating{'s' if len(ratings) != 1 else ''})",
                         key="new_user_update", type="primary", icon=":material/refresh:",
                         help="Redraw the recommendations and maps below with all your ratings."):
                st.rerun(scope="app")
    folded, _ = _fold(sel, ratings, quiet=True)
    with right:
        search_and_add(sel, table, step)
        st.divider()
        your_ratings(sel, table, ratings, folded)


# ---------------------------------------------------------------------------- the page
# No UMAP/t-SNE warm-up here (the other inspection pages start it): its compilation on a
# fresh server slowed the rating fragment's reruns so much that a quick run of grid edits
# lost one (19 of 20 kept, twice, in tests/test_browser_inspect_polish.py; 20 of 20 without).
st.title("Rate movies yourself")
sel = selected_run()
if sel is not None:
    st.caption(sel.title)
    key = (sel.run_id, sel.stamp)
    table = _items(*key, sel)
    step = _rating_step(*key, sel)
    ratings = _ratings(sel.run_id)
    st.markdown("Rate a few movies you know. The model then treats you as one more user: it finds the taste vector "
                "that best explains your ratings, keeping every movie's vector as it learned it.")
    st.session_state[FULL_RUN_KEY] = True
    try:
        rate_movies(sel, table, ratings, step)
    finally:
        st.session_state[FULL_RUN_KEY] = False
    st.session_state.setdefault(DRAWN_KEY, {})[sel.run_id] = _signature(ratings)
    folded, took_ms = _fold(sel, ratings)
    st.divider()
    if not ratings:
        st.info("Your recommendations appear here. Rate movies above (double-click a cell under *your rating*, or "
                "find any movie on the right), then press *Update recommendations*.", icon=":material/star:")
    elif folded is not None:
        recs = recommendations(sel, table, folded, took_ms)
        st.divider()
        if len(recs):
            why(sel, folded, recs)
            st.divider()
        where_you_sit(sel, key, folded)
