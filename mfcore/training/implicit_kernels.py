"""The compiled loops of implicit-feedback SGD (:mod:`mfcore.training.implicit` explains the maths).

Plain numba functions: called through :func:`mfcore.training.aot.kernels`, which gives
their ahead-of-time build when one matches this file, else these JIT dispatchers.
"""

from __future__ import annotations

import numba
import numpy as np

from mfcore.training.kernels import FASTMATH, _draw, prefetch

PREFETCH_AHEAD = 4
"""Ratings ahead (within a user) whose item rows the pass prefetches."""


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def users_pass(users_order, indptr, items, ratings, P, Q, Y, bu, bi, g, lr, l2, l2b, l2y, wu, wi, wy,
                use_bias, seed, work):  # pragma: no cover - compiled
    """One slice of the user order; returns the summed squared error (each rating's
    error measured before its own update). ``work``: a (4, k) float32 scratch array."""
    k = P.shape[1]
    z = work[0]    # z_u = p_u + c, moving with p_u (p_u itself is z_u - c: not kept)
    cr = work[1]   # lr l2 w_u c: the part of p_u's L2 step that z_u's own shrinking leaves out
    c = work[2]    # |N(u)|^-½ Σ y_j (fixed during the user's ratings)
    acc = work[3]  # Σ e q_i, then lr |N(u)|^-½ Σ e q_i
    sq = 0.0
    state = np.uint64(seed)
    for a in users_order:
        s0 = indptr[a]
        s1 = indptr[a + 1]
        n = s1 - s0
        if n == 0:
            continue
        # This epoch's order of the user's ratings: Fisher-Yates of the records in place.
        for t in range(s1 - 1, s0, -1):
            state, m = _draw(state, np.uint64(t - s0 + 1))
            j = s0 + np.int64(m >> np.uint64(32))
            it = items[t]
            items[t] = items[j]
            items[j] = it
            rt = ratings[t]
            ratings[t] = ratings[j]
            ratings[j] = rt
        s = np.float32(1.0 / np.sqrt(n))
        for f in range(k):
            c[f] = 0.0
            acc[f] = 0.0
        for t in range(s0, s1):
            y = Y[items[t]]
            for f in range(k):
                c[f] += y[f]
        pa = P[a]
        shrink_p = lr * l2 * wu[a]
        for f in range(k):
            c[f] *= s
            z[f] = pa[f] + c[f]
            cr[f] = shrink_p * c[f]
        keep_z = np.float32(1.0) - shrink_p
        rbu = l2b * wu[a]
        bua = bu[a, 0]
        for t in range(s0, s1):
            if t + PREFETCH_AHEAD < s1:
                ahead = Q[items[t + PREFETCH_AHEAD]]
                for f in range(0, k, 16):
                    prefetch(ahead, f)
            b = items[t]
            q = Q[b]
            dot = np.float32(0.0)
            for f in range(k):
                dot += z[f] * q[f]
            pred = g + dot
            if use_bias:
                pred += bua + bi[b, 0]
            e = ratings[t] - pred
            sq += e * e
            if use_bias:
                bua += lr * (e - rbu * bua)
                bi[b, 0] += lr * (e - l2b * wi[b] * bi[b, 0])
            # q_i += lr (e z_u - l2 w_i q_i);  z_u += lr (e q_i - l2 w_u p_u) with p_u = z_u - c
            keep_q = np.float32(1.0) - lr * l2 * wi[b]
            step = lr * e
            for f in range(k):
                qf = q[f]
                zf = z[f]
                q[f] = qf * keep_q + step * zf
                z[f] = zf * keep_z + step * qf + cr[f]
                acc[f] += e * qf
        if use_bias:
            bu[a, 0] = bua
        for f in range(k):
            pa[f] = z[f] - c[f]
            acc[f] *= lr * s
        shrink = lr * l2y * n
        for t in range(s0, s1):
            j = items[t]
            y = Y[j]
            keep = np.float32(1.0) - shrink * wy[j]
            for f in range(k):
                y[f] = y[f] * keep + acc[f]
    return sq


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def fold_users(indptr, items, P, Y, Z):  # pragma: no cover - compiled
    """Z[u] = p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j, one pass over the ratings, written into ``Z``
    (which may be the model's user factors; no temporary)."""
    k = P.shape[1]
    for a in range(P.shape[0]):
        s0 = indptr[a]
        s1 = indptr[a + 1]
        za = Z[a]
        pa = P[a]
        for f in range(k):
            za[f] = 0.0
        for t in range(s0, s1):
            y = Y[items[t]]
            for f in range(k):
                za[f] += y[f]
        s = np.float32(1.0 / np.sqrt(s1 - s0)) if s1 > s0 else np.float32(0.0)
        for f in range(k):
            za[f] = pa[f] + s * za[f]
