"""Synthetic rating data with a planted low-rank answer, for teaching and testing.

The model that generates the ratings is the biased MF model the engine fits::

    r_ui = clip(mu + b_u + b_i + p_u . q_i + noise * eps,  scale)     eps ~ N(0, 1)

with Gaussian ``p_u``, ``q_i`` (rank ``rank``), Gaussian biases and ``mu`` at 62.5% of
the rating scale (3.5 on 1..5). Ratings stay **continuous** (not rounded to the
scale's step) so that a model can recover the planted factors cleanly; they are only
clipped to the scale. ``RatingData.truth`` keeps the planted parameters, aligned with
the dense indices, so a trained model can be compared with the answer
(:func:`factor_recovery`, :func:`planted_predictions`).

Which (user, item) pairs are observed is long-tailed like MovieLens: item popularity
follows a Zipf-Mandelbrot law ``(rank + c) ** -popularity_skew`` with
``c = min(40, n_items / 50)`` (the offset keeps the head as flat as MovieLens') and
user activity a Zipf law with exponent ``0.4 * popularity_skew`` above the minimum count
(activity is less skewed than popularity in MovieLens); 0 makes both uniform.
Every user and every item has at least one rating, and no pair occurs twice. Each
user's items are drawn by popularity without replacement (successive sampling).
Rows come in time order: timestamps increase strictly with the row, and which rating
comes when is random (the planted model has no drift), so temporal splits work and
behave much like random ones.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pandas as pd

from mfcore.data.dataset import IdIndex, RatingData
from mfcore.errors import ConfigError
from mfcore.limits import MAX_SYNTHETIC_RANK, check_synthetic_size

__all__ = ["make_synthetic", "make_synthetic_like", "SHAPES", "factor_recovery", "planted_predictions"]

# name -> (users, items, ratings, rating scale, ratings per user at least)
SHAPES: dict[str, tuple[int, int, int, tuple[float, float], int]] = {
    "ml-100k": (943, 1_682, 100_000, (1.0, 5.0), 20),
    "ml-1m": (6_040, 3_706, 1_000_209, (1.0, 5.0), 20),
    "ml-25m": (162_541, 59_047, 25_000_095, (0.5, 5.0), 20),
}

_START = 946_684_800  # 2000-01-01 00:00:00 UTC: timestamps start here
_SPAN = 10 * 365 * 86_400  # and spread over about ten years
_CHUNK = 1 << 21  # ratings drawn/computed per block: bounds peak memory on 25M ratings
_ROUNDS = 8  # rejection rounds before the exact fallback takes over


# ----------------------------------------------------------------------------- checks


def _int(value: Any, field: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise ConfigError(field, f"must be an integer >= {low}, got {value!r}")
    return int(value)


def _real(value: Any, field: str, low: float, high: float = math.inf, *, open_low: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if ok and (float(value) > low if open_low else float(value) >= low) and float(value) <= high:
        return float(value)
    lo = f"> {low:g}" if open_low else f">= {low:g}"
    hi = "" if math.isinf(high) else f" and <= {high:g}"
    raise ConfigError(field, f"must be a finite number {lo}{hi}, got {value!r}")


# ----------------------------------------------------------------------------- pattern


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float, offset: float = 0.0) -> np.ndarray:
    """Weights ``(rank + offset) ** -exponent`` over a random assignment of ranks 1..n (sum 1)."""
    w = (rng.permutation(n) + 1.0 + offset) ** -exponent
    return w / w.sum()


def _allocate(total: int, weights: np.ndarray, low: int, high: int) -> np.ndarray:
    """Integer counts in ``[low, high]`` summing to ``total``, the part above ``low``
    proportional to ``weights`` where the cap allows (water-filling, largest remainders)."""
    n = len(weights)
    extra, room = total - low * n, high - low
    counts = np.full(n, low, dtype=np.int64)
    if extra <= 0:
        return counts
    lo, hi = 0.0, room / float(weights.min())  # at hi every user is at the cap
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.minimum(mid * weights, room).sum() < extra:
            lo = mid
        else:
            hi = mid
    x = np.minimum(lo * weights, room)
    base = np.floor(x).astype(np.int64)
    frac = np.where(base < room, x - base, -1.0)
    rest = int(extra - base.sum())
    base[np.argsort(-frac, kind="stable")[:rest]] += 1
    return counts + base


class _ItemSampler:
    """Draws items with probabilities ``pop`` exactly as ``searchsorted(cdf, u)`` would,
    but mostly through a lookup table of 2**20 equal slices of [0, 1): only draws that
    fall into a slice holding a cdf step need the binary search (a few %)."""

    _BITS = 20

    def __init__(self, pop: np.ndarray) -> None:
        cdf = np.cumsum(pop)
        cdf /= cdf[-1]
        self.cdf = cdf
        self.n = len(pop)
        grid = np.arange((1 << self._BITS) + 1, dtype=np.float64) / (1 << self._BITS)
        self.table = np.minimum(np.searchsorted(cdf, grid, side="right"), self.n - 1)

    def __call__(self, rng: np.random.Generator, size: int) -> np.ndarray:
        u = rng.random(size)
        slot = (u * (1 << self._BITS)).astype(np.int64)
        items = self.table[slot]
        ambiguous = np.flatnonzero(self.table[slot + 1] != items)
        items[ambiguous] = np.searchsorted(self.cdf, u[ambiguous], side="right")
        np.minimum(items, self.n - 1, out=items)
        return items


def _new_in_draw_order(keys: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Positions, increasing, of the first occurrence of every key that is not in
    ``have`` (sorted). One sort of both when ``keys`` is large, binary search else."""
    n = len(keys)
    pos_bits = max(1, int(n).bit_length())
    top = max(int(keys.max(initial=0)), int(have[-1]) if len(have) else 0)
    if top.bit_length() + pos_bits > 63:  # huge matrices: the slower generic path
        pos = np.sort(np.unique(keys, return_index=True)[1])
        return pos[~np.isin(keys[pos], have)]
    if 4 * n < len(have):
        at = np.searchsorted(have, keys)
        known = at < len(have)
        known[known] = have[at[known]] == keys[known]
        have = have[:0]
        keep = np.flatnonzero(~known)
        keys = keys[keep]
    else:
        keep = None
    # (key, position) packed, `have` entries at position 0 so that they sort first.
    packed = np.empty(len(have) + len(keys), dtype=np.int64)
    np.left_shift(have, pos_bits, out=packed[: len(have)])
    tail = packed[len(have) :]
    np.left_shift(keys, pos_bits, out=tail)
    tail |= np.arange(1, len(keys) + 1, dtype=np.int64)
    packed.sort()
    sorted_keys = packed >> pos_bits
    first = np.ones(len(packed), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    pos = packed[first] & ((1 << pos_bits) - 1)
    pos = pos[pos != 0] - 1
    pos.sort()
    return pos if keep is None else keep[pos]


def _rank_in_group(counts: np.ndarray) -> np.ndarray:
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def _exact_fill(
    rng: np.random.Generator,
    users: np.ndarray,
    need: np.ndarray,
    have_keys: np.ndarray,
    pop: np.ndarray,
) -> np.ndarray:
    """Successive sampling by popularity without replacement, exactly, over the whole
    item grid (Efraimidis-Spirakis keys ``log(U) / p``) for a few heavy users.
    ``users`` are local indices, ``have_keys`` the sorted local keys already taken."""
    n_items = len(pop)
    rows = max(1, (1 << 22) // n_items)
    out = []
    for start in range(0, len(users), rows):
        u, d = users[start : start + rows], need[start : start + rows]
        keys = np.log(1.0 - rng.random((len(u), n_items))) / pop  # larger = drawn earlier
        lo = np.searchsorted(have_keys, u * n_items)
        hi = np.searchsorted(have_keys, (u + 1) * n_items)
        taken = have_keys[np.repeat(lo, hi - lo) + _rank_in_group(hi - lo)]
        keys[np.repeat(np.arange(len(u)), hi - lo), taken - np.repeat(u, hi - lo) * n_items] = -np.inf
        order = np.argsort(-keys, axis=1, kind="stable")
        pick = np.arange(n_items)[None, :] < d[:, None]
        out.append(np.repeat(u, d) * n_items + order[pick])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def _sample_block(
    rng: np.random.Generator,
    counts: np.ndarray,
    seeded: np.ndarray,
    pop: np.ndarray,
    sample: _ItemSampler,
) -> np.ndarray:
    """Sorted local keys ``user * n_items + item`` for one block of users, ``counts[u]``
    distinct items each, drawn by popularity without replacement; ``seeded`` (sorted
    local keys) are already assigned."""
    n_items, n_users = len(pop), len(counts)
    have = seeded
    have_users = have // n_items
    got = np.bincount(have_users, minlength=n_users)
    taken = np.bincount(have_users, weights=pop[have - have_users * n_items], minlength=n_users)
    for _ in range(_ROUNDS):
        need = counts - got
        # Expected draws to get `need` new items, given the popularity already taken.
        draws = np.ceil(need * 1.25 / np.maximum(1.0 - taken, 1e-9)).astype(np.int64) + 2
        active = (need > 0) & (draws < max(8, n_items // 4)) & (taken < 0.9)
        if not active.any():
            break
        users = np.flatnonzero(active)
        keys = np.repeat(users, draws[active]) * n_items
        keys += sample(rng, len(keys))
        keys = keys[_new_in_draw_order(keys, have)]  # grouped by user, in draw order
        key_users = keys // n_items
        # Keep each user's earliest `need` fresh draws: successive sampling.
        keep = _rank_in_group(np.bincount(key_users, minlength=n_users)) < need[key_users]
        keys, key_users = keys[keep], key_users[keep]
        got += np.bincount(key_users, minlength=n_users)
        taken += np.bincount(key_users, weights=pop[keys - key_users * n_items], minlength=n_users)
        keys.sort()
        have = np.insert(have, np.searchsorted(have, keys), keys)
    need = counts - got
    heavy = np.flatnonzero(need > 0)
    if len(heavy):
        have = np.concatenate([have, _exact_fill(rng, heavy, need[heavy], have, pop)])
        have.sort()
    return have


def _observe(
    rng: np.random.Generator, counts: np.ndarray, pop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) pairs, ``counts[u]`` distinct items per user and every item at least once."""
    n_users, n_items = len(counts), len(pop)
    total = int(counts.sum())
    ends = np.cumsum(counts)
    # Every item first gets one rating in a random slot (a slot = one of a user's ratings).
    slots = np.sort(rng.choice(total, size=n_items, replace=False))
    seeded = np.searchsorted(ends, slots, side="right") * n_items + rng.permutation(n_items)
    seeded.sort()
    sample = _ItemSampler(pop)
    # Blocks of consecutive users holding about _CHUNK ratings each.
    cuts = np.unique(np.searchsorted(ends, np.arange(_CHUNK, total, _CHUNK), side="left") + 1)
    bounds = np.concatenate([[0], cuts[cuts < n_users], [n_users]])
    blocks = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        lo, hi = np.searchsorted(seeded, [a * n_items, b * n_items])
        local = _sample_block(rng, counts[a:b], seeded[lo:hi] - a * n_items, pop, sample)
        blocks.append(local + a * n_items)
    keys = np.concatenate(blocks)
    del blocks
    # Time order: a random permutation of the pairs (sorting random packed keys is
    # faster than rng.permutation on 25M rows).
    row_bits = max(1, int(total - 1).bit_length())
    order = rng.integers(0, 1 << min(32, 63 - row_bits), size=total, dtype=np.int64)
    order <<= row_bits
    order |= np.arange(total, dtype=np.int64)
    order.sort()
    order &= (1 << row_bits) - 1
    keys = keys[order]
    del order
    users = keys // n_items
    items = (keys - users * n_items).astype(np.int32)
    return users.astype(np.int32), items


# ----------------------------------------------------------------------------- public


def make_synthetic(
    n_users: int = 1000,
    n_items: int = 1500,
    density: float = 0.05,
    rank: int = 8,
    noise: float = 0.3,
    popularity_skew: float = 1.0,
    seed: int = 0,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    biased: bool = True,
    *,
    n_ratings: int | None = None,
    min_user_ratings: int = 1,
    name: str | None = None,
) -> RatingData:
    """Ratings from a planted biased rank-``rank`` model; see the module docstring.

    Args:
        n_users, n_items: matrix shape; raw ids are ``1..n_users`` and ``1..n_items``.
        density: share of the matrix observed (``round(density * n_users * n_items)``
            ratings), unless ``n_ratings`` gives the exact count.
        rank: rank of the planted interaction ``p_u . q_i`` (std about 0.5 on 1..5).
        noise: standard deviation of the Gaussian noise, in rating units.
        popularity_skew: Zipf exponent of item popularity (user activity: 0.4 times
            it); 0 = uniform.
        seed: all randomness comes from ``np.random.default_rng(seed)``.
        rating_scale: (min, max); ratings are continuous, clipped to it.
        biased: plant user/item biases (std 0.35/0.45 on 1..5); else they are 0.
        min_user_ratings: every user gets at least this many ratings (MovieLens: 20).
        name: dataset name (default ``"synthetic"``).
    """
    n_users, n_items = _int(n_users, "n_users", 1), _int(n_items, "n_items", 1)
    rank = _int(rank, "rank", 1)
    if rank > MAX_SYNTHETIC_RANK:
        raise ConfigError("rank", f"must be at most {MAX_SYNTHETIC_RANK:,}, got {rank:,}")
    noise = _real(noise, "noise", 0.0)
    skew = _real(popularity_skew, "popularity_skew", 0.0, 10.0)
    seed = _int(seed, "seed", 0)
    min_user = _int(min_user_ratings, "min_user_ratings", 1)
    if min_user > n_items:
        raise ConfigError("min_user_ratings", f"is {min_user} but there are only {n_items} items")
    try:
        lo, hi = (float(v) for v in rating_scale)
    except (TypeError, ValueError):
        raise ConfigError("rating_scale", f"must be (min, max), got {rating_scale!r}; e.g. (1, 5)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError("rating_scale", f"must be finite with min < max, got {rating_scale!r}; e.g. (1, 5)")
    cells = n_users * n_items
    if n_ratings is None:
        density = _real(density, "density", 0.0, 1.0, open_low=True)
        total, field = int(round(density * cells)), "density"
    else:
        total, field = _int(n_ratings, "n_ratings", 1), "n_ratings"
    # one limit for every caller (CLI, app, specs): checked before anything is allocated
    check_synthetic_size(n_users, n_items, density, total if n_ratings is not None else None)
    low_total = max(n_users * min_user, n_items)
    if not low_total <= total <= cells:
        raise ConfigError(
            field,
            f"gives {total:,} ratings, but {n_users:,} users x {n_items:,} items need between "
            f"{low_total:,} (every user >= {min_user} and every item >= 1 rating) and {cells:,}; "
            "raise the density or shrink the matrix",
        )

    rng = np.random.default_rng(seed)
    # --- planted parameters (scaled with the width of the rating scale; 1..5 -> x1)
    unit = (hi - lo) / 4.0
    mu = lo + 0.625 * (hi - lo)
    factor_std = (0.5 * unit) ** 0.5 / rank**0.25  # var(p.q) = rank * std^4 = (0.5 unit)^2
    user_factors = (rng.standard_normal((n_users, rank)) * factor_std).astype(np.float32)
    item_factors = (rng.standard_normal((n_items, rank)) * factor_std).astype(np.float32)
    bias_scale = unit if biased else 0.0
    user_bias = (rng.standard_normal(n_users) * 0.35 * bias_scale).astype(np.float32)
    item_bias = (rng.standard_normal(n_items) * 0.45 * bias_scale).astype(np.float32)

    # --- who rates what
    activity = _zipf_weights(rng, n_users, 0.4 * skew)
    # The offset flattens the head: a pure Zipf law gives the top item ~10% of all
    # draws, while MovieLens' most rated movie has ~0.3-0.6% of the ratings.
    popularity = _zipf_weights(rng, n_items, skew, offset=min(40.0, n_items / 50.0))
    counts = _allocate(total, activity, min_user, n_items)
    user_idx, item_idx = _observe(rng, counts, popularity)

    # --- ratings, block by block (P[u] and Q[i] gathers are (block, rank) arrays)
    rating = np.empty(total, dtype=np.float32)
    step = 1 << 18
    # Reused buffers and np.take(out=...): on 25M ratings fresh temporaries per block
    # cost more than the arithmetic.
    acc, eps = np.empty(step), np.empty(step)
    pu, qi = np.empty((step, rank), np.float32), np.empty((step, rank), np.float32)
    for a in range(0, total, step):
        u, i = user_idx[a : a + step], item_idx[a : a + step]
        m = len(u)
        r, e = acc[:m], eps[:m]
        np.take(user_factors, u, axis=0, out=pu[:m])
        np.take(item_factors, i, axis=0, out=qi[:m])
        np.einsum("ij,ij->i", pu[:m], qi[:m], out=r, dtype=np.float64)
        r += user_bias[u]
        r += item_bias[i]
        rng.standard_normal(out=e)
        e *= noise
        r += e
        r += mu
        np.clip(r, lo, hi, out=r)
        rating[a : a + step] = r

    # --- timestamps: strictly increasing, irregular gaps, about ten years in all
    gap = max(1, _SPAN // total)
    timestamp = rng.integers(1, 2 * gap, size=total, dtype=np.int64)
    np.cumsum(timestamp, out=timestamp)
    timestamp += _START

    raw_items = np.arange(1, n_items + 1, dtype=np.int64)
    dominant = np.abs(item_factors).argmax(axis=1)
    sign = np.where(item_factors[np.arange(n_items), dominant] >= 0, "+", "-")
    items = pd.DataFrame(
        {
            "title": "Synthetic item " + pd.Series(raw_items).astype(str),
            "genres": "Factor " + pd.Series(dominant + 1).astype(str) + pd.Series(sign),
        }
    )
    items.index = pd.Index(raw_items, name="item")
    truth = {
        "user_factors": user_factors,
        "item_factors": item_factors,
        "user_bias": user_bias,
        "item_bias": item_bias,
        "global_mean": np.asarray(mu, dtype=np.float64),
        "noise": np.asarray(noise, dtype=np.float64),
    }
    return RatingData(
        name=name or "synthetic",
        user_ids=IdIndex(np.arange(1, n_users + 1, dtype=np.int64), "user"),
        item_ids=IdIndex(raw_items, "item"),
        user_idx=user_idx,
        item_idx=item_idx,
        rating=rating,
        timestamp=timestamp,
        rating_scale=(lo, hi),
        items=items,
        truth=truth,
        source=(
            f"synthetic: {n_users} users x {n_items} items, {total} ratings, rank {rank}, "
            f"noise {noise:g}, skew {skew:g}, biased {bool(biased)}, seed {seed}"
        ),
    )


def make_synthetic_like(shape: str, seed: int = 0, **overrides: Any) -> RatingData:
    """Synthetic data with the exact shape of a MovieLens release (users, items,
    ratings, scale; at least 20 ratings per user): ``"ml-100k"``, ``"ml-1m"``, ``"ml-25m"``.
    ``overrides`` go to :func:`make_synthetic` (e.g. ``rank=16``)."""
    if shape not in SHAPES:
        raise ConfigError("shape", f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    n_users, n_items, n_ratings, scale, min_user = SHAPES[shape]
    kwargs: dict[str, Any] = dict(
        n_users=n_users, n_items=n_items, n_ratings=n_ratings, rating_scale=scale,
        min_user_ratings=min_user, seed=seed, name=f"synthetic-{shape}",
    )
    kwargs.update(overrides)
    return make_synthetic(**kwargs)


def planted_predictions(truth: dict[str, np.ndarray], user_idx: np.ndarray, item_idx: np.ndarray,
                        rating_scale: tuple[float, float] | None = None) -> np.ndarray:
    """The noise-free planted ratings ``mu + b_u + b_i + p_u . q_i`` (clipped to
    ``rating_scale`` when given): the best any model can predict; its test RMSE is
    about ``truth["noise"]``."""
    u, i = np.asarray(user_idx), np.asarray(item_idx)
    pred = np.einsum("ij,ij->i", truth["user_factors"][u], truth["item_factors"][i], dtype=np.float64)
    pred += float(truth["global_mean"]) + truth["user_bias"][u] + truth["item_bias"][i]
    if rating_scale is not None:
        np.clip(pred, rating_scale[0], rating_scale[1], out=pred)
    return pred


def _as_matrix(x: Any, field: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(field, f"must be a non-empty 2-D (rows x rank) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ConfigError(field, "contains NaN or inf; train a model that did not diverge")
    return a


def factor_recovery(learned_factors: Any, true_factors: Any) -> float:
    """How well learned factors span the planted ones: mean cosine of the principal
    angles between the two column spaces, in [0, 1].

    For a student: MF can only learn the factors up to a rotation (any ``P R``,
    ``Q R^-T`` gives the same predictions), so comparing columns one by one is
    meaningless. What is identifiable is the *subspace* the columns span. This score
    orthonormalises both column spaces (SVD) and takes the singular values of
    ``U_learned^T U_true``: the cosines of the angles between the subspaces. 1 means
    the planted subspace is recovered exactly (under any rotation or scaling); random
    directions in ``n`` rows give about ``sqrt(rank / n)``. With different ranks the
    mean is over the smaller rank, so it asks whether the smaller space lies inside the
    larger one; directions a rank-deficient learned matrix lacks count as 0.
    Pass user factors with the planted user factors, or item with item, rows aligned
    with the dense indices.
    """
    a = _as_matrix(learned_factors, "learned_factors")
    b = _as_matrix(true_factors, "true_factors")
    if a.shape[0] != b.shape[0]:
        raise ConfigError(
            "learned_factors",
            f"has {a.shape[0]} rows but the planted factors have {b.shape[0]}; "
            "pass factors of the same users (or items) in the same dense order",
        )
    bases = []
    for m in (a, b):
        u, s, _ = np.linalg.svd(m, full_matrices=False)
        keep = s > s.max(initial=0.0) * max(m.shape) * np.finfo(np.float64).eps
        bases.append(u[:, keep])
    if bases[0].shape[1] == 0 or bases[1].shape[1] == 0:
        return 0.0
    cosines = np.linalg.svd(bases[0].T @ bases[1], compute_uv=False)
    return float(np.clip(cosines, 0.0, 1.0).sum() / min(a.shape[1], b.shape[1]))
