"""Per-rating SGD with implicit feedback (SVD++-style training), folded into plain biased MF.

During training a user's vector is  z_u = p_u + |N(u)|^-½ Σ_{j ∈ N(u)} y_j,  where N(u)
are the movies the user rated in the TRAINING set (which movies someone chose to rate
says something about them; the test set is never looked at). Because N(u) is fixed,
z_u is just a vector per user: after every epoch the model's user factors are set to
z_u, so the model stays the plain  r̂ = g + b_u + b_i + z_u·q_i  that every page
inspects and decomposes, and averaging the folded vectors over epochs equals folding
the averaged p and y (folding is linear).

Per user (in a shuffled user order) and per rating (shuffled within the user):
    e = r - (g + b_u + b_i + z_u·q_i)
    b_u += lr (e - l2_bias w_u b_u)          b_i += lr (e - l2_bias w_i b_i)
    q_i += lr (e z_u - l2 w_i q_i)           p_u += lr (e q_i - l2 w_u p_u)   (z_u moves with p_u)
then, once per user,  y_j += lr (|N(u)|^-½ Σ e q_i - l2_implicit v_j |N(u)| y_j)  for j in N(u),
with v_j the item's count weight divided by the mean user count.
"""

from __future__ import annotations

from typing import Iterator

import numba
import numpy as np
import torch

from mfcore.config import TrainConfig
from mfcore.model import MFModel


@numba.njit(cache=True, fastmath=True, nogil=True)
def _users_pass(users_order, indptr, items, ratings, P, Q, Y, bu, bi, g, lr, l2, l2b, l2y, wu, wi, wy,
                use_bias, seed):  # pragma: no cover - compiled
    np.random.seed(seed)
    k = P.shape[1]
    z = np.zeros(k, np.float32)
    acc = np.zeros(k, np.float32)
    sq = 0.0
    for a in users_order:
        s0 = indptr[a]
        s1 = indptr[a + 1]
        n = s1 - s0
        if n == 0:
            continue
        s = np.float32(1.0 / np.sqrt(n))
        for f in range(k):
            z[f] = 0.0
            acc[f] = 0.0
        for t in range(s0, s1):
            j = items[t]
            for f in range(k):
                z[f] += Y[j, f]
        for f in range(k):
            z[f] = P[a, f] + s * z[f]
        perm = np.random.permutation(n)
        ru = l2 * wu[a]
        for tt in range(n):
            t = s0 + perm[tt]
            b = items[t]
            pred = g
            if use_bias:
                pred += bu[a, 0] + bi[b, 0]
            for f in range(k):
                pred += z[f] * Q[b, f]
            e = ratings[t] - pred
            sq += e * e
            if use_bias:
                bu[a, 0] += lr * (e - l2b * wu[a] * bu[a, 0])
                bi[b, 0] += lr * (e - l2b * wi[b] * bi[b, 0])
            ri = l2 * wi[b]
            for f in range(k):
                q = Q[b, f]
                Q[b, f] = q + lr * (e * z[f] - ri * q)
                d = lr * (e * q - ru * P[a, f])
                P[a, f] += d
                z[f] += d
                acc[f] += e * q
        for t in range(s0, s1):
            j = items[t]
            for f in range(k):
                Y[j, f] += lr * (s * acc[f] - l2y * wy[j] * n * Y[j, f])
    return sq


@numba.njit(cache=True, fastmath=True, nogil=True)
def _fold_users(indptr, items, P, Y):  # pragma: no cover - compiled
    """z_u = p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j, one pass over the ratings (no n x k temporary)."""
    Z = P.copy()
    k = P.shape[1]
    for a in range(P.shape[0]):
        s0 = indptr[a]
        s1 = indptr[a + 1]
        if s1 == s0:
            continue
        s = np.float32(1.0 / np.sqrt(s1 - s0))
        for t in range(s0, s1):
            j = items[t]
            for f in range(k):
                Z[a, f] += s * Y[j, f]
    return Z


class ImplicitSGDStepper:
    """Runs the compiled user-grouped pass on CPU arrays; the model (any device) gets
    the folded user vectors after every epoch."""

    RATINGS_PER_CALL = 32_768  # users per kernel call are chosen to cover about this many ratings

    def __init__(self, model: MFModel, config: TrainConfig, train) -> None:
        self.model = model
        self.config = config
        self.lr = config.lr
        users = train.users.cpu().numpy().astype(np.int64)
        order = np.argsort(users, kind="stable")
        self.indptr = np.zeros(model.n_users + 1, dtype=np.int64)
        self.indptr[1:] = np.cumsum(np.bincount(users, minlength=model.n_users))
        self.items = train.items.cpu().numpy()[order].astype(np.int32)
        self.ratings = train.ratings.cpu().numpy()[order].astype(np.float32)
        self.wu = train.user_weight.cpu().numpy().astype(np.float32)
        self.wi = train.item_weight.cpu().numpy().astype(np.float32)
        counts = np.diff(self.indptr)
        mean_user_count = float(counts[counts > 0].mean()) if (counts > 0).any() else 1.0
        self.wy = (self.wi / mean_user_count).astype(np.float32)
        # Explicit part p_u and implicit item vectors y_j live here; the model holds z_u.
        self.P = model.user_factors.detach().cpu().numpy().copy()
        self.Q = model.item_factors.detach().cpu().numpy().copy()
        self.Y = np.zeros_like(self.Q)
        self.bu = model.user_bias.detach().cpu().numpy().copy()
        self.bi = model.item_bias.detach().cpu().numpy().copy()
        self.n_train = len(self.ratings)

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[int, float]]:
        cfg, m = self.config, self.model
        g = float(m.global_bias.detach().cpu())
        user_order = torch.randperm(m.n_users, generator=generator).numpy()
        counts = np.diff(self.indptr)[user_order]
        # Cut the user order into calls of ~RATINGS_PER_CALL ratings (progress + cancel points).
        bounds = np.searchsorted(np.cumsum(counts), np.arange(self.RATINGS_PER_CALL, self.n_train, self.RATINGS_PER_CALL))
        sq_sum, done = 0.0, 0
        for chunk, chunk_counts in zip(np.split(user_order, bounds + 1), np.split(counts, bounds + 1)):
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            sq_sum += float(_users_pass(
                chunk.astype(np.int64), self.indptr, self.items, self.ratings, self.P, self.Q, self.Y, self.bu,
                self.bi, np.float32(g), np.float32(self.lr), np.float32(cfg.l2), np.float32(cfg.l2_bias),
                np.float32(cfg.l2_implicit), self.wu, self.wi, self.wy, m.config.use_bias, seed,
            ))
            done += int(chunk_counts.sum())
            if done < self.n_train:
                yield done, sq_sum
        self._publish()
        yield self.n_train, sq_sum

    def folded_user_factors(self) -> np.ndarray:
        """z_u = p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j for every user (p_u alone for users without ratings)."""
        return _fold_users(self.indptr, self.items, self.P, self.Y)

    def _publish(self) -> None:
        m = self.model
        with torch.no_grad():
            m.user_factors.copy_(torch.from_numpy(self.folded_user_factors()))
            m.item_factors.copy_(torch.from_numpy(self.Q))
            m.user_bias.copy_(torch.from_numpy(self.bu))
            m.item_bias.copy_(torch.from_numpy(self.bi))
