"""Evaluation metrics: rating error, rating-class report, top-k ranking, error breakdown.

Every function is pure and takes numpy arrays or torch tensors (any device; they are
copied to the CPU). Errors accumulate in float64 over all ratings at once.

Ranking protocol (:func:`ranking_metrics`): for each scored user, every item not in
the user's *train* ratings is a candidate; the top ``k`` by score are recommended; an
item is *relevant* when the user rated it ``>= threshold`` in the *test* set. Metrics
are averaged over the scored users that have at least one relevant test item.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from mfcore.errors import ConfigError

__all__ = [
    "rmse",
    "mae",
    "rating_class_report",
    "ranking_metrics",
    "ranking_metrics_from_lists",
    "ranking_users",
    "iter_score_batches",
    "error_breakdown",
    "DEFAULT_COUNT_BINS",
]

# Lower edges of the activity/popularity bins: 0 (cold), 1-5, 6-20, 21-50, 51-200, 201+
DEFAULT_COUNT_BINS: tuple[int, ...] = (0, 1, 6, 21, 51, 201)


def _numpy(x: Any, field: str, dtype: Any = np.float64) -> np.ndarray:
    """A 1-D numpy array of an array-like or a torch tensor (copied to the CPU)."""
    if hasattr(x, "detach"):  # torch tensor (no torch import needed here)
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=dtype)
    if a.ndim != 1:
        raise ConfigError(field, f"must be 1-D, got shape {a.shape}")
    return a


def _pair(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _numpy(pred, "pred"), _numpy(true, "true")
    if len(p) != len(t):
        raise ConfigError("pred", f"has {len(p)} values but true has {len(t)}; pass one prediction per rating")
    if len(t) == 0:
        raise ConfigError("true", "is empty: there are no ratings to score (is the test set empty?)")
    return p, t


def rmse(pred: Any, true: Any) -> float:
    """Root mean squared error over all ratings: ``sqrt(mean((pred - true)^2))``."""
    p, t = _pair(pred, true)
    d = p - t
    return float(math.sqrt(np.dot(d, d) / len(d)))


def mae(pred: Any, true: Any) -> float:
    """Mean absolute error over all ratings: ``mean(|pred - true|)``."""
    p, t = _pair(pred, true)
    return float(np.abs(p - t).mean())


# ----------------------------------------------------------------------------- classes


def _check_grid(grid: Any, scale: Any) -> tuple[float, float, float]:
    if isinstance(grid, bool) or not isinstance(grid, numbers.Real) or not (math.isfinite(grid) and grid > 0):
        raise ConfigError("grid", f"must be a positive number, got {grid!r}; e.g. 0.5 (half stars) or 1")
    try:
        lo, hi = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ConfigError("scale", f"must be (min, max), got {scale!r}; e.g. (0.5, 5)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError("scale", f"must be finite with min < max, got {scale!r}; e.g. (0.5, 5)")
    return float(grid), lo, hi


def rating_class_report(
    pred: Any, true: Any, grid: float = 0.5, scale: tuple[float, float] = (0.5, 5.0)
) -> dict[str, Any]:
    """Treat rating prediction as classification into the scale's star values.

    Predictions (and true ratings) are rounded to the nearest multiple of ``grid``
    above ``scale[0]`` and clipped to ``scale``; then accuracy and macro/weighted
    precision, recall and F1 over the classes seen in either, with the definitions of
    ``sklearn.metrics.precision_recall_fscore_support(..., zero_division=0)`` (a 0/0
    ratio is 0; F1 = 2 tp / (2 tp + fp + fn)), computed here from the confusion counts
    (importing scikit-learn cost ~0.6-0.9 s of every CLI run). Use ``grid=1,
    scale=(1, 5)`` for integer-star data such as ml-100k.

    Returns ``accuracy``, ``precision_macro``, ``recall_macro``, ``f1_macro``,
    ``precision_weighted``, ``recall_weighted``, ``f1_weighted`` (floats) and
    ``per_class``: a frame indexed by star value with precision, recall, f1, support.
    """
    step, lo, hi = _check_grid(grid, scale)
    p, t = _pair(pred, true)
    n_classes = int(math.floor((hi - lo) / step + 1e-9))

    def classes(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((x - lo) / step), 0, n_classes).astype(np.int64)

    cp, ct = classes(p), classes(t)
    labels = np.union1d(cp, ct)
    out: dict[str, Any] = {"accuracy": float((cp == ct).mean())}
    width = n_classes + 1
    tp_all = np.bincount(ct[cp == ct], minlength=width).astype(np.float64)
    tp = tp_all[labels]
    pred_sum = np.bincount(cp, minlength=width).astype(np.float64)[labels]
    support = np.bincount(ct, minlength=width)[labels]
    true_sum = support.astype(np.float64)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    pr, rc, f1 = ratio(tp, pred_sum), ratio(tp, true_sum), ratio(2 * tp, pred_sum + true_sum)
    weights = true_sum / true_sum.sum()
    for average, w in (("macro", None), ("weighted", weights)):
        out[f"precision_{average}"] = float(np.average(pr, weights=w))
        out[f"recall_{average}"] = float(np.average(rc, weights=w))
        out[f"f1_{average}"] = float(np.average(f1, weights=w))
    out["per_class"] = pd.DataFrame(
        {"precision": pr, "recall": rc, "f1": f1, "support": support},
        index=pd.Index(lo + labels * step, name="rating"),
    )
    return out


# ----------------------------------------------------------------------------- ranking


def _index(x: Any, field: str) -> np.ndarray:
    return _numpy(x, field, dtype=np.int64)


def ranking_users(test_user_idx: Any, test_rating: Any, threshold: float = 4.0) -> np.ndarray:
    """Sorted users with at least one relevant (``>= threshold``) test rating: the only
    users whose scores :func:`ranking_metrics` uses for precision/recall/NDCG/MAP."""
    users = _index(test_user_idx, "test_user_idx")
    rating = _numpy(test_rating, "test_rating")
    return np.unique(users[rating >= threshold])


def iter_score_batches(
    score_fn: Callable[[np.ndarray], Any], users: Any, batch_size: int = 1024
) -> Iterator[tuple[np.ndarray, Any]]:
    """Yield ``(user batch, score_fn(user batch))`` for :func:`ranking_metrics`;
    ``score_fn`` returns a ``(len(batch), n_items)`` array or tensor."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigError("batch_size", f"must be a positive integer, got {batch_size!r}; e.g. 1024")
    u = _index(users, "users")
    for start in range(0, len(u), int(batch_size)):
        batch = u[start : start + int(batch_size)]
        yield batch, score_fn(batch)


class _RankingAccumulator:
    """Sums per-user precision/recall/NDCG/AP over top-k lists, batch by batch."""

    def __init__(self, n_items: int, test_user: np.ndarray, test_item: np.ndarray,
                 test_rating: np.ndarray, k: int, threshold: float) -> None:
        self.n_items, self.k = n_items, k
        rel = test_rating >= threshold
        self.rel_keys = np.unique(test_user[rel] * n_items + test_item[rel])
        self.n_rel = np.bincount(self.rel_keys // n_items) if len(self.rel_keys) else np.zeros(0, np.int64)
        self.discount = 1.0 / np.log2(np.arange(2, k + 2))
        self.ideal = np.cumsum(self.discount)
        self.recommended = np.zeros(n_items, dtype=bool)
        self.sums = np.zeros(4)  # precision, recall, ndcg, ap
        self.users = 0

    def add(self, users: np.ndarray, top: np.ndarray, valid: np.ndarray) -> None:
        """``top``: (b, k') recommended items best first; ``valid``: which entries count."""
        self.recommended[top[valid]] = True
        n_rel = np.zeros(len(users), dtype=np.int64)
        known = (users >= 0) & (users < len(self.n_rel))
        n_rel[known] = self.n_rel[users[known]]
        rows = n_rel > 0
        if not rows.any():
            return
        users, top, valid, n_rel = users[rows], top[rows], valid[rows], n_rel[rows]
        keys = users[:, None] * self.n_items + np.where(valid, top, 0)
        at = np.minimum(np.searchsorted(self.rel_keys, keys), len(self.rel_keys) - 1)
        hits = valid & (self.rel_keys[at] == keys)
        kk = top.shape[1]
        n_hits = hits.sum(axis=1)
        limit = np.minimum(n_rel, self.k)
        dcg = hits @ self.discount[:kk]
        prec_at = np.cumsum(hits, axis=1) / np.arange(1, kk + 1)
        self.sums += [
            (n_hits / self.k).sum(),
            (n_hits / n_rel).sum(),
            (dcg / self.ideal[limit - 1]).sum(),
            ((prec_at * hits).sum(axis=1) / limit).sum(),
        ]
        self.users += int(rows.sum())

    def result(self) -> dict[str, float]:
        mean = self.sums / self.users if self.users else np.full(4, np.nan)
        return {
            "precision_at_k": float(mean[0]),
            "recall_at_k": float(mean[1]),
            "ndcg_at_k": float(mean[2]),
            "map_at_k": float(mean[3]),
            "coverage": float(self.recommended.mean()) if self.n_items else float("nan"),
            "n_users": float(self.users),
            "k": float(self.k),
        }


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError("k", f"must be a positive integer, got {k!r}; e.g. 10")
    return int(k)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise ConfigError("threshold", f"must be a finite rating, got {threshold!r}; e.g. 4.0")
    return float(threshold)


def _train_lists(train_user: np.ndarray, train_item: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Train items grouped by user (CSR: ``indptr``, ``items``), via one int64 sort."""
    keys = np.sort(train_user * n_items + train_item)
    users = keys // n_items
    counts = np.bincount(users) if len(users) else np.zeros(0, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, keys - users * n_items


def _ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start[j], start[j] + count[j])`` over j, vectorised."""
    offsets = np.cumsum(count) - count
    return np.repeat(start - offsets, count) + np.arange(int(count.sum()), dtype=np.int64)


def _check_n_items(n_items: Any) -> int:
    if isinstance(n_items, bool) or not isinstance(n_items, numbers.Integral) or n_items < 1:
        raise ConfigError("n_items", f"must be a positive integer (the catalogue size), got {n_items!r}")
    return int(n_items)


def ranking_metrics(
    score_batches: Iterable[tuple[Any, Any]],
    *,
    n_items: int,
    train_user_idx: Any,
    train_item_idx: Any,
    test_user_idx: Any,
    test_item_idx: Any,
    test_rating: Any,
    k: int = 10,
    threshold: float = 4.0,
) -> dict[str, float]:
    """Precision@k, recall@k, NDCG@k, MAP@k and catalogue coverage from dense scores.

    ``score_batches`` yields ``(user_idx, scores)`` with ``scores`` of shape
    ``(len(user_idx), n_items)`` (numpy or torch; torch stays on its device for the
    masking and ``topk``); score each user once. The user's train items are masked to
    ``-inf`` (on a copy), so candidates are all other items; ``-inf``/NaN scores are
    never recommended. Score only :func:`ranking_users` to save time, or every user to
    measure coverage over all of them.

    Definitions per user with ``R >= 1`` relevant test items and ``hits`` among the
    top k: precision = hits / k; recall = hits / R; NDCG = DCG / ideal DCG with binary
    gains and discount ``1 / log2(rank + 1)``; AP = sum of precision@rank over the hit
    ranks / min(R, k). Coverage = share of all items recommended to any scored user.
    Returns those as ``precision_at_k``, ``recall_at_k``, ``ndcg_at_k``, ``map_at_k``,
    ``coverage``, plus ``n_users`` (users averaged over; 0 gives NaN metrics) and ``k``.
    """
    k = _check_k(k)
    threshold = _check_threshold(threshold)
    n_items = _check_n_items(n_items)
    indptr, train_items = _train_lists(_index(train_user_idx, "train_user_idx"),
                                       _index(train_item_idx, "train_item_idx"), n_items)
    acc = _RankingAccumulator(n_items, _index(test_user_idx, "test_user_idx"),
                              _index(test_item_idx, "test_item_idx"), _numpy(test_rating, "test_rating"),
                              k, threshold)
    kk = min(k, n_items)
    for batch_users, scores in score_batches:
        users = _index(batch_users, "user_idx")
        if tuple(np.shape(scores)) != (len(users), n_items):
            raise ConfigError(
                "scores", f"a batch has shape {tuple(np.shape(scores))}, expected ({len(users)}, {n_items})"
            )
        # The batch's train cells (row in batch, item), to be masked to -inf.
        known = (users >= 0) & (users < len(indptr) - 1)
        safe = np.where(known, users, 0)
        start = indptr[safe]
        count = np.where(known, indptr[safe + 1] - start, 0)
        rows = np.repeat(np.arange(len(users)), count)
        cols = train_items[_ranges(start, count)]
        if hasattr(scores, "detach"):
            top, vals = _topk_torch(scores, rows, cols, kk)
        else:
            top, vals = _topk_numpy(scores, rows, cols, kk)
        acc.add(users, top, vals > -np.inf)
    return acc.result()


def _topk_numpy(scores: Any, rows: np.ndarray, cols: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.array(scores, copy=True)  # keeps float32 scores float32: a batch can be large
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    s[rows, cols] = -np.inf
    s[np.isnan(s)] = -np.inf
    n = s.shape[1]
    part = np.argpartition(s, n - kk, axis=1)[:, n - kk :] if kk < n else np.tile(np.arange(n), (len(s), 1))
    vals = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1).astype(np.float64)


def _topk_torch(scores: Any, rows: np.ndarray, cols: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    s = scores.detach().float().clone()
    s[torch.as_tensor(rows, device=s.device), torch.as_tensor(cols, device=s.device)] = -torch.inf
    s = torch.nan_to_num(s, nan=-torch.inf)
    vals, top = torch.topk(s, kk, dim=1)
    return top.cpu().numpy().astype(np.int64), vals.cpu().numpy().astype(np.float64)


def ranking_metrics_from_lists(
    user_idx: Any,
    top_items: Any,
    *,
    n_items: int,
    test_user_idx: Any,
    test_item_idx: Any,
    test_rating: Any,
    k: int = 10,
    threshold: float = 4.0,
) -> dict[str, float]:
    """:func:`ranking_metrics` for ready-made top-N lists: ``top_items[j]`` (best
    first, ``-1`` padding) is recommended to ``user_idx[j]``; only the first ``k``
    count. The caller is responsible for leaving train items out of the lists."""
    k = _check_k(k)
    threshold = _check_threshold(threshold)
    users = _index(user_idx, "user_idx")
    if hasattr(top_items, "detach"):
        top_items = top_items.detach().cpu().numpy()
    top = np.asarray(top_items, dtype=np.int64)
    if top.ndim != 2 or top.shape[0] != len(users):
        raise ConfigError("top_items", f"must have shape ({len(users)}, N), got {top.shape}")
    top = top[:, :k]
    n_items = _check_n_items(n_items)
    acc = _RankingAccumulator(n_items, _index(test_user_idx, "test_user_idx"),
                              _index(test_item_idx, "test_item_idx"), _numpy(test_rating, "test_rating"),
                              k, threshold)
    valid = (top >= 0) & (top < n_items)
    acc.add(users, np.where(valid, top, 0), valid)
    return acc.result()


# ----------------------------------------------------------------------------- breakdown


def _bin_labels(edges: Sequence[int]) -> list[str]:
    labels = []
    for a, b in zip(edges, list(edges[1:]) + [None]):
        if b is None:
            labels.append(f"{a}+")
        elif a == 0 and b == 1:
            labels.append("0 (cold)")
        elif b == a + 1:
            labels.append(f"{a}")
        else:
            labels.append(f"{a}-{b - 1}")
    return labels


def _check_bins(bins: Any) -> np.ndarray:
    try:
        edges = np.asarray(bins, dtype=np.float64)
    except (TypeError, ValueError):
        edges = np.zeros(0)
    ok = edges.ndim == 1 and len(edges) >= 1 and edges[0] == 0 and np.all(np.diff(edges) > 0)
    if not ok or not np.all(edges == np.round(edges)):
        raise ConfigError(
            "bins",
            f"must be increasing integer lower edges starting at 0, got {bins!r}; e.g. (0, 1, 6, 21, 51, 201)",
        )
    return edges.astype(np.int64)


def _breakdown(err: np.ndarray, counts: np.ndarray, edges: np.ndarray) -> pd.DataFrame:
    b = np.searchsorted(edges, counts, side="right") - 1
    n = np.bincount(b, minlength=len(edges))
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame(
            {
                "bin": _bin_labels(list(edges)),
                "min_count": edges,
                "max_count": np.append(edges[1:] - 1, -1),  # -1: no upper bound
                "count": n,
                "rmse": np.sqrt(np.bincount(b, weights=err * err, minlength=len(edges)) / n),
                "mae": np.bincount(b, weights=np.abs(err), minlength=len(edges)) / n,
                "mean_error": np.bincount(b, weights=err, minlength=len(edges)) / n,
            }
        )
    return frame


def error_breakdown(
    pred: Any,
    true: Any,
    user_idx: Any,
    item_idx: Any,
    train_user_counts: Any,
    train_item_counts: Any,
    bins: Sequence[int] = DEFAULT_COUNT_BINS,
) -> dict[str, pd.DataFrame]:
    """RMSE/MAE/count of test errors by how much the model saw of the user/item.

    ``train_user_counts[u]``/``train_item_counts[i]``: ratings of each user/item in
    train (e.g. ``np.bincount(train_users, minlength=n_users)``); an index of ``-1``
    or beyond the counts counts as 0 (cold). ``bins`` are lower edges; the default
    gives 0 (cold), 1-5, 6-20, 21-50, 51-200, 201+. Returns ``{"user_activity": frame,
    "item_popularity": frame}``, one row per bin with ``bin``, ``min_count``,
    ``max_count`` (-1 = open), ``count``, ``rmse``, ``mae``, ``mean_error`` (pred -
    true; NaN for empty bins).
    """
    edges = _check_bins(bins)
    p, t = _pair(pred, true)
    err = p - t
    out = {}
    for key, idx, counts, field in (
        ("user_activity", user_idx, train_user_counts, "user_idx"),
        ("item_popularity", item_idx, train_item_counts, "item_idx"),
    ):
        i = _index(idx, field)
        c = _index(counts, f"train_{field.split('_')[0]}_counts")
        if len(i) != len(err):
            raise ConfigError(field, f"has {len(i)} values but there are {len(err)} ratings")
        seen = np.zeros(len(i), dtype=np.int64)
        ok = (i >= 0) & (i < len(c))
        seen[ok] = c[i[ok]]
        out[key] = _breakdown(err, seen, edges)
    return out
