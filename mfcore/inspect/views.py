"""Tables the inspection pages draw: biases, factor extremes, one movie across all users."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mfcore.data.dataset import RatingData
from mfcore.recommender import TrainedModel


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
    """One movie's predicted rating for every user, its actual ratings, and who likes it most."""
    i = trained.item_ids.index_of(item)
    m = trained.model
    P = trained.user_factors().astype(np.float64)
    s = trained.global_bias + P @ trained.item_factors()[i].astype(np.float64)
    if trained.model_config.use_bias:
        s = s + trained.user_biases() + trained.item_biases()[i]
    lo, hi = m.rating_scale
    if trained.model_config.output == "sigmoid":
        a, b = m.output_range
        s = a + (b - a) / (1 + np.exp(-s))
    predicted = np.clip(s, lo, hi)
    d_item = data.item_ids.indices_of(np.array([item]))[0]
    rows = np.flatnonzero(data.item_idx == d_item) if d_item >= 0 else np.zeros(0, dtype=np.int64)
    users = user_table(trained, data)
    users["predicted"] = predicted
    rated = set(data.user_ids.raw[data.user_idx[rows]].tolist())
    users["rated_it"] = users["user"].isin(rated)
    return {
        "predicted": predicted,
        "actual": data.rating[rows],
        "n_ratings": int(len(rows)),
        "users": users,
        "top": users.nlargest(10, "predicted"),
        "bottom": users.nsmallest(10, "predicted"),
    }


def by_group(users: pd.DataFrame, column: str, value: str = "predicted") -> pd.DataFrame:
    """Mean/count of ``value`` per demographic group (age band, gender, occupation)."""
    return (users.groupby(column, observed=True)[value].agg(["mean", "count"]).reset_index()
            .rename(columns={"mean": f"mean_{value}", "count": "users"}))
