"""Alternating least squares: closed-form ridge solves for all users, then all items.

It minimises the same objective as the SGD steppers, summed over ratings:

    ½ Σ (r - g - b_u - b_i - p_u·q_i)² + ½ l2 Σ_u n_u |p_u|² + ½ l2 Σ_i n_i |q_i|²
                                       + ½ l2_bias (Σ_u n_u b_u² + Σ_i n_i b_i²)

(the per-rating penalty becomes the "weighted-λ" of ALS-WR). With the items fixed,
each user's [p_u, b_u] is one (k+1)x(k+1) ridge regression; all of them are built with
scatter-adds and solved as one batched Cholesky on the device, and vice versa.
"""

from __future__ import annotations

import warnings
from typing import Iterator

import torch

from mfcore.config import TrainConfig
from mfcore.model import MFModel


class ALSStepper:
    """One epoch = a user sweep then an item sweep (then the learned global bias)."""

    GRAM_COLUMNS = 256  # columns of the flattened Gram matrices built per sparse product

    def __init__(self, model: MFModel, config: TrainConfig, train) -> None:
        self.model = model
        self.config = config
        self.train = train
        self.users = train.users.long()
        self.items = train.items.long()
        self.ratings = train.ratings.to(torch.float32)
        dev = model.device
        # Σ over a row's ratings of their L2 weight: n_row for classic L2, n̄^(1-p)·n^p otherwise.
        self.user_counts = torch.bincount(self.users, minlength=model.n_users).to(torch.float32) * train.user_weight
        self.item_counts = torch.bincount(self.items, minlength=model.n_items).to(torch.float32) * train.item_weight
        self.dev = dev
        self._patterns: dict = {}

    def set_lr(self, lr: float) -> None:  # closed-form: no learning rate
        pass

    @torch.no_grad()
    def epoch(self, generator: torch.Generator) -> Iterator[tuple[int, float]]:
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
