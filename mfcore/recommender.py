"""A trained model that speaks raw ids: predictions, recommendations, similar items.

Unknown-id policy (one for the whole engine): a user or item the model has never seen
gets the known parts of the model only — g + b_i for an unknown user, g + b_u for an
unknown item, g when both are unknown — and the result says so through
``known_user``/``known_item``. Strict lookups (``user_vector``…) raise UnknownIdError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

from mfcore.config import ModelConfig, TrainConfig
from mfcore.data.dataset import IdIndex
from mfcore.model import MFModel


@dataclass(frozen=True)
class Prediction:
    user: Any
    item: Any
    rating: float
    known_user: bool
    known_item: bool

    @property
    def fallback(self) -> bool:
        """True when part of the model was missing and the known parts were used."""
        return not (self.known_user and self.known_item)


@dataclass(eq=False)
class TrainedModel:
    """An :class:`MFModel` plus its id vocabularies, configs, history and provenance."""

    model: MFModel
    user_ids: IdIndex
    item_ids: IdIndex
    model_config: ModelConfig
    train_config: TrainConfig
    dataset: str = ""
    split: str = ""
    history: dict[str, list] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    snapshots: list[dict[str, np.ndarray]] = field(default_factory=list)
    """Per-epoch float16 copies of item/user factors (for the animated 2D map)."""

    # -- arrays (CPU numpy, for inspection pages) -----------------------------------------
    @property
    def global_bias(self) -> float:
        return float(self.model.global_bias.detach().cpu())

    def item_factors(self) -> np.ndarray:
        return self.model.item_factors.detach().cpu().numpy()

    def user_factors(self) -> np.ndarray:
        return self.model.user_factors.detach().cpu().numpy()

    def item_biases(self) -> np.ndarray:
        return self.model.item_bias.detach().cpu().numpy()[:, 0]

    def user_biases(self) -> np.ndarray:
        return self.model.user_bias.detach().cpu().numpy()[:, 0]

    def user_vector(self, user: Any) -> np.ndarray:
        return self.user_factors()[self.user_ids.index_of(user)]

    def item_vector(self, item: Any) -> np.ndarray:
        return self.item_factors()[self.item_ids.index_of(item)]

    # -- predictions ---------------------------------------------------------------------
    def predict(self, user: Any, item: Any) -> Prediction:
        """One prediction (clipped to the rating scale), with the unknown-id policy."""
        ratings, ku, ki = self.predict_many([user], [item])
        return Prediction(user, item, float(ratings[0]), bool(ku[0]), bool(ki[0]))

    @torch.no_grad()
    def predict_many(self, users: Iterable[Any], items: Iterable[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted ratings for parallel raw-id sequences, plus known-user/known-item flags."""
        u = self.user_ids.indices_of(np.asarray(list(users) if not isinstance(users, np.ndarray) else users))
        i = self.item_ids.indices_of(np.asarray(list(items) if not isinstance(items, np.ndarray) else items))
        known_u, known_i = u >= 0, i >= 0
        m = self.model
        dev = m.device
        ut = torch.from_numpy(np.where(known_u, u, 0)).to(dev)
        it = torch.from_numpy(np.where(known_i, i, 0)).to(dev)
        ku = torch.from_numpy(known_u).to(dev)
        ki = torch.from_numpy(known_i).to(dev)
        dot = (m.user_factors[ut] * m.item_factors[it]).sum(1) * (ku & ki)
        s = dot + m.global_bias
        if m.config.use_bias:
            s = s + m.user_bias[ut, 0] * ku + m.item_bias[it, 0] * ki
        out = m.squash(s).clamp(*m.rating_scale)
        return out.cpu().numpy(), known_u, known_i

    @torch.no_grad()
    def recommend(self, user: Any, n: int = 10, exclude: Iterable[Any] = ()) -> pd.DataFrame:
        """Top-``n`` items by predicted rating for a known user, skipping ``exclude``."""
        idx = self.user_ids.index_of(user)
        scores = self.model.score_all_items(torch.tensor([idx], device=self.model.device))[0].cpu().numpy()
        return self._top(scores, n, exclude)

    def _top(self, scores: np.ndarray, n: int, exclude: Iterable[Any]) -> pd.DataFrame:
        scores = scores.astype(np.float64, copy=True)
        ex = self.item_ids.indices_of(np.asarray(list(exclude)))
        scores[ex[ex >= 0]] = -np.inf
        n = max(0, min(n, int(np.isfinite(scores).sum())))
        top = np.argpartition(-scores, n - 1)[:n] if n else np.zeros(0, dtype=np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        return pd.DataFrame({"item": self.item_ids.raw_of(top), "score": scores[top]})

    def similar_items(self, item: Any, n: int = 10) -> pd.DataFrame:
        """Items whose factor vectors have the highest cosine similarity to ``item``'s."""
        idx = self.item_ids.index_of(item)
        Q = self.item_factors().astype(np.float64)
        norms = np.linalg.norm(Q, axis=1)
        sims = Q @ Q[idx] / np.maximum(norms * norms[idx], 1e-12)
        sims[idx] = -np.inf
        frame = self._top(sims, n, ())
        return frame.rename(columns={"score": "similarity"})

    def decompose(self, user: Any, item: Any) -> dict[str, Any]:
        """The prediction split into its parts: g, b_u, b_i and each factor's p_uf·q_if.

        ``parts`` add up to ``raw`` exactly (before the output squash and the clip);
        ``prediction`` is what :meth:`predict` returns.
        """
        pred = self.predict(user, item)
        p = self.user_vector(user).astype(np.float64) if pred.known_user else None
        q = self.item_vector(item).astype(np.float64) if pred.known_item else None
        parts: dict[str, float] = {"global": self.global_bias}
        if self.model_config.use_bias:
            parts["user bias"] = float(self.user_biases()[self.user_ids.index_of(user)]) if pred.known_user else 0.0
            parts["item bias"] = float(self.item_biases()[self.item_ids.index_of(item)]) if pred.known_item else 0.0
        factors = (p * q) if (p is not None and q is not None) else np.zeros(self.model_config.n_factors)
        for f, v in enumerate(factors):
            parts[f"factor {f}"] = float(v)
        raw = float(sum(parts.values()))
        return {
            "parts": parts,
            "raw": raw,
            "output": self.model_config.output,
            "rating_scale": self.model.rating_scale,
            "prediction": pred.rating,
            "known_user": pred.known_user,
            "known_item": pred.known_item,
        }
