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

One compiled call runs a slice of the user order (about ``RATINGS_PER_CALL`` ratings: the
progress and cancel points). Inside it nothing is allocated: each user's ratings are
shuffled in place (the stepper owns its user-sorted copy), p_u, z_u, the implicit part
and the error-weighted item sum live in four preallocated rows, and the rows of the
next ratings are prefetched. On the CPU the item factors and both biases are the
model's own storage (updated in place, no copies) and the fold writes the model's user
factors in place; on other devices the stepper works on CPU copies and publishes them.
The compiled loops are in :mod:`mfcore.training.implicit_kernels`, called through
:func:`mfcore.training.aot.kernels` (their ahead-of-time build where it matches).
Measurements: ``benchmarks/NOTES.md`` (sections 9 and 12).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from mfcore.config import TrainConfig
from mfcore.model import MFModel
from mfcore.training.aot import cpu_has, kernels

K_REGISTERS = 64
"""The factor count of the register kernels (implicit_kernels.users_pass_k64): four 16-float
vectors a row, kept in registers where the CPU has AVX-512's 32 of them."""


def uses_register_kernels(n_factors: int) -> bool:
    """Whether a pass with ``n_factors`` runs the register kernels (else the generic ones)."""
    return n_factors == K_REGISTERS and cpu_has("avx512f")


def _aligned(values: np.ndarray, dtype) -> np.ndarray:
    """A copy of ``values`` as ``dtype`` starting on a 64-byte boundary (a cache line). numpy
    aligns to 16 bytes; a 64-float row that starts mid-line spans five lines instead of four,
    and the scratch rows (z, p, ...) measured up to 1.5x slower that way."""
    values = np.asarray(values)
    nbytes = values.size * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    offset = (-raw.ctypes.data) % 64
    out = raw[offset : offset + nbytes].view(dtype).reshape(values.shape)
    out[...] = values
    return out


class ImplicitSGDStepper:
    """Runs the compiled user-grouped pass on CPU arrays; the model (any device) gets
    the folded user vectors after every epoch."""

    RATINGS_PER_CALL = 32_768  # users per kernel call are chosen to cover about this many ratings

    def __init__(self, model: MFModel, config: TrainConfig, train) -> None:
        self.model = model
        self.config = config
        self.lr = config.lr
        users = train.users.cpu().numpy()
        # numpy's stable sort is a radix sort for 16-bit keys: 0.4 ms instead of 3.8 on ml-100k
        keys = users.astype(np.uint16) if model.n_users <= 1 << 16 else users
        order = np.argsort(keys, kind="stable")
        self.counts = np.bincount(users, minlength=model.n_users).astype(np.int64)
        self.indptr = np.zeros(model.n_users + 1, dtype=np.int64)
        np.cumsum(self.counts, out=self.indptr[1:])
        self.items = _aligned(train.items.cpu().numpy()[order], np.int32)
        self.ratings = _aligned(train.ratings.cpu().numpy()[order], np.float32)
        self.wu = _aligned(train.user_weight.cpu().numpy(), np.float32)
        self.wi = _aligned(train.item_weight.cpu().numpy(), np.float32)
        rated = self.counts[self.counts > 0]
        mean_user_count = float(rated.mean()) if len(rated) else 1.0
        self.wy = _aligned(self.wi / mean_user_count, np.float32)
        self.on_cpu = model.device.type == "cpu"
        # Explicit part p_u and implicit item vectors y_j live here; the model holds z_u.
        self.P = _aligned(model.user_factors.detach().cpu().numpy(), np.float32)
        if self.on_cpu:  # the model's own storage, updated in place
            self.Q = model.item_factors.detach().numpy()
            self.bu = model.user_bias.detach().numpy()
            self.bi = model.item_bias.detach().numpy()
        else:
            self.Q = model.item_factors.detach().cpu().numpy().copy()
            self.bu = model.user_bias.detach().cpu().numpy().copy()
            self.bi = model.item_bias.detach().cpu().numpy().copy()
        self.Y = _aligned(np.zeros_like(self.Q), np.float32)
        self.work = _aligned(np.zeros((4, self.P.shape[1])), np.float32)
        fns = kernels()
        registers = uses_register_kernels(self.P.shape[1])
        self._users_pass = fns.users_pass_k64 if registers else fns.users_pass
        self._fold_users = fns.fold_users_k64 if registers else fns.fold_users
        self.n_train = len(self.ratings)

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[int, float]]:
        cfg, m = self.config, self.model
        g = np.float32(float(m.global_bias.detach().cpu()))
        user_order = torch.randperm(m.n_users, generator=generator).numpy()
        # Cut the user order into calls of ~RATINGS_PER_CALL ratings (progress + cancel points).
        ends = np.cumsum(self.counts[user_order])
        cuts = np.searchsorted(ends, np.arange(self.RATINGS_PER_CALL, self.n_train, self.RATINGS_PER_CALL)) + 1
        bounds = [0, *cuts.tolist(), len(user_order)]
        args = (self.indptr, self.items, self.ratings, self.P, self.Q, self.Y, self.bu, self.bi, g,
                np.float32(self.lr), np.float32(cfg.l2), np.float32(cfg.l2_bias), np.float32(cfg.l2_implicit),
                self.wu, self.wi, self.wy, m.config.use_bias)
        users_pass = self._users_pass
        sq_sum = 0.0
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi <= lo:
                continue
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            sq_sum += float(users_pass(user_order[lo:hi], *args, seed, self.work))
            done = int(ends[hi - 1])
            if done < self.n_train:
                yield done, sq_sum
        self._publish()
        yield self.n_train, sq_sum

    def folded_user_factors(self, out: np.ndarray | None = None) -> np.ndarray:
        """z_u = p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j for every user (p_u alone for users without ratings)."""
        out = np.empty_like(self.P) if out is None else out
        self._fold_users(self.indptr, self.items, self.P, self.Y, out)
        return out

    def _publish(self) -> None:
        m = self.model
        if self.on_cpu:  # Q and the biases are the model's storage already
            self.folded_user_factors(out=m.user_factors.detach().numpy())
            return
        with torch.no_grad():
            m.user_factors.copy_(torch.from_numpy(self.folded_user_factors()))
            m.item_factors.copy_(torch.from_numpy(self.Q))
            m.user_bias.copy_(torch.from_numpy(self.bu))
            m.item_bias.copy_(torch.from_numpy(self.bi))
