"""Alternating least squares: closed-form ridge solves for all users, then all items.

It minimises the same objective as the SGD steppers, summed over ratings:

    ½ Σ (r - g - b_u - b_i - p_u·q_i)² + ½ l2 Σ_u n_u |p_u|² + ½ l2 Σ_i n_i |q_i|²
                                       + ½ l2_bias (Σ_u n_u b_u² + Σ_i n_i b_i²)

(the per-rating penalty becomes the "weighted-λ" of ALS-WR). With the items fixed,
each user's [p_u, b_u] is one (k+1)x(k+1) ridge regression, and vice versa.

On the CPU a compiled loop builds each row's Gram matrix from its ratings (stored once
per side in CSR order: 8 bytes per rating and side) and solves it by Cholesky right
away, rows split over ``threads`` threads (rows of a side are independent); no
temporary grows with k² times the rows. Elsewhere (GPU) the Gram matrices of all rows
come from one sparse x dense product and one batched Cholesky on the device.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover
    numba = None

from mfcore.config import TrainConfig
from mfcore.model import MFModel


class ALSStepper:
    """One epoch = a user sweep then an item sweep (then the learned global bias)."""

    GRAM_COLUMNS = 256  # columns of the flattened Gram matrices built per sparse product
    CPU_ROWS_PER_CALL = 8_192  # rows solved per compiled call: progress/cancel points

    def __init__(self, model: MFModel, config: TrainConfig, train, threads: int = 1) -> None:
        self.model = model
        self.config = config
        self.train = train
        self.threads = max(1, int(threads))
        dev = model.device
        self.dev = dev
        self.on_cpu = dev.type == "cpu" and numba is not None
        # Σ over a row's ratings of their L2 weight: n_row for classic L2, n̄^(1-p)·n^p otherwise.
        self.user_counts = torch.bincount(train.users, minlength=model.n_users).to(torch.float32) * train.user_weight
        self.item_counts = torch.bincount(train.items, minlength=model.n_items).to(torch.float32) * train.item_weight
        if self.on_cpu:
            u, i, r = (t.numpy() for t in (train.users, train.items, train.ratings.to(torch.float32)))
            self.csr = {"users": _csr(u, i, r, model.n_users), "items": _csr(i, u, r, model.n_items)}
            self.users, self.items, self.ratings = u, i, r
            return
        self.users = train.users.long()
        self.items = train.items.long()
        self.ratings = train.ratings.to(torch.float32)
        self._patterns: dict = {}

    def set_lr(self, lr: float) -> None:  # closed-form: no learning rate
        pass

    @torch.no_grad()
    def epoch(self, generator: torch.Generator) -> Iterator[tuple[int, float]]:
        if self.on_cpu:
            yield from self._epoch_cpu()
            return
        m = self.model
        n = len(self.ratings)
        self._solve_side("users", rows=self.users, cols=self.items, counts=self.user_counts,
                         own_f=m.user_factors.data, own_b=m.user_bias.data,
                         other_f=m.item_factors.data, other_b=m.item_bias.data)
        yield n // 2, 0.0
        self._solve_side("items", rows=self.items, cols=self.users, counts=self.item_counts,
                         own_f=m.item_factors.data, own_b=m.item_bias.data,
                         other_f=m.user_factors.data, other_b=m.user_bias.data)
        err = self._errors()
        if m.config.global_bias == "learned":
            m.global_bias.data += err.mean()
            err = err - err.mean()
        yield n, float(err.double().square().sum())

    def _errors(self) -> torch.Tensor:
        m = self.model
        pred = (m.user_factors.data[self.users] * m.item_factors.data[self.items]).sum(1) + m.global_bias.data
        if m.config.use_bias:
            pred = pred + m.user_bias.data[self.users, 0] + m.item_bias.data[self.items, 0]
        return self.ratings - pred

    def _pattern(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int):
        """The rating pattern as CSR (rows sorted once) and the permutation into it."""
        order = torch.argsort(rows * n_cols + cols)
        crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=self.dev)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)
        return order, crow, cols[order]

    def _solve_side(self, side: str, *, rows, cols, counts, own_f, own_b, other_f, other_b) -> None:
        """Solve every row's ridge regression with the other side fixed, in place.

        Gram matrices come from one sparse x dense product: A = M @ [x_j x_jᵀ]_j,
        where M is the 0/1 rating pattern (rows x cols), and rhs = T @ X with T the
        pattern carrying each rating's target (r - g - b_col).
        """
        m, cfg = self.model, self.config
        k = own_f.shape[1]
        biased = m.config.use_bias
        d = k + 1 if biased else k
        n_rows, n_cols = own_f.shape[0], other_f.shape[0]
        if side not in self._patterns:
            self._patterns[side] = self._pattern(rows, cols, n_rows, n_cols)
        order, crow, col = self._patterns[side]
        X = other_f
        if biased:
            X = torch.cat([X, torch.ones(n_cols, 1, device=self.dev)], dim=1)
        target = self.ratings - m.global_bias.data
        if biased:
            target = target - other_b[cols, 0]
        ones = torch.ones(len(order), device=self.dev)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(crow, col, ones, (n_rows, n_cols))
            targets = torch.sparse_csr_tensor(crow, col, target[order], (n_rows, n_cols))
        rhs = targets @ X
        A = torch.empty(n_rows, d * d, device=self.dev)
        outer = (X.unsqueeze(2) * X.unsqueeze(1)).reshape(n_cols, d * d)
        for s in range(0, d * d, self.GRAM_COLUMNS):  # bounds the temporary for big k
            A[:, s : s + self.GRAM_COLUMNS] = pattern @ outer[:, s : s + self.GRAM_COLUMNS]
        A = A.view(n_rows, d, d)
        reg = torch.full((d,), cfg.l2, device=self.dev)
        if biased:
            reg[k] = cfg.l2_bias
        # Weighted λ: (weighted) n_row * l2 on the diagonal; rows with no ratings get a
        # plain ridge so the system stays solvable (their solution is 0).
        diag = counts.clamp(min=1e-3).unsqueeze(1) * reg.clamp(min=1e-6).unsqueeze(0)
        A.diagonal(dim1=1, dim2=2).add_(diag)
        L, info = torch.linalg.cholesky_ex(A)
        if bool((info > 0).any()):
            sol = torch.linalg.lstsq(A, rhs.unsqueeze(2)).solution.squeeze(2)
        else:
            sol = torch.cholesky_solve(rhs.unsqueeze(2), L).squeeze(2)
        own_f.copy_(sol[:, :k])
        if biased:
            own_b.copy_(sol[:, k:])

    # -- CPU: compiled per-row solves ----------------------------------------------------
    def _epoch_cpu(self) -> Iterator[tuple[int, float]]:
        m, n = self.model, len(self.ratings)
        half = n // 2
        for side, done0 in (("users", 0), ("items", half)):
            own_f, own_b, other_f, other_b, counts = (
                (m.user_factors, m.user_bias, m.item_factors, m.item_bias, self.user_counts) if side == "users"
                else (m.item_factors, m.item_bias, m.user_factors, m.user_bias, self.item_counts))
            for covered in self._solve_side_cpu(side, own_f.data.numpy(), own_b.data.numpy(),
                                                other_f.data.numpy(), other_b.data.numpy(), counts.numpy()):
                if covered < n:
                    yield done0 + covered // 2, 0.0
            if side == "users":
                yield half, 0.0
        g = m.global_bias.data.view(1).numpy()
        s1, s2 = _error_sums(self.users, self.items, self.ratings, m.user_factors.data.numpy(),
                             m.item_factors.data.numpy(), m.user_bias.data.numpy(), m.item_bias.data.numpy(),
                             np.float32(g[0]), m.config.use_bias)
        if m.config.global_bias == "learned" and n:
            mean = s1 / n
            g[0] += np.float32(mean)
            s2 = max(0.0, s2 - n * mean * mean)
        yield n, float(s2)

    def _solve_side_cpu(self, side, own_f, own_b, other_f, other_b, counts) -> Iterator[int]:
        """Solve every row of ``side``; yields the ratings covered so far."""
        m, cfg = self.model, self.config
        indptr, cols, vals = self.csr[side]
        k = own_f.shape[1]
        biased = m.config.use_bias
        d = k + 1 if biased else k
        X = np.empty((other_f.shape[0], d), dtype=np.float32)
        X[:, :k] = other_f
        if biased:
            X[:, k] = 1.0
        reg = np.full(d, max(cfg.l2, 1e-6), dtype=np.float64)
        if biased:
            reg[k] = max(cfg.l2_bias, 1e-6)
        offset = float(m.global_bias.data)
        n_rows = len(indptr) - 1
        step = self.CPU_ROWS_PER_CALL

        def solve(lo: int, hi: int) -> None:
            _solve_rows(lo, hi, indptr, cols, vals, X, other_b, np.float32(offset), biased, counts, reg, own_f, own_b)

        if self.threads == 1:
            for lo in range(0, n_rows, step):
                solve(lo, min(n_rows, lo + step))
                yield int(indptr[min(n_rows, lo + step)])
            return
        # Rows are independent: each thread takes every other slice (no locks, no races).
        span = step * self.threads
        with ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="mf-als") as pool:
            for lo in range(0, n_rows, span):
                parts = [(a, min(n_rows, a + step)) for a in range(lo, min(n_rows, lo + span), step)]
                futures = [pool.submit(solve, a, b) for a, b in parts[1:]]
                solve(*parts[0])
                for f in futures:
                    f.result()
                yield int(indptr[parts[-1][1]])


def _csr_py(rows, cols, vals, n_rows, indptr, out_cols, out_vals):
    """Counting sort of the ratings by ``rows`` (stable): CSR arrays, int32 columns."""
    indptr[:] = 0
    for t in range(rows.shape[0]):
        indptr[rows[t] + 1] += 1
    for r in range(n_rows):
        indptr[r + 1] += indptr[r]
    pos = indptr[:-1].copy()
    for t in range(rows.shape[0]):
        p = pos[rows[t]]
        out_cols[p] = cols[t]
        out_vals[p] = vals[t]
        pos[rows[t]] = p + 1


def _solve_rows_py(lo, hi, indptr, cols, vals, X, other_b, offset, biased, counts, reg, own_f, own_b):
    """For rows lo..hi-1: A = Σ x xᵀ + diag(w_row·reg), b = Σ (r - g - b_col) x over the
    row's ratings, then [p, b_row] = A⁻¹ b by Cholesky (float64), written in place."""
    d = X.shape[1]
    k = own_f.shape[1]
    A = np.zeros((d, d), dtype=np.float32)
    rhs = np.zeros(d, dtype=np.float32)
    L = np.zeros((d, d), dtype=np.float64)
    inv = np.zeros(d, dtype=np.float64)
    y = np.zeros(d, dtype=np.float64)
    for row in range(lo, hi):
        A[:, :] = 0.0
        rhs[:] = 0.0
        t, end = indptr[row], indptr[row + 1]
        while t + 4 <= end:  # four ratings per pass over A: a quarter of its loads and stores
            j0, j1, j2, j3 = cols[t], cols[t + 1], cols[t + 2], cols[t + 3]
            x0, x1, x2, x3 = X[j0], X[j1], X[j2], X[j3]
            y0, y1, y2, y3 = vals[t] - offset, vals[t + 1] - offset, vals[t + 2] - offset, vals[t + 3] - offset
            if biased:
                y0 -= other_b[j0, 0]
                y1 -= other_b[j1, 0]
                y2 -= other_b[j2, 0]
                y3 -= other_b[j3, 0]
            for a in range(d):
                a0, a1, a2, a3 = x0[a], x1[a], x2[a], x3[a]
                rhs[a] += a0 * y0 + a1 * y1 + a2 * y2 + a3 * y3
                Aa = A[a]
                for c in range(d):
                    Aa[c] += a0 * x0[c] + a1 * x1[c] + a2 * x2[c] + a3 * x3[c]
            t += 4
        while t < end:
            j = cols[t]
            x = X[j]
            target = vals[t] - offset
            if biased:
                target -= other_b[j, 0]
            for a in range(d):
                xa = x[a]
                rhs[a] += xa * target
                Aa = A[a]
                for c in range(d):
                    Aa[c] += xa * x[c]
            t += 1
        w = max(counts[row], 1e-3)
        # Cholesky A = L Lᵀ (float64; the Gram part is symmetric, its lower half is used)
        for a in range(d):
            La = L[a]
            for c in range(a + 1):
                Lc = L[c]
                s = np.float64(A[a, c])
                for t in range(c):  # contiguous rows: a vectorised dot product
                    s -= La[t] * Lc[t]
                if a == c:
                    s += w * reg[a]
                    La[a] = math.sqrt(s) if s > 1e-30 else 1e-15
                    inv[a] = 1.0 / La[a]
                else:
                    La[c] = s * inv[c]
        for a in range(d):  # L y = rhs
            s = np.float64(rhs[a])
            La = L[a]
            for t in range(a):
                s -= La[t] * y[t]
            y[a] = s * inv[a]
        for a in range(d - 1, -1, -1):  # Lᵀ x = y
            y[a] *= inv[a]
            ya = y[a]
            La = L[a]
            for t in range(a):  # column sweep: subtract x_a's share from the rows above
                y[t] -= La[t] * ya
        for a in range(k):
            own_f[row, a] = y[a]
        if biased:
            own_b[row, 0] = y[k]


def _error_sums_py(users, items, ratings, P, Q, bu, bi, g, use_bias):
    """(Σ e, Σ e²) over the ratings, e = r - (g + b_u + b_i + p_u·q_i), in float64."""
    s1 = 0.0
    s2 = 0.0
    for t in range(ratings.shape[0]):
        u = users[t]
        i = items[t]
        pu = P[u]
        qi = Q[i]
        dot = np.float32(0.0)
        for f in range(pu.shape[0]):
            dot += pu[f] * qi[f]
        pred = g + dot
        if use_bias:
            pred += bu[u, 0] + bi[i, 0]
        e = np.float64(ratings[t] - pred)
        s1 += e
        s2 += e * e
    return s1, s2


if numba is not None:
    _FAST = {"contract", "reassoc", "nsz", "arcp"}
    _csr_sort = numba.njit(cache=True, nogil=True)(_csr_py)
    _solve_rows = numba.njit(cache=True, nogil=True, fastmath=_FAST)(_solve_rows_py)
    _error_sums = numba.njit(cache=True, nogil=True, fastmath=_FAST)(_error_sums_py)
else:  # pragma: no cover
    _csr_sort, _solve_rows, _error_sums = _csr_py, _solve_rows_py, _error_sums_py


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int):
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    out_cols = np.empty(len(cols), dtype=np.int32)
    out_vals = np.empty(len(vals), dtype=np.float32)
    _csr_sort(rows, cols, vals, n_rows, indptr, out_cols, out_vals)
    return indptr, out_cols, out_vals
