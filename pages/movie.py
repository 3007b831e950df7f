"""One movie: who the model thinks will like it, next to who actually rated it.

The movie's predicted rating for every user against its actual ratings, the users
predicted to like it most and least, the same split by demographic group (where the
dataset has demographics), and its nearest neighbours by cosine similarity of the item
factors. Numbers from :mod:`mfcore.inspect.views`, cached per run and movie.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from mfcore.inspect import projection as proj
from mfcore.inspect import views
from ui import inspect_charts as charts
from ui.layout import chart_frame
from ui.selection import SelectedRun, selected_run
from ui.text import md

MOVIE_KEY = "movie_page_item"
RUN_KEY = "movie_page_run"
GROUPS = (("age_group", "Age band"), ("gender", "Gender"), ("occupation", "Occupation"))
GROUP_KEY = "movie_group_by"  # the demographic column the group chart splits by
VIEW_KEY = "movie_view"  # the open tab's label
# Up to this many movies a picker lists them all; above (ml-25m has 62k), a title search fills it.
# One selectbox (typing filters it in the browser, matches in its most-rated-first order) up to
# this many movies: ml-latest-small's 9,742 and ml-10m's 10,681 included.
PICK_ALL = int(os.environ.get("MFSTUDIO_PICK_ALL", "20000"))



# ---------------------------------------------------------------------------- cached numbers
@st.cache_resource(show_spinner="Listing the movies…", max_entries=6)
def _items(run_id: str, stamp: float, _sel: SelectedRun) -> pd.DataFrame:
    """The item table, most-rated first, with a unique label per movie for the picker."""
    table = views.item_table(_sel.model, _sel.data)
    table["label"] = charts.unique_labels(table["title"].tolist(), table["item"].tolist())
    return table.sort_values(["ratings", "title"], ascending=[False, True], kind="stable").reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=64)
def _movie(run_id: str, stamp: float, item: Any, _sel: SelectedRun) -> dict[str, Any]:
    info = views.movie_across_users(_sel.model, _sel.data, item)
    actual = views.movie_ratings(_sel.data, item)
    users = info["users"]
    users["actual"] = users["user"].map(actual)
    groups = {col: views.group_values(users, col) for col, _ in GROUPS if col in users.columns}
    every = views.movie_users(users, actual)
    return {"predicted": info["predicted"], "actual": info["actual"], "n_ratings": info["n_ratings"],
            "top": every.head(10), "bottom": every.iloc[::-1].head(10), "groups": groups, "every": every}


@st.cache_data(show_spinner=False, max_entries=16)
def _csv(run_id: str, stamp: float, item: Any, _every: pd.DataFrame) -> bytes:
    return _every.to_csv(index=False).encode("utf-8")


@st.cache_data(show_spinner=False, max_entries=64)
def _similar(run_id: str, stamp: float, item: Any, n: int, min_ratings: int, centre: bool, _sel: SelectedRun,
             _table: pd.DataFrame) -> pd.DataFrame:
    # views.similar_movies wants the item table in the model's item order, not by popularity.
    in_model_order = _table.set_index("item").loc[_sel.model.item_ids.raw].reset_index()
    return views.similar_movies(_sel.model, _sel.data, item, n=n, min_ratings=min_ratings, items=in_model_order,
                                centre=centre)


# ---------------------------------------------------------------------------- sections
def pick_movie(sel: SelectedRun, table: pd.DataFrame) -> Any | None:
    """A selectbox of every movie (most-rated first); for catalogues over ``PICK_ALL`` movies
    (ml-25m has 62k), a title search that fills the selectbox with up to 200 matches."""
    if st.session_state.get(RUN_KEY) != sel.run_id or st.session_state.get(MOVIE_KEY) not in set(table["item"]):
        st.session_state[MOVIE_KEY] = table["item"].iloc[0]
        st.session_state[RUN_KEY] = sel.run_id
    shown = table
    if len(table) > PICK_ALL:
        query = st.text_input(f"Search a title among {len(table):,} movies", key="movie_search",
                              help="Part of the title, e.g. 'star wars'. Empty: the 200 most-rated movies.")
        shown = views.search_items(table, query, limit=200)
        if shown.empty:
            st.warning(f"No title contains “{md(query)}”.")
            return None
        current = st.session_state[MOVIE_KEY]
        if current not in set(shown["item"]):
            st.session_state[MOVIE_KEY] = shown["item"].iloc[0]
    labels = dict(zip(shown["item"], shown["label"] + " · " + shown["ratings"].map("{:,}".format) + " ratings"))
    item = st.selectbox("Movie (type part of the title to search; most-rated first)", shown["item"].tolist(),
                        format_func=lambda i: labels.get(i, str(i)), key=MOVIE_KEY, filter_mode="contains")
    return item.item() if isinstance(item, np.generic) else item


NOT_RATED = "–"  # what the user tables show for a user who did not rate the movie (not "None")
USER_COLUMNS = {
    "rank": st.column_config.NumberColumn("#", format="%d", help="Rank by the unclipped prediction (1 = likes it most)"),
    "predicted": st.column_config.NumberColumn("predicted", format="%.2f",
                                               help="The prediction, clipped to the rating scale"),
    "unclipped": st.column_config.NumberColumn("unclipped", format="%.2f",
                                               help="Before clipping to the rating scale: users whose predictions "
                                                    "all clip to the top are ranked by this"),
    "actual": st.column_config.NumberColumn("their rating", format="%g", help=f"{NOT_RATED}: they did not rate it"),
    "bias": st.column_config.NumberColumn("user bias", format="%+.3f"),
    "ratings": st.column_config.NumberColumn("ratings", format="%d", help="How many movies they rated"),
    "user": st.column_config.NumberColumn("user", format="%d"),
}


def summary(sel: SelectedRun, item: Any, row: pd.Series, movie: dict[str, Any]) -> None:
    model = sel.model
    i = model.item_ids.index_of(item)
    actual = movie["actual"]
    cols = st.columns(5)
    cols[0].metric("Users who rated it", f"{movie['n_ratings']:,}",
                   help=f"of {sel.data.n_users:,} users ({100 * movie['n_ratings'] / max(1, sel.data.n_users):.1f}%)")
    cols[1].metric("Mean actual rating", f"{actual.mean():.2f}" if len(actual) else "–")
    cols[2].metric("Mean predicted, all users", f"{np.mean(movie['predicted']):.2f}")
    cols[3].metric("Movie bias", f"{model.item_biases()[i]:+.3f}" if model.model_config.use_bias else "none")
    cols[4].metric("Vector length", f"{row['norm']:.3f}", help="L2 norm of its factor vector")
    st.caption(f"Genres: {md(row['genres'] or '–')} · id {md(item)}")


def users_table(frame: pd.DataFrame, demo: list[str]) -> pd.DataFrame:
    return frame[["rank", "user", "predicted", "unclipped", "actual", *demo]]


def predicted_vs_actual(sel: SelectedRun, key: tuple[str, float], item: Any, table: pd.DataFrame,
                        movie: dict[str, Any]) -> None:
    st.plotly_chart(chart_frame(charts.rating_distributions(movie["predicted"], movie["actual"],
                                                            sel.data.rating_scale)), key="movie_hist")
    demo = [c for c in ("age", "gender", "occupation") if c in movie["top"].columns]
    left, right = st.columns(2)
    left.markdown("**Predicted to like it most** (ranked by the unclipped prediction)")
    left.dataframe(users_table(movie["top"], demo), hide_index=True, column_config=USER_COLUMNS,
                   placeholder=NOT_RATED, key="movie_top")
    right.markdown("**Predicted to like it least**")
    right.dataframe(users_table(movie["bottom"], demo), hide_index=True, column_config=USER_COLUMNS,
                    placeholder=NOT_RATED, key="movie_bottom")


def every_user(sel: SelectedRun, key: tuple[str, float], item: Any, table: pd.DataFrame,
               movie: dict[str, Any]) -> None:
    """Every user's predicted rating for this movie (and their actual one), sortable, searchable, as CSV."""
    every = movie["every"]
    c1, c2 = st.columns([1, 1], vertical_alignment="bottom")
    text = c1.text_input("Look up a user id", key="movie_user_lookup", placeholder="e.g. 42")
    c2.download_button(
        f"Download all {len(every):,} users (CSV)", data=_csv(*key, item, every), on_click="ignore",
        file_name=f"movie_{re.sub(r'[^A-Za-z0-9_-]', '_', str(item))}_{sel.run_id}_users.csv", mime="text/csv",
        icon=":material/download:", key="movie_users_csv",
        help="Every user: rank, id, predicted (clipped) and unclipped rating, their actual rating if they rated "
             "it, how many movies they rated, their bias and demographics.")
    text = (text or "").strip()
    if text:
        hit = every[every["user"].astype(str) == text]
        if hit.empty:
            st.warning(f"There is no user **{md(text)}** in this model.", icon=":material/person_off:")
        else:
            row = hit.iloc[0]
            rated = f"rated it **{row['actual']:g}**" if pd.notna(row["actual"]) else "did not rate it"
            demo = " · ".join(md(row[c]) for c in ("age", "gender", "occupation") if c in hit.columns)
            st.success(f"User {md(row['user'])}{f' ({demo})' if demo else ''}: predicted **{row['predicted']:.2f}** "
                       f"(unclipped {row['unclipped']:.2f}), rank {int(row['rank']):,} of {len(every):,}; {rated}.",
                       icon=":material/person_search:")
            st.dataframe(hit, hide_index=True, column_config=USER_COLUMNS, placeholder=NOT_RATED,
                         key="movie_user_hit")
    st.dataframe(every, hide_index=True, column_config=USER_COLUMNS, placeholder=NOT_RATED,
                 key="movie_every_user", height=420)
    st.caption(f"All {len(every):,} users, ranked by the unclipped prediction. Click a column header to sort; the "
               "table's search (magnifier, top right) finds any value.")


def demographics(sel: SelectedRun, key: tuple[str, float], item: Any, table: pd.DataFrame,
                 movie: dict[str, Any]) -> None:
    groups = movie["groups"]
    if not groups:
        st.info("This dataset has no user demographics (ml-100k and ml-1m do), so there is no breakdown by group.")
        return
    st.caption("Each box spans the middle half of a group (the line inside: the median; dashed: the mean; the "
               "whiskers: the rest, up to 1.5 box-lengths). Blue: the predicted rating of every user in the group. "
               "Green: the ratings the group actually gave. Under each group: its users / how many of them rated "
               "the movie; small groups swing a lot. The axis spans the whole rating scale.")
    names = dict(GROUPS)
    options = [column for column, _ in GROUPS if column in groups]
    column = st.segmented_control("Group users by", options, format_func=names.get, default=options[0],
                                  key=GROUP_KEY, required=True) or options[0]
    st.plotly_chart(chart_frame(charts.group_spread(groups[column], names[column], sel.data.rating_scale)),
                    key=f"movie_group_{column}")


def similar(sel: SelectedRun, key: tuple[str, float], item: Any, table: pd.DataFrame, movie: dict[str, Any]) -> None:
    c1, c2, c3 = st.columns([1, 1, 1], vertical_alignment="bottom")
    n = c1.number_input("How many", 1, 50, 10, key="movie_sim_n")
    floor = c2.number_input("Only movies with at least this many ratings", 0, 10_000, views.SIMILAR_MIN_RATINGS,
                            step=5, key="movie_sim_floor",
                            help="Rarely rated movies have noisy vectors; 0 shows all. The 2D map's neighbour list "
                                 f"uses the same rule ({views.SIMILAR_MIN_RATINGS} by default), so both agree.")
    centre = c3.toggle("Centre the vectors first", key="movie_sim_centre",
                       help="Subtract the average movie vector before comparing. When every movie's vector points "
                            "roughly the same way (e.g. factors started non-negative and no L2 pulled them back), "
                            "plain cosine calls everything similar; centring compares what is particular to each.")
    sim = _similar(*key, item, int(n), int(floor), bool(centre), sel, table)
    st.dataframe(sim.drop(columns=["item"]), hide_index=True, key="movie_similar", column_config={
        "title": st.column_config.TextColumn("title", width="medium"),
        "similarity": st.column_config.ProgressColumn("cosine similarity", format="%.3f", min_value=-1, max_value=1),
        "ratings": st.column_config.NumberColumn("ratings", format="%d"),
    })
    st.caption(f"Cosine similarity of the item factor vectors, among movies with at least {int(floor):,} ratings: "
               "movies the same users tend to rate alike, whatever their genres say. Biases play no part. The 2D "
               "map's nearest neighbours are this list.")


# ---------------------------------------------------------------------------- the page
def page() -> None:
    proj.warm_up_in_background()  # the 2D map's UMAP/t-SNE kernels compile while this page is read
    st.title("One movie")
    sel = selected_run()
    if sel is None:
        return
    st.caption(sel.title)
    key = (sel.run_id, sel.stamp)
    table = _items(*key, sel)
    item = pick_movie(sel, table)
    if item is None:
        return
    row = table.set_index("item").loc[item]
    movie = _movie(*key, item, sel)
    summary(sel, item, row, movie)
    tabs = st.tabs(list(VIEWS), key=VIEW_KEY, on_change="rerun")
    for tab, name in zip(tabs, VIEWS):
        if tab.open:
            with tab:
                VIEWS[name](sel, key, item, table, movie)


# Tab label -> section; only the open tab runs and is drawn (lazy tabs), so another movie
# redraws one view; sections with controls are fragments.
VIEWS = {
    "Predicted vs actual": predicted_vs_actual,
    "Every user": st.fragment(every_user),
    "By demographic group": st.fragment(demographics),
    "Most similar movies": st.fragment(similar),
}

page()
