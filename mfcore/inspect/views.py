"""Tables the inspection pages draw: biases, factor extremes, one movie across all users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mfcore.data.dataset import RatingData
from mfcore.errors import ConfigError
from mfcore.recommender import TrainedModel

# The fewest ratings a movie needs to be listed as similar to another, on One movie and the 2D map
# alike (rarely rated movies have noisy vectors that land next to anything).
SIMILAR_MIN_RATINGS = 20


def item_table(trained: TrainedModel, data: RatingData, rows: np.ndarray | None = None) -> pd.DataFrame:
    """One row per model item: raw id, title, genres, bias, rating count, mean rating, norm."""
    ids = trained.item_ids.raw
    counts = np.bincount(data.item_idx, minlength=data.n_items)
    sums = np.bincount(data.item_idx, weights=data.rating, minlength=data.n_items)
    # The model's item vocabulary is the dataset's (same from_frame), but map by raw id to be safe.
    data_idx = data.item_ids.indices_of(ids)
    ok = data_idx >= 0
    n = np.where(ok, counts[np.where(ok, data_idx, 0)], 0)
    mean = np.where(n > 0, sums[np.where(ok, data_idx, 0)] / np.maximum(n, 1), np.nan)
    meta = data.items.reindex(ids)
    frame = pd.DataFrame({
        "item": ids,
        "title": meta["title"].fillna("").to_numpy(),
        "genres": meta["genres"].fillna("").to_numpy(),
        "bias": trained.item_biases(),
        "ratings": n,
        "mean_rating": mean,
        "norm": np.linalg.norm(trained.item_factors(), axis=1),
    })
    return frame if rows is None else frame.iloc[rows].reset_index(drop=True)


def user_table(trained: TrainedModel, data: RatingData) -> pd.DataFrame:
    """One row per model user: raw id, bias, rating count, mean rating, norm, demographics."""
    ids = trained.user_ids.raw
    data_idx = data.user_ids.indices_of(ids)
    ok = data_idx >= 0
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    sums = np.bincount(data.user_idx, weights=data.rating, minlength=data.n_users)
    n = np.where(ok, counts[np.where(ok, data_idx, 0)], 0)
    frame = pd.DataFrame({
        "user": ids,
        "bias": trained.user_biases(),
        "ratings": n,
        "mean_rating": np.where(n > 0, sums[np.where(ok, data_idx, 0)] / np.maximum(n, 1), np.nan),
        "norm": np.linalg.norm(trained.user_factors(), axis=1),
    })
    if data.users is not None:
        demo = data.users.reindex(ids).reset_index(drop=True)
        frame = pd.concat([frame, demo], axis=1)
    return frame


def factor_extremes(trained: TrainedModel, data: RatingData, factor: int, n: int = 10,
                    min_ratings: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The items with the lowest and highest value of one factor (among items with at
    least ``min_ratings`` ratings, so that noise from rarely rated items does not win)."""
    table = item_table(trained, data)
    table["value"] = trained.item_factors()[:, factor]
    pool = table[table["ratings"] >= min_ratings]
    if len(pool) < 2 * n:
        pool = table
    cols = ["item", "title", "genres", "value", "ratings"]
    return pool.nsmallest(n, "value")[cols], pool.nlargest(n, "value")[cols]


def movie_across_users(trained: TrainedModel, data: RatingData, item: Any) -> dict[str, Any]:
    """One movie's predicted rating for every user, its actual ratings, and who likes it most.

    ``users`` (a :func:`user_table` with ``predicted`` (clipped to the rating scale),
    ``unclipped`` (before the clip), ``score`` (the raw sum) and ``rated_it``); ``top`` and
    ``bottom``: the ten users with the highest / lowest raw score, so users whose
    predictions all clip to the top of the scale are still ranked by how far above it they are.
    """
    i = trained.item_ids.index_of(item)
    m = trained.model
    P = trained.user_factors().astype(np.float64)
    s = trained.global_bias + P @ trained.item_factors()[i].astype(np.float64)
    if trained.model_config.use_bias:
        s = s + trained.user_biases() + trained.item_biases()[i]
    lo, hi = m.rating_scale
    raw = s
    if trained.model_config.output == "sigmoid":
        a, b = m.output_range
        s = a + (b - a) / (1 + np.exp(-s))
    predicted = np.clip(s, lo, hi)
    d_item = data.item_ids.indices_of(np.array([item]))[0]
    rows = np.flatnonzero(data.item_idx == d_item) if d_item >= 0 else np.zeros(0, dtype=np.int64)
    users = user_table(trained, data)
    users["predicted"] = predicted
    users["unclipped"] = s  # before clipping to the rating scale (after the sigmoid, if any)
    users["score"] = raw  # the raw sum: ranks users even where the prediction clips or the sigmoid saturates
    rated = set(data.user_ids.raw[data.user_idx[rows]].tolist())
    users["rated_it"] = users["user"].isin(rated)
    order = np.lexsort((users["user"].to_numpy(), -raw))  # highest raw score first, ties by user id
    ranked = users.iloc[order]
    return {
        "predicted": predicted,
        "actual": data.rating[rows],
        "n_ratings": int(len(rows)),
        "users": users,
        "top": ranked.head(10),
        "bottom": ranked.iloc[::-1].head(10),
    }


def by_group(users: pd.DataFrame, column: str, value: str = "predicted") -> pd.DataFrame:
    """Mean/count of ``value`` per demographic group (age band, gender, occupation)."""
    return (users.groupby(column, observed=True)[value].agg(["mean", "count"]).reset_index()
            .rename(columns={"mean": f"mean_{value}", "count": "users"}))


# ======================================================================================
# Views for the inspection pages (embeddings & biases, one user, one movie).
# Everything below is plain numpy/pandas on a TrainedModel + RatingData: the pages cache
# the results per run and only draw them.
# ======================================================================================

ROW_ORDERS = ("popularity", "cluster", "pc1")
"""How :func:`row_order` sorts the rows of a factor heatmap."""

ROLE_NAMES = ("not used", "train", "test")
"""Meaning of the codes :func:`rating_roles` returns (0, 1, 2)."""


@dataclass(frozen=True)
class RowOrder:
    """Which rows of a factor matrix a heatmap shows, top to bottom, and why."""

    rows: np.ndarray
    """Row indices (into the model's users or items), in display order."""
    note: str
    """One sentence for a caption: the order and, when sampled, the sample size."""
    groups: np.ndarray | None = None
    """Cluster of each shown row (``order="cluster"``), else None."""


def _pc1(x: np.ndarray) -> np.ndarray:
    """Projection of each row on the first principal component (sign: largest |loading| positive)."""
    centred = x - x.mean(axis=0)
    if not np.any(centred):
        return np.zeros(len(x))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    direction = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    return centred @ direction


def row_order(factors: np.ndarray, counts: np.ndarray, order: str = "popularity", *,
              max_rows: int | None = 500, seed: int = 0, n_clusters: int = 8, what: str = "rows") -> RowOrder:
    """Rows of a factor matrix to draw as a heatmap, sorted by ``order``.

    ``popularity``: most-rated first (``counts``); ``pc1``: by the projection on the first
    principal component (rows that point the same way sit together); ``cluster``:
    k-means clusters (scikit-learn, seeded) one after the other, clusters ordered by their
    centre's first principal component, rows within a cluster by their own.
    More than ``max_rows`` rows: a seeded uniform sample of ``max_rows`` of them, sorted
    the same way (the note says so).
    """
    if order not in ROW_ORDERS:
        raise ConfigError("order", f"must be one of {', '.join(ROW_ORDERS)}, got {order!r}")
    x = np.asarray(factors, dtype=np.float64)
    n = len(x)
    counts = np.asarray(counts)
    if len(counts) != n:
        raise ConfigError("counts", f"has {len(counts)} entries for {n} rows")
    if max_rows is not None and n > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))
        sample = f"a random sample of {max_rows:,} of the {n:,} {what} (seed {seed})"
    else:
        rows = np.arange(n)
        sample = f"all {n:,} {what}"
    groups = None
    if order == "popularity" or n < 3:
        rows = rows[np.argsort(-counts[rows], kind="stable")]
        how = "most-rated first"
    elif order == "pc1":
        rows = rows[np.argsort(-_pc1(x[rows]), kind="stable")]
        how = "by their value along the first principal component"
    else:
        from sklearn.cluster import KMeans  # heavy import, used here only

        sub = x[rows]
        k = max(1, min(n_clusters, len(np.unique(sub, axis=0))))
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(sub) if k > 1 else np.zeros(len(sub), int)
        pc = _pc1(sub)
        centre_pc = np.array([pc[labels == c].mean() for c in range(k)])
        rank = np.empty(k, dtype=np.int64)
        rank[np.argsort(-centre_pc, kind="stable")] = np.arange(k)
        local = np.lexsort((-pc, rank[labels]))
        rows, groups = rows[local], rank[labels][local]
        how = f"in {k} k-means clusters (seed {seed}), one after the other"
    return RowOrder(rows=rows, note=f"{sample[0].upper()}{sample[1:]}, {how}.", groups=groups)


def factor_spread(trained: TrainedModel) -> pd.DataFrame:
    """Per factor: standard deviation and mean of the user and item values, and the share of
    the dot products' variance it carries (``var(p_f) * var(q_f)``, normalised)."""
    P, Q = trained.user_factors().astype(np.float64), trained.item_factors().astype(np.float64)
    weight = P.var(axis=0) * Q.var(axis=0)
    total = weight.sum()
    return pd.DataFrame({
        "factor": np.arange(P.shape[1]),
        "user_std": P.std(axis=0),
        "item_std": Q.std(axis=0),
        "user_mean": P.mean(axis=0),
        "item_mean": Q.mean(axis=0),
        "share": weight / total if total > 0 else np.full(P.shape[1], 1.0 / P.shape[1]),
    })


def factor_histograms(users: np.ndarray, items: np.ndarray, factors: list[int], bins: int = 30) -> pd.DataFrame:
    """Histograms of chosen factors' user and item values, on bins shared per factor.

    Returns one row per (factor, side, bin): ``factor``, ``side`` ("users"/"items"),
    ``left``, ``right``, ``count`` and ``percent`` (of that side's rows).
    """
    parts = []
    for f in factors:
        u, i = np.asarray(users)[:, f], np.asarray(items)[:, f]
        both = np.concatenate([u, i])
        lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        for side, values in (("users", u), ("items", i)):
            count, _ = np.histogram(values, bins=edges)
            parts.append(pd.DataFrame({
                "factor": f, "side": side, "left": edges[:-1], "right": edges[1:], "count": count,
                "percent": 100.0 * count / max(1, len(values)),
            }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["factor", "side", "left", "right", "count", "percent"])


def bias_extremes(table: pd.DataFrame, n: int = 10, min_ratings: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` rows of an :func:`item_table`/:func:`user_table` with the lowest and the
    highest bias, among those with at least ``min_ratings`` ratings (lowest first / highest first)."""
    pool = table[table["ratings"] >= min_ratings]
    return pool.nsmallest(n, "bias"), pool.nlargest(n, "bias")


def genre_profile(trained: TrainedModel, data: RatingData, factor: int, min_ratings: int = 20) -> pd.DataFrame:
    """How each genre's movies sit on one item factor, relative to the average movie.

    Over items with ``min_ratings`` ratings or more (all items when fewer than 20 have):
    per genre, the mean value of the factor minus its mean over all those items (so a
    factor whose values are all positive still shows which genres sit high or low),
    sorted from the most negative to the most positive. A movie with several genres
    counts in each. Columns: ``genre``, ``mean`` (centred), ``raw_mean``, ``items``.
    """
    table = item_table(trained, data)
    table["value"] = trained.item_factors()[:, factor].astype(np.float64)
    pool = table[table["ratings"] >= min_ratings]
    if len(pool) < 20:
        pool = table
    genres = pool.assign(genre=pool["genres"].astype(str).str.split("|")).explode("genre")
    genres = genres[genres["genre"].str.len() > 0]
    if genres.empty:
        return pd.DataFrame(columns=["genre", "mean", "raw_mean", "items"])
    out = genres.groupby("genre")["value"].agg(["mean", "count"]).reset_index()
    out = out.rename(columns={"mean": "raw_mean", "count": "items"})
    out.insert(1, "mean", out["raw_mean"] - float(pool["value"].mean()))
    return out.sort_values("mean", kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------- one user


def rating_roles(data: RatingData, split: Any) -> np.ndarray:
    """Per rating row of ``data``: 1 in ``split.train``, 2 in ``split.test``, 0 in neither
    (names in :data:`ROLE_NAMES`)."""
    roles = np.zeros(data.n_ratings, dtype=np.int8)
    roles[np.asarray(split.train, dtype=np.int64)] = 1
    roles[np.asarray(split.test, dtype=np.int64)] = 2
    return roles


def user_ratings(trained: TrainedModel, data: RatingData, user: Any, roles: np.ndarray | None = None) -> pd.DataFrame:
    """One user's ratings with the model's predictions; raises UnknownIdError for an unknown user.

    Columns: ``item``, ``title``, ``genres``, ``rating``, ``predicted``, ``error``
    (predicted − rating) and ``set`` ("train", "test" or "not used"; "train" for all
    without ``roles``), sorted by title.
    """
    u = data.user_ids.index_of(user)
    raw_user = data.user_ids.raw[u]
    rows = np.flatnonzero(data.user_idx == u)
    items = data.item_ids.raw[data.item_idx[rows]]
    predicted, _, _ = trained.predict_many(np.full(len(rows), raw_user), items)
    meta = data.items.reindex(items)
    frame = pd.DataFrame({
        "item": items,
        "title": meta["title"].fillna("").to_numpy(),
        "genres": meta["genres"].fillna("").to_numpy(),
        "rating": data.rating[rows].astype(np.float64),
        "predicted": predicted.astype(np.float64),
    })
    frame["error"] = frame["predicted"] - frame["rating"]
    codes = roles[rows] if roles is not None else np.ones(len(rows), dtype=np.int8)
    frame["set"] = np.asarray(ROLE_NAMES, dtype=object)[codes]
    return frame.sort_values("title", kind="stable").reset_index(drop=True)


def error_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """RMSE, MAE and mean error (predicted − actual) per set of a :func:`user_ratings` frame.

    One row per set present ("train", then "test", then "not used"); columns ``set``,
    ``ratings``, ``rmse``, ``mae``, ``mean_error``.
    """
    rows = []
    for name in ("train", "test", "not used"):
        err = frame.loc[frame["set"] == name, "error"].to_numpy(dtype=np.float64)
        if len(err):
            rows.append({"set": name, "ratings": len(err), "rmse": float(np.sqrt(np.mean(err**2))),
                         "mae": float(np.mean(np.abs(err))), "mean_error": float(np.mean(err))})
    return pd.DataFrame(rows, columns=["set", "ratings", "rmse", "mae", "mean_error"])


def recommendations(trained: TrainedModel, data: RatingData, user: Any, n: int = 10,
                    exclude: Any = (), items: pd.DataFrame | None = None) -> pd.DataFrame:
    """Top-``n`` items by predicted rating for a known user, leaving out ``exclude``.

    Columns: ``rank`` (1 = best), ``item``, ``title``, ``genres``, ``predicted``,
    ``ratings`` and ``mean_rating`` (from ``items``, an :func:`item_table`, computed when None).
    """
    top = trained.recommend(user, n=n, exclude=exclude)
    table = (items if items is not None else item_table(trained, data)).set_index("item")
    meta = table.reindex(top["item"].to_numpy())
    return pd.DataFrame({
        "rank": np.arange(1, len(top) + 1),
        "item": top["item"].to_numpy(),
        "title": meta["title"].fillna("").to_numpy(),
        "genres": meta["genres"].fillna("").to_numpy(),
        "predicted": top["score"].to_numpy(dtype=np.float64),
        "ratings": meta["ratings"].fillna(0).to_numpy(dtype=np.int64),
        "mean_rating": meta["mean_rating"].to_numpy(dtype=np.float64),
    })


def waterfall_steps(decomposition: dict[str, Any], max_factors: int | None = None) -> pd.DataFrame:
    """The bars of a prediction's waterfall, from :meth:`TrainedModel.decompose`.

    Rows: ``global (g)`` (absolute), the biases, then the factors' contributions sorted by
    size (at most ``max_factors`` of them, the rest summed into one "other N factors"
    bar), a ``raw sum`` total; then, when the output is a sigmoid and/or the raw value is
    outside the rating scale, a ``sigmoid`` and/or ``clip`` step and the final
    ``prediction`` total. Columns: ``label``, ``value`` (the step; for totals the running
    sum), ``measure`` ("absolute", "relative", "total" as plotly's waterfall wants) and
    ``kind`` ("global", "bias", "factor", "other", "raw", "output", "prediction").
    The values of all non-total rows add up to the prediction.
    """
    parts = dict(decomposition["parts"])
    rows = [("global (g)", parts.pop("global", 0.0), "absolute", "global")]
    for name in ("user bias", "item bias"):
        if name in parts:
            rows.append((name, parts.pop(name), "relative", "bias"))
    factors = sorted(parts.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    shown = factors if max_factors is None or len(factors) <= max_factors else factors[:max_factors]
    rows += [(name, value, "relative", "factor") for name, value in shown]
    rest = factors[len(shown):]
    if rest:
        rows.append((f"other {len(rest)} factors", float(sum(v for _, v in rest)), "relative", "other"))
    raw = float(decomposition["raw"])
    prediction = float(decomposition["prediction"])
    lo, hi = (float(v) for v in decomposition["rating_scale"])
    sigmoid = decomposition.get("output") == "sigmoid"
    value = raw
    extra = []
    if sigmoid:
        a, b = decomposition.get("output_range") or (lo, hi)
        squashed = a + (b - a) / (1.0 + np.exp(-raw))
        extra.append(("sigmoid", squashed - value, "relative", "output"))
        value = squashed
    if value < lo or value > hi:
        extra.append((f"clip to [{lo:g}, {hi:g}]", prediction - value, "relative", "output"))
        value = prediction
    if extra:
        rows.append(("raw sum", raw, "total", "raw"))
        rows += extra
    rows.append(("prediction", prediction if extra else raw, "total", "prediction"))
    return pd.DataFrame(rows, columns=["label", "value", "measure", "kind"])


def explain_prediction(trained: TrainedModel, user: Any, item: Any) -> dict[str, Any]:
    """:meth:`TrainedModel.decompose` plus the sigmoid's ``output_range`` (what
    :func:`waterfall_steps` needs to draw the squash step)."""
    out = trained.decompose(user, item)
    out["output_range"] = tuple(float(v) for v in trained.model.output_range)
    return out


# ------------------------------------------------------------------------- one movie


def search_items(table: pd.DataFrame, query: str = "", limit: int = 200) -> pd.DataFrame:
    """Rows of an :func:`item_table` whose title contains ``query`` (case-insensitive,
    plain text, not a pattern), most-rated first, at most ``limit`` of them; with an
    empty query, the ``limit`` most-rated items. For pickers over large catalogues."""
    pool = table
    query = (query or "").strip()
    if query:
        pool = table[table["title"].astype(str).str.contains(query, case=False, regex=False)]
    order = np.lexsort((pool["title"].astype(str).to_numpy(), -pool["ratings"].to_numpy()))
    return pool.iloc[order[:limit]]


def movie_ratings(data: RatingData, item: Any) -> pd.Series:
    """One item's actual ratings, indexed by raw user id (empty when nobody rated it)."""
    d_item = data.item_ids.indices_of(np.array([item]))[0]
    rows = np.flatnonzero(data.item_idx == d_item) if d_item >= 0 else np.zeros(0, dtype=np.int64)
    users = data.user_ids.raw[data.user_idx[rows]]
    return pd.Series(data.rating[rows].astype(np.float64), index=pd.Index(users, name="user"), name="actual")


def group_table(users: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per demographic group: users, mean predicted rating, raters and mean actual rating.

    ``users`` is :func:`movie_across_users`'s ``users`` frame with an ``actual`` column
    (NaN for users who did not rate the movie). Columns: ``group``, ``users``,
    ``mean_predicted``, ``raters``, ``mean_actual`` (NaN for a group without raters).
    """
    grouped = users.groupby(column, observed=True)
    out = pd.DataFrame({
        "users": grouped["predicted"].count(),
        "mean_predicted": grouped["predicted"].mean(),
        "raters": grouped["actual"].count(),
        "mean_actual": grouped["actual"].mean(),
    })
    out.index.name = "group"
    return out.reset_index()


def similar_movies(trained: TrainedModel, data: RatingData, item: Any, n: int = 10, min_ratings: int = 0,
                   items: pd.DataFrame | None = None, centre: bool = False) -> pd.DataFrame:
    """The ``n`` items whose factor vectors have the highest cosine similarity to ``item``'s,
    among items with at least ``min_ratings`` ratings (``item`` itself left out).

    ``centre=True`` subtracts the mean item vector first: a direction that every movie
    shares (e.g. all-positive factors from a non-negative initialisation without L2)
    otherwise makes every pair look alike. ``items`` is an :func:`item_table` in the
    model's item order (computed when None). Columns: ``item``, ``title``, ``genres``,
    ``similarity``, ``ratings``. Raises UnknownIdError for an unknown item.
    """
    idx = trained.item_ids.index_of(item)
    table = items if items is not None else item_table(trained, data)
    Q = trained.item_factors().astype(np.float64)
    if centre:
        Q = Q - Q.mean(axis=0)
    norms = np.linalg.norm(Q, axis=1)
    sims = Q @ Q[idx] / np.maximum(norms * norms[idx], 1e-12)
    sims[idx] = -np.inf
    sims[table["ratings"].to_numpy() < min_ratings] = -np.inf
    k = int(min(n, np.isfinite(sims).sum()))
    top = np.argsort(-sims, kind="stable")[:k]
    out = table.iloc[top][["item", "title", "genres", "ratings"]].reset_index(drop=True)
    out.insert(3, "similarity", sims[top])
    return out


def movie_users(users: pd.DataFrame, actual: pd.Series) -> pd.DataFrame:
    """Every user's row for one movie, ranked by the raw score (rank 1 = predicted to like it most).

    ``users`` is :func:`movie_across_users`'s frame, ``actual`` :func:`movie_ratings`.
    Columns: ``rank``, ``user``, ``predicted``, ``unclipped``, ``actual`` (NaN when they did
    not rate it), ``ratings`` (how many movies they rated), ``bias``, then the demographics
    the dataset has (``age``, ``age_group``, ``gender``, ``occupation``, ``zip``).
    """
    order = np.lexsort((users["user"].to_numpy(), -users["score"].to_numpy()))
    out = users.iloc[order].reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out["actual"] = out["user"].map(actual)
    demo = [c for c in ("age", "age_group", "gender", "occupation", "zip") if c in out.columns]
    return out[["rank", "user", "predicted", "unclipped", "actual", "ratings", "bias", *demo]]


def group_values(users: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    """Per demographic group (in the column's order): its name, every user's predicted
    rating, the actual ratings of those who rated the movie, and both counts, for a
    box plot of the spread. ``users`` as for :func:`group_table`."""
    out = []
    for group, part in users.groupby(column, observed=True, sort=True):
        rated = part["actual"].dropna().to_numpy(dtype=np.float64)
        out.append({"group": group, "predicted": part["predicted"].to_numpy(dtype=np.float64), "actual": rated,
                    "users": int(len(part)), "raters": int(len(rated))})
    return out
