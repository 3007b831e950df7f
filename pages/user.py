"""One user: their ratings against the model's predictions, their errors, their
recommendations, and any prediction taken apart into its exact parts.

Which ratings were train and which test comes from re-making the run's split (same
spec, same seed), cached per run. A user id the dataset does not know gets a message.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from mfcore.data.splits import make_split
from mfcore.errors import MFError, UnknownIdError
from mfcore.inspect import projection as proj
from mfcore.inspect import views
from ui import inspect_charts as charts
from ui import jobs
from ui.datasets import plural
from ui.layout import chart_frame
from ui.selection import SelectedRun, selected_run
from ui.text import html, md

USER_KEY = "user_page_id"  # text input: the raw user id
RUN_KEY = "user_page_run"  # the run the id was chosen for (a new run starts from its first user)
PICK_KEY = "user_page_source"
# Up to this many movies a picker lists them all; above (ml-25m has 62k), a title search fills it.
PICK_ALL = int(os.environ.get("MFSTUDIO_PICK_ALL", "5000"))



# ---------------------------------------------------------------------------- cached numbers
@st.cache_resource(show_spinner="Re-making the run's train/test split…", max_entries=6)
def _roles(run_id: str, stamp: float, _sel: SelectedRun) -> tuple[np.ndarray | None, str]:
    """Per rating: 0 not used, 1 train, 2 test; and a note on where the split came from."""
    snap = _sel.snapshot
    try:
        seed = int(jobs.get_store().get(run_id).seed)
        split = make_split(_sel.data, snap.split, seed)
    except (MFError, KeyError, AttributeError) as exc:
        return None, f"The run's split ({snap.split}) could not be re-made ({exc}): every rating is shown as train."
    return views.rating_roles(_sel.data, split), f"Train and test as in the run (split seed {seed}): {split.describe()}."


@st.cache_resource(show_spinner=False, max_entries=6)
def _items(run_id: str, stamp: float, _sel: SelectedRun) -> pd.DataFrame:
    table = views.item_table(_sel.model, _sel.data)
    table["label"] = charts.unique_labels(table["title"].tolist(), table["item"].tolist())
    return table


@st.cache_data(show_spinner=False, max_entries=64)
def _user(run_id: str, stamp: float, user: Any, _sel: SelectedRun, _roles: np.ndarray | None) -> pd.DataFrame:
    return views.user_ratings(_sel.model, _sel.data, user, _roles)


@st.cache_data(show_spinner=False, max_entries=64)
def _recs(run_id: str, stamp: float, user: Any, n: int, exclude: tuple, _sel: SelectedRun,
          _items: pd.DataFrame) -> pd.DataFrame:
    return views.recommendations(_sel.model, _sel.data, user, n=n, exclude=list(exclude), items=_items)


# ---------------------------------------------------------------------------- sections
def pick_user(sel: SelectedRun) -> Any | None:
    """The id box (and a random-user button); the raw id, or None after a message."""
    ids = sel.data.user_ids.raw
    if st.session_state.get(RUN_KEY) != sel.run_id or USER_KEY not in st.session_state:
        st.session_state[USER_KEY] = str(ids[0])
        st.session_state[RUN_KEY] = sel.run_id

    def _random() -> None:
        st.session_state[USER_KEY] = str(np.random.default_rng().choice(ids))

    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    span = f"{ids.min()}–{ids.max()}" if np.issubdtype(ids.dtype, np.integer) else f"e.g. {ids[0]}"
    text = c1.text_input("User id", key=USER_KEY, help=f"{len(ids):,} users; ids {span}")
    c2.button("Random user", on_click=_random, icon=":material/casino:", width="stretch", key="user_random")
    text = (text or "").strip()
    if not text:
        st.info("Type a user id.")
        return None
    try:
        user = ids[sel.data.user_ids.index_of(text)]
    except UnknownIdError:
        st.warning(f"There is no user **{md(text)}** in {md(sel.data.name)}: it has {len(ids):,} users with ids {span}. "
                   "Type another id or press *Random user*.", icon=":material/person_off:")
        return None
    if user not in sel.model.user_ids:
        st.warning(f"User {md(user)} is in the data, but this model never learned a vector for them (was it trained on other data?).")
        return None
    return user.item() if isinstance(user, np.generic) else user


def profile(sel: SelectedRun, user: Any, ratings: pd.DataFrame) -> None:
    model = sel.model
    u = model.user_ids.index_of(user)
    cols = st.columns(3)
    cols[0].metric("Ratings", f"{len(ratings):,}")
    cols[1].metric("Their mean rating", f"{ratings['rating'].mean():.2f}" if len(ratings) else "–")
    cols[2].metric("User bias", f"{model.user_biases()[u]:+.3f}" if model.model_config.use_bias else "none",
                   help="How much above (or below) the global term this user rates, as the model learned it.")
    users = sel.data.users
    if users is not None and user in users.index:
        row = users.loc[user]
        parts = [f"{name}: **{md(row[name])}**" for name in ("age", "gender", "occupation", "zip", "age_group")
                 if name in row.index and pd.notna(row[name])]
        st.markdown("User " + md(user) + " · " + " · ".join(p.replace("age_group", "age band") for p in parts))


def errors(summary: pd.DataFrame, note: str) -> None:
    by_set = summary.set_index("set")
    cols = st.columns(4)
    for n, (name, metric) in enumerate((("train", "rmse"), ("train", "mae"), ("test", "rmse"), ("test", "mae"))):
        value = by_set.at[name, metric] if name in by_set.index else None
        count = int(by_set.at[name, "ratings"]) if name in by_set.index else 0
        cols[n].metric(f"{metric.upper()} on {name}", f"{value:.3f}" if value is not None else "–",
                       help=f"Over this user's {plural(count, name + ' rating')}." if count else f"No {name} ratings.")
    st.caption(note)


RATING_COLUMNS = {
    "title": st.column_config.TextColumn("title", width="medium"),
    "rating": st.column_config.NumberColumn("rating", format="%.1f"),
    "predicted": st.column_config.NumberColumn("predicted", format="%.2f"),
    "error": st.column_config.NumberColumn("error", format="%+.2f", help="predicted − rating"),
    "ratings": st.column_config.NumberColumn("ratings", format="%d", help="How many users rated it"),
    "mean_rating": st.column_config.NumberColumn("mean rating", format="%.2f"),
    "item": st.column_config.NumberColumn("id", format="%d"),
}


def recommendations(sel: SelectedRun, key: tuple[str, float], user: Any, ratings: pd.DataFrame) -> None:
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    n = c1.number_input("How many", 1, 100, 10, key="user_rec_n")
    show_test = c2.toggle("Let their test movies appear (marked)", key="user_rec_test",
                          help="Off: only movies this user never rated. On: their held-out test movies compete "
                               "too, as they do when recall@k is measured; hits are marked with their rating.")
    keep = ratings["set"] == "test" if show_test else np.zeros(len(ratings), dtype=bool)
    exclude = tuple(ratings.loc[~keep, "item"].tolist())
    recs = _recs(*key, user, int(n), exclude, sel, _items(*key, sel)).copy()
    if show_test:
        test = ratings[ratings["set"] == "test"].set_index("item")["rating"]
        recs.insert(4, "their test rating", recs["item"].map(test))
    st.dataframe(recs.drop(columns=["item"]), hide_index=True, column_config=RATING_COLUMNS, key="user_recs")
    hidden = "movies they rated in train" if show_test else f"the {plural(len(ratings), 'movie')} they rated"
    st.caption(f"Every movie but {hidden}, ranked by predicted rating.")


def decomposition(sel: SelectedRun, key: tuple[str, float], user: Any, ratings: pd.DataFrame) -> None:
    model = sel.model
    k = model.model_config.n_factors
    items = _items(*key, sel)
    c1, c2 = st.columns([1, 3])
    source = c1.radio("Movie", ["From their ratings", "Any movie"], key=PICK_KEY,
                      disabled=len(ratings) == 0, index=0 if len(ratings) else 1)
    if source == "From their ratings" and len(ratings):
        rated = ratings
        if len(rated) > PICK_ALL:  # a heavy ml-25m rater: keep the predictions furthest off
            rated = rated.loc[rated["error"].abs().nlargest(PICK_ALL).index].sort_values("title", kind="stable")
            c2.caption(f"Their {PICK_ALL:,} ratings the model predicts worst, of {len(ratings):,}.")
        options = rated["item"].tolist()
        lookup = {i: f"{t} — rated {r:g} ({s})" for i, t, r, s in
                  zip(rated["item"], rated["title"], rated["rating"], rated["set"])}
        pick_key = "user_pick_rated"
    else:
        pick_key = "user_pick_any"
        if len(items) > PICK_ALL:  # ml-25m: 62k movies are too many for one selectbox
            query = c2.text_input(f"Search a title among {len(items):,} movies", key="user_search",
                                  help="Part of the title. Empty: the 200 most-rated movies.")
            by_pop = views.search_items(items, query, limit=200)
            if by_pop.empty:
                c2.warning(f"No title contains “{md(query)}”.")
                return
        else:
            by_pop = items.sort_values("ratings", ascending=False, kind="stable")
        options = by_pop["item"].tolist()
        lookup = dict(zip(by_pop["item"], by_pop["label"] + " · " + by_pop["ratings"].astype(str) + " ratings"))
    if st.session_state.get(pick_key) not in lookup:
        st.session_state.pop(pick_key, None)
    item = c2.selectbox("Choose the movie (type to search)", options, format_func=lambda i: lookup.get(i, str(i)),
                        key=pick_key)
    max_f = st.slider("Factors drawn one by one (the rest are summed into one bar)", 1, k, min(k, 12),
                      key="user_wf_factors") if k > 1 else 1
    d = views.explain_prediction(model, user, item)
    steps = views.waterfall_steps(d, max_factors=int(max_f))
    title = sel.data.title_of(item)
    st.plotly_chart(chart_frame(charts.prediction_waterfall(steps, f"User {html(user)} × {charts._short(title, 60)}")),
                    key="user_waterfall")
    lines = charts.decomposition_lines(d, "u")
    lines.append(f"**Prediction: {d['prediction']:.4f}**" + (
        f" (they rated it {ratings.set_index('item').at[item, 'rating']:g})" if item in set(ratings["item"]) else ""))
    st.markdown("  \n".join(lines))


def their_ratings(sel: SelectedRun, key: tuple[str, float], user: Any, ratings: pd.DataFrame) -> None:
    if not len(ratings):
        st.info(f"User {md(user)} has no ratings in {md(sel.data.name)}.")
        return
    left, right = st.columns([5, 4])
    left.plotly_chart(chart_frame(charts.actual_vs_predicted(ratings, sel.data.rating_scale)), key="user_scatter")
    with right:
        st.markdown(f"**Their {plural(len(ratings), 'rating')}**")
        st.dataframe(ratings[["title", "rating", "predicted", "error", "set"]], hide_index=True, height=380,
                     column_config=RATING_COLUMNS, key="user_ratings")


VIEW_KEY = "user_view"  # the open tab's label
# Tab label -> section; only the open tab runs and is drawn (lazy tabs), so another user
# redraws one chart; sections with controls are fragments.
VIEWS = {
    "Their ratings": their_ratings,
    "Recommendations": st.fragment(recommendations),
    "Why this prediction?": st.fragment(decomposition),
}


# ---------------------------------------------------------------------------- the page
def page() -> None:
    proj.warm_up_in_background()  # the 2D map's UMAP/t-SNE kernels compile while this page is read
    st.title("One user")
    sel = selected_run()
    if sel is None:
        return
    st.caption(sel.title)
    user = pick_user(sel)
    if user is None:
        return
    key = (sel.run_id, sel.stamp)
    roles, note = _roles(*key, sel)
    ratings = _user(*key, user, sel, roles)
    profile(sel, user, ratings)
    errors(views.error_summary(ratings), note)
    tabs = st.tabs(list(VIEWS), key=VIEW_KEY, on_change="rerun")
    for tab, name in zip(tabs, VIEWS):
        if tab.open:
            with tab:
                VIEWS[name](sel, key, user, ratings)


page()
