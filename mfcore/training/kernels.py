"""Per-rating SGD (classic Funk/Surprise SGD-MF) as a compiled CPU kernel and its torch twin.

For each rating in the shuffled order, with e = r - (g + b_u + b_i + p_u·q_i):

    b_u += lr (e - l2_bias w_u b_u)    b_i += lr (e - l2_bias w_i b_i)
    p_u += lr (e q_i - l2 w_u p_u)     q_i += lr (e p_u - l2 w_i q_i)  (both from the old values)
    g   += lr e                         (only when the global bias is learned)

(w_u, w_i: the rows' L2 weights, 1 for classic L2; see TrainConfig.l2_count_power.)
On the CPU this runs as a numba loop over ratings, updating the model's tensors in
place through zero-copy numpy views (tens of millions of ratings a second on one core).
On other devices the same update is applied to chunks of ratings at once: each rating's
step is computed from the weights at the start of the chunk and the steps are summed
into the rows (Hogwild-style), which equals the sequential loop when no two ratings of
a chunk share a row and stays close to it otherwise.
"""

from __future__ import annotations

import numpy as np
import torch

try:  # numba is a hard requirement, but keep the import failure explicit and local
    import numba
except ImportError:  # pragma: no cover - exercised only on broken installs
    numba = None


def _sgd_epoch_py(order, users, items, ratings, wu, wi, P, Q, bu, bi, g, lr, l2, l2_bias, use_bias, learn_g):
    k = P.shape[1]
    sq = 0.0
    for n in order:
        u = users[n]
        i = items[n]
        lam_u = l2 * wu[u]
        lam_i = l2 * wi[i]
        pred = g[0]
        if use_bias:
            pred += bu[u, 0] + bi[i, 0]
        for f in range(k):
            pred += P[u, f] * Q[i, f]
        e = ratings[n] - pred
        sq += e * e
        if use_bias:
            bu[u, 0] += lr * (e - l2_bias * wu[u] * bu[u, 0])
            bi[i, 0] += lr * (e - l2_bias * wi[i] * bi[i, 0])
        if learn_g:
            g[0] += lr * e
        for f in range(k):
            p = P[u, f]
            q = Q[i, f]
            P[u, f] = p + lr * (e * q - lam_u * p)
            Q[i, f] = q + lr * (e * p - lam_i * q)
    return sq


_sgd_epoch = numba.njit(cache=True, fastmath=False, nogil=True)(_sgd_epoch_py) if numba is not None else None


def sgd_chunk_cpu(
    order: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    wu: np.ndarray,
    wi: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    g: np.ndarray,
    lr: float,
    l2: float,
    l2_bias: float,
    use_bias: bool,
    learn_g: bool,
) -> float:
    """Sequential per-rating SGD over ``order``; arrays are updated in place."""
    fn = _sgd_epoch if _sgd_epoch is not None else _sgd_epoch_py
    return float(
        fn(order, users, items, ratings, wu, wi, P, Q, bu, bi, g,
           np.float32(lr), np.float32(l2), np.float32(l2_bias), use_bias, learn_g)
    )


@torch.no_grad()
def sgd_chunk_torch(
    idx: torch.Tensor,
    users: torch.Tensor,
    items: torch.Tensor,
    ratings: torch.Tensor,
    wu: torch.Tensor,
    wi: torch.Tensor,
    P: torch.Tensor,
    Q: torch.Tensor,
    bu: torch.Tensor,
    bi: torch.Tensor,
    g: torch.Tensor,
    lr: float,
    l2: float,
    l2_bias: float,
    use_bias: bool,
    learn_g: bool,
) -> float:
    """The same update for a chunk of ratings at once (summed per-rating steps)."""
    u = users[idx].long()
    i = items[idx].long()
    p = P.index_select(0, u)
    q = Q.index_select(0, i)
    pred = (p * q).sum(1) + g
    if use_bias:
        b_u = bu.index_select(0, u).squeeze(1)
        b_i = bi.index_select(0, i).squeeze(1)
        pred = pred + b_u + b_i
    e = ratings[idx] - pred
    w_u, w_i = wu[u], wi[i]
    if use_bias:
        bu.index_add_(0, u, (lr * (e - l2_bias * w_u * b_u)).unsqueeze(1))
        bi.index_add_(0, i, (lr * (e - l2_bias * w_i * b_i)).unsqueeze(1))
    if learn_g:
        g.add_(lr * e.sum())
    ec = e.unsqueeze(1)
    P.index_add_(0, u, lr * (ec * q - (l2 * w_u).unsqueeze(1) * p))
    Q.index_add_(0, i, lr * (ec * p - (l2 * w_i).unsqueeze(1) * q))
    return float(e.double().square().sum())
