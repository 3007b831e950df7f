"""Small hand-made datasets for engine tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mfcore.data.dataset import RatingData, from_frame
from mfcore.data.splits import Split


def tiny_data() -> RatingData:
    """4 users x 3 items, 9 ratings, raw ids that are not 0-based."""
    frame = pd.DataFrame(
        {
            "user": [10, 10, 10, 20, 20, 30, 30, 40, 40],
            "item": [7, 8, 9, 7, 9, 8, 9, 7, 8],
            "rating": [5.0, 3.0, 4.0, 4.0, 2.0, 1.0, 5.0, 3.0, 4.0],
            "timestamp": np.arange(9),
        }
    )
    items = pd.DataFrame({"title": ["Seven", "Eight", "Nine"], "genres": ["A", "B", "A|B"]}, index=[7, 8, 9])
    return from_frame(frame, name="tiny", items=items, rating_scale=(1.0, 5.0))


def all_train_split(data: RatingData, test_rows: tuple[int, ...] = ()) -> Split:
    rows = np.arange(data.n_ratings)
    test = np.array(sorted(test_rows), dtype=np.int64)
    return Split("hand", np.setdiff1d(rows, test).astype(np.int64), test)


def planted_data(n_users: int = 120, n_items: int = 80, rank: int = 3, density: float = 0.5, seed: int = 0) -> RatingData:
    """Dense-ish low-rank ratings (no noise) for tests that must learn something."""
    rng = np.random.default_rng(seed)
    P = rng.normal(0, 0.7, (n_users, rank))
    Q = rng.normal(0, 0.7, (n_items, rank))
    bu, bi = rng.normal(0, 0.4, n_users), rng.normal(0, 0.4, n_items)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    r = np.clip(3.0 + bu[u] + bi[i] + (P[u] * Q[i]).sum(1), 1, 5)
    frame = pd.DataFrame({"user": u + 1, "item": i + 1, "rating": r, "timestamp": np.arange(len(r))})
    return from_frame(frame, name="planted", rating_scale=(1.0, 5.0))
