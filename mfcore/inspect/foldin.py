"""Fold a new user into a trained model: one regularised least-squares solve, no retraining.

With the item factors and biases fixed, the new user's [p, b] minimises

    ½ Σ_i (r_i - g - b_i - b - p·q_i)² + ½ l2 n |p|² + ½ l2_bias n b²

(the training objective restricted to one user), solved in closed form: the same
ridge regression ALS solves for every user in a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from mfcore.errors import ConfigError, UnknownIdError
from mfcore.recommender import TrainedModel


@dataclass(frozen=True)
class FoldedUser:
    vector: np.ndarray
    bias: float
    ratings: dict[Any, float]

    def predict(self, trained: TrainedModel, items: np.ndarray | None = None) -> np.ndarray:
        """Predicted ratings for ``items`` (raw ids; default: every item), clipped."""
        idx = np.arange(trained.item_ids.__len__()) if items is None else _indices(trained, items)
        Q = trained.item_factors()[idx].astype(np.float64)
        s = trained.global_bias + Q @ self.vector
        if trained.model_config.use_bias:
            s = s + trained.item_biases()[idx] + self.bias
        return _output(trained, s)


def fold_in(trained: TrainedModel, ratings: Mapping[Any, float], *, l2: float | None = None,
            l2_bias: float | None = None) -> FoldedUser:
    """Solve for a new user's vector (and bias) from ``{raw item id: rating}``."""
    if not ratings:
        raise ConfigError("ratings", "rate at least one movie to get recommendations")
    lo, hi = trained.model.rating_scale
    values = np.array([float(v) for v in ratings.values()])
    if not np.all(np.isfinite(values)) or values.min() < lo or values.max() > hi:
        raise ConfigError("ratings", f"ratings must be numbers between {lo:g} and {hi:g}")
    idx = _indices(trained, list(ratings))
    l2 = trained.train_config.l2 if l2 is None else l2
    l2_bias = trained.train_config.l2_bias if l2_bias is None else l2_bias
    l2 = max(l2, 1e-3)  # a model trained with weight decay only still needs a ridge here
    Q = trained.item_factors()[idx].astype(np.float64)
    target = values - trained.global_bias
    biased = trained.model_config.use_bias
    if biased:
        target = target - trained.item_biases()[idx]
        X = np.hstack([Q, np.ones((len(idx), 1))])
        reg = np.array([l2] * Q.shape[1] + [max(l2_bias, 1e-3)])
    else:
        X, reg = Q, np.full(Q.shape[1], l2)
    n = len(idx)
    A = X.T @ X + np.diag(reg * n)
    sol = np.linalg.solve(A, X.T @ target)
    vec = sol[: Q.shape[1]]
    bias = float(sol[-1]) if biased else 0.0
    return FoldedUser(vector=vec, bias=bias, ratings={k: float(v) for k, v in ratings.items()})


def recommend_for(trained: TrainedModel, folded: FoldedUser, n: int = 10, *,
                  exclude: Iterable[Any] = ()) -> pd.DataFrame:
    """Top-``n`` unrated items for a folded-in user, with predicted ratings; ``exclude``:
    more raw item ids to leave out (e.g. rarely rated ones)."""
    scores = folded.predict(trained).astype(np.float64)
    skip = list(folded.ratings.keys()) + list(exclude)
    return trained._top(scores, n, skip).rename(columns={"score": "predicted"})


def decompose_folded(trained: TrainedModel, folded: FoldedUser, item: Any) -> dict[str, Any]:
    """A folded-in user's prediction for ``item`` split into its parts, in the shape of
    :meth:`TrainedModel.decompose` (plus ``output_range``), so the same waterfall draws it.

    ``parts`` (g, the new user's bias, the item's bias, each factor's p_f·q_if) add up to
    ``raw`` exactly; ``prediction`` is what :meth:`FoldedUser.predict` returns.
    """
    i = int(_indices(trained, [item])[0])
    q = trained.item_factors()[i].astype(np.float64)
    p = np.asarray(folded.vector, dtype=np.float64)
    parts: dict[str, float] = {"global": trained.global_bias}
    if trained.model_config.use_bias:
        parts["user bias"] = float(folded.bias)
        parts["item bias"] = float(trained.item_biases()[i])
    for f, v in enumerate(p * q):
        parts[f"factor {f}"] = float(v)
    return {
        "parts": parts,
        "raw": float(sum(parts.values())),
        "output": trained.model_config.output,
        "output_range": tuple(float(v) for v in trained.model.output_range),
        "rating_scale": trained.model.rating_scale,
        "prediction": float(folded.predict(trained, np.array([item]))[0]),
        "known_user": True,
        "known_item": True,
    }


def _indices(trained: TrainedModel, items) -> np.ndarray:
    idx = trained.item_ids.indices_of(np.asarray(list(items)))
    if (idx < 0).any():
        bad = np.asarray(list(items))[idx < 0][0].item()
        raise UnknownIdError("item", bad, "the model never saw this movie")
    return idx


def _output(trained: TrainedModel, s: np.ndarray) -> np.ndarray:
    lo, hi = trained.model.rating_scale
    if trained.model_config.output == "sigmoid":
        a, b = trained.model.output_range
        s = a + (b - a) / (1 + np.exp(-s))
    return np.clip(s, lo, hi)
