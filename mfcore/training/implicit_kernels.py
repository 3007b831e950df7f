"""The compiled loops of implicit-feedback SGD (:mod:`mfcore.training.implicit` explains the maths).

Plain numba functions: called through :func:`mfcore.training.aot.kernels`, which gives
their ahead-of-time build when one matches this file, else these JIT dispatchers.
"""

from __future__ import annotations

import numba
import numpy as np

from mfcore.training.kernels import FASTMATH, _draw, prefetch
from mfcore.training.simd import ld2, sadd, smul, splat, st2, vadd, vfma, vmul, vsub, vsum, vsum2, vzero

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


# --------------------------------------------------------------------------- k = 64, in registers
#
# The same pass for the default preset's 64 factors, with each user's vectors (z_u, c, the
# shrink term, the error-weighted sum) held as four 16-float vectors in registers
# (mfcore.training.simd) instead of scratch rows in memory. Also reordered, same maths:
# * the sum of y_j is taken inside the Fisher-Yates loop (a position is final once visited);
# * the next rating's prediction is started before this rating's step is known:
#   z_u after this step is w + (lr e) q_i with w = keep_z z_u + lr l2 w_u c, so
#   z_u'·q_next = w·q_next + (lr e)(q_i·q_next), two dot products that wait for nothing;
# * dot products are balanced trees (sadd/smul), not the chain LLVM would make of them.
# One ml-100k epoch: 4.1 -> 2.1 ms (benchmarks/NOTES.md, section 12). Results equal the generic
# pass's to float rounding (tests/test_implicit.py).

@numba.njit(inline="always")
def _dot4(a0, a1, a2, a3, b0, b1, b2, b3):  # pragma: no cover - compiled
    """Lane-wise products of two 64-float rows summed as a balanced tree (still 16 lanes)."""
    return sadd(sadd(smul(a0, b0), smul(a1, b1)), sadd(smul(a2, b2), smul(a3, b3)))


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def users_pass_k64(users_order, indptr, items, ratings, P, Q, Y, bu, bi, g, lr, l2, l2b, l2y, wu, wi, wy,
                   use_bias, seed, work):  # pragma: no cover - compiled
    """:func:`users_pass` for k = 64 (same arguments; ``work`` is not used)."""
    sq = 0.0
    state = np.uint64(seed)
    one = np.float32(1.0)
    for a in users_order:
        s0 = indptr[a]
        s1 = indptr[a + 1]
        n = s1 - s0
        if n == 0:
            continue
        # This epoch's order of the user's ratings (Fisher-Yates in place) and Σ y_j on the way.
        c0 = vzero(); c1 = vzero(); c2 = vzero(); c3 = vzero()  # noqa: E702
        for t in range(s1 - 1, s0, -1):
            state, m = _draw(state, np.uint64(t - s0 + 1))
            j = s0 + np.int64(m >> np.uint64(32))
            it = items[t]
            jt = items[j]
            items[t] = jt
            items[j] = it
            rt = ratings[t]
            ratings[t] = ratings[j]
            ratings[j] = rt
            c0 = vadd(c0, ld2(Y, jt, 0)); c1 = vadd(c1, ld2(Y, jt, 16))  # noqa: E702
            c2 = vadd(c2, ld2(Y, jt, 32)); c3 = vadd(c3, ld2(Y, jt, 48))  # noqa: E702
        jt = items[s0]
        c0 = vadd(c0, ld2(Y, jt, 0)); c1 = vadd(c1, ld2(Y, jt, 16))  # noqa: E702
        c2 = vadd(c2, ld2(Y, jt, 32)); c3 = vadd(c3, ld2(Y, jt, 48))  # noqa: E702
        s = np.float32(1.0 / np.sqrt(n))
        sv = splat(s)
        c0 = vmul(c0, sv); c1 = vmul(c1, sv); c2 = vmul(c2, sv); c3 = vmul(c3, sv)  # noqa: E702
        shrink_p = lr * l2 * wu[a]
        z0 = vadd(ld2(P, a, 0), c0); z1 = vadd(ld2(P, a, 16), c1)  # noqa: E702
        z2 = vadd(ld2(P, a, 32), c2); z3 = vadd(ld2(P, a, 48), c3)  # noqa: E702
        shv = splat(shrink_p)
        cr0 = vmul(c0, shv); cr1 = vmul(c1, shv); cr2 = vmul(c2, shv); cr3 = vmul(c3, shv)  # noqa: E702
        kz = splat(one - shrink_p)
        a0 = vzero(); a1 = vzero(); a2 = vzero(); a3 = vzero()  # noqa: E702
        rbu = l2b * wu[a]
        bua = bu[a, 0]
        b = items[s0]
        dot = vsum(_dot4(z0, z1, z2, z3, ld2(Q, b, 0), ld2(Q, b, 16), ld2(Q, b, 32), ld2(Q, b, 48)))
        for t in range(s0, s1):
            b = items[t]
            q0 = ld2(Q, b, 0); q1 = ld2(Q, b, 16); q2 = ld2(Q, b, 32); q3 = ld2(Q, b, 48)  # noqa: E702
            base = ratings[t] - g
            if use_bias:
                base -= bua + bi[b, 0]
            e = base - dot
            sq += e * e
            if use_bias:
                bua += lr * (e - rbu * bua)
                bi[b, 0] += lr * (e - l2b * wi[b] * bi[b, 0])
            kq = splat(one - lr * l2 * wi[b])
            step = lr * e
            sv = splat(step)
            ev = splat(e)
            # q_i += lr (e z_u - l2 w_i q_i)
            st2(Q, b, 0, vfma(q0, kq, vmul(sv, z0))); st2(Q, b, 16, vfma(q1, kq, vmul(sv, z1)))  # noqa: E702
            st2(Q, b, 32, vfma(q2, kq, vmul(sv, z2))); st2(Q, b, 48, vfma(q3, kq, vmul(sv, z3)))  # noqa: E702
            # z_u += lr (e q_i - l2 w_u p_u) = w + (lr e) q_i
            w0 = vfma(z0, kz, cr0); w1 = vfma(z1, kz, cr1); w2 = vfma(z2, kz, cr2); w3 = vfma(z3, kz, cr3)  # noqa: E702
            nb = items[t + 1] if t + 1 < s1 else b
            if nb != b:  # the next prediction from dot products that do not wait for this step
                n0 = ld2(Q, nb, 0); n1 = ld2(Q, nb, 16); n2 = ld2(Q, nb, 32); n3 = ld2(Q, nb, 48)  # noqa: E702
                wq, qq = vsum2(_dot4(w0, w1, w2, w3, n0, n1, n2, n3), _dot4(q0, q1, q2, q3, n0, n1, n2, n3))
                dot = wq + step * qq
            z0 = vfma(sv, q0, w0); z1 = vfma(sv, q1, w1); z2 = vfma(sv, q2, w2); z3 = vfma(sv, q3, w3)  # noqa: E702
            if nb == b and t + 1 < s1:  # the same movie twice in a row (never after de-duplication)
                dot = vsum(_dot4(z0, z1, z2, z3, ld2(Q, b, 0), ld2(Q, b, 16), ld2(Q, b, 32), ld2(Q, b, 48)))
            a0 = vfma(ev, q0, a0); a1 = vfma(ev, q1, a1); a2 = vfma(ev, q2, a2); a3 = vfma(ev, q3, a3)  # noqa: E702
        if use_bias:
            bu[a, 0] = bua
        st2(P, a, 0, vsub(z0, c0)); st2(P, a, 16, vsub(z1, c1))  # noqa: E702
        st2(P, a, 32, vsub(z2, c2)); st2(P, a, 48, vsub(z3, c3))  # noqa: E702
        ls = splat(lr * s)
        a0 = vmul(a0, ls); a1 = vmul(a1, ls); a2 = vmul(a2, ls); a3 = vmul(a3, ls)  # noqa: E702
        shrink = lr * l2y * n
        for t in range(s0, s1):
            j = items[t]
            kp = splat(one - shrink * wy[j])
            st2(Y, j, 0, vfma(ld2(Y, j, 0), kp, a0)); st2(Y, j, 16, vfma(ld2(Y, j, 16), kp, a1))  # noqa: E702
            st2(Y, j, 32, vfma(ld2(Y, j, 32), kp, a2)); st2(Y, j, 48, vfma(ld2(Y, j, 48), kp, a3))  # noqa: E702
    return sq


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def fold_users_k64(indptr, items, P, Y, Z):  # pragma: no cover - compiled
    """:func:`fold_users` for k = 64, the sums in registers."""
    for a in range(P.shape[0]):
        s0 = indptr[a]
        s1 = indptr[a + 1]
        c0 = vzero(); c1 = vzero(); c2 = vzero(); c3 = vzero()  # noqa: E702
        for t in range(s0, s1):
            j = items[t]
            c0 = vadd(c0, ld2(Y, j, 0)); c1 = vadd(c1, ld2(Y, j, 16))  # noqa: E702
            c2 = vadd(c2, ld2(Y, j, 32)); c3 = vadd(c3, ld2(Y, j, 48))  # noqa: E702
        sv = splat(np.float32(1.0 / np.sqrt(s1 - s0)) if s1 > s0 else np.float32(0.0))
        st2(Z, a, 0, vfma(c0, sv, ld2(P, a, 0))); st2(Z, a, 16, vfma(c1, sv, ld2(P, a, 16)))  # noqa: E702
        st2(Z, a, 32, vfma(c2, sv, ld2(P, a, 32))); st2(Z, a, 48, vfma(c3, sv, ld2(P, a, 48)))  # noqa: E702
