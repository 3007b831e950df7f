"""The matrix-factorization model: plain or biased, linear or sigmoid output.

Parameters are plain tensors (not ``nn.Embedding``) so that the autograd trainer,
the hand-written kernels and the ALS solver all update the same storage in place.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mfcore.config import ModelConfig


class MFModel(nn.Module):
    """r̂(u, i) = g + b_u + b_i + p_u · q_i (biased) or p_u · q_i (plain), on dense indices."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        config: ModelConfig,
        *,
        global_mean: float,
        rating_scale: tuple[float, float],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.rating_scale = (float(rating_scale[0]), float(rating_scale[1]))
        k = config.n_factors
        self.user_factors = nn.Parameter(self._init((n_users, k), generator))
        self.item_factors = nn.Parameter(self._init((n_items, k), generator))
        # Biases always exist so every model has the same state_dict; plain MF keeps
        # them at zero and out of the optimizer. Shape (n, 1) so that F.embedding can
        # give them sparse gradients like the factor tables.
        self.user_bias = nn.Parameter(torch.zeros(n_users, 1), requires_grad=config.use_bias)
        self.item_bias = nn.Parameter(torch.zeros(n_items, 1), requires_grad=config.use_bias)
        start = global_mean if config.global_bias != "none" else 0.0
        if config.output == "sigmoid":
            # Start the squashed output at the mean rating, not mid-range.
            start = _logit_within(global_mean, self.output_range) if config.global_bias != "none" else 0.0
        self.global_bias = nn.Parameter(
            torch.tensor(float(start)), requires_grad=config.global_bias == "learned"
        )
        self.to(device)

    # -- construction -------------------------------------------------------------------
    def _init(self, shape: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
        cfg = self.config
        if cfg.init == "normal":
            return torch.randn(shape, generator=generator) * cfg.init_std
        return torch.rand(shape, generator=generator) * (cfg.init_high - cfg.init_low) + cfg.init_low

    @property
    def output_range(self) -> tuple[float, float]:
        if self.config.output_range is not None:
            return self.config.output_range
        lo, hi = self.rating_scale
        return (lo - 0.5 if lo > 0.5 else 0.0, hi + 0.5)

    @property
    def n_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    @property
    def device(self) -> torch.device:
        return self.user_factors.device

    # -- prediction ---------------------------------------------------------------------
    def score(self, users: torch.Tensor, items: torch.Tensor, *, sparse_grad: bool = False) -> torch.Tensor:
        """The pre-output sum g + b_u + b_i + p_u·q_i for index tensors (differentiable)."""
        p = F.embedding(users, self.user_factors, sparse=sparse_grad)
        q = F.embedding(items, self.item_factors, sparse=sparse_grad)
        s = (p * q).sum(dim=1) + self.global_bias
        if self.config.use_bias:
            s = s + F.embedding(users, self.user_bias, sparse=sparse_grad).squeeze(1)
            s = s + F.embedding(items, self.item_bias, sparse=sparse_grad).squeeze(1)
        return s

    def forward(self, users: torch.Tensor, items: torch.Tensor, *, sparse_grad: bool = False) -> torch.Tensor:
        """Training-time prediction (sigmoid applied when configured; no clipping)."""
        return self.squash(self.score(users, items, sparse_grad=sparse_grad))

    def squash(self, s: torch.Tensor) -> torch.Tensor:
        if self.config.output == "sigmoid":
            lo, hi = self.output_range
            return lo + (hi - lo) * torch.sigmoid(s)
        return s

    @torch.no_grad()
    def predict(self, users: torch.Tensor, items: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
        """Predicted ratings, clipped to the rating scale (as evaluation uses them)."""
        out = self.forward(users, items)
        if clip:
            out = out.clamp(*self.rating_scale)
        return out

    @torch.no_grad()
    def predict_with_buffers(
        self, users: torch.Tensor, items: torch.Tensor, buffers: dict[str, torch.Tensor],
        weights: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``predict`` computed in reusable buffers: the same operations in the same order
        (the same values), but no fresh memory per call. A run evaluates every epoch, and
        freshly allocated pages cost ~5 us per 4 KiB here (10k test ratings at k = 64:
        three 2.5 MB temporaries, ~4 ms, as long as the epoch itself). ``buffers`` is any
        dict, filled on the first call and grown when needed; ``weights`` (a state dict,
        e.g. averaged weights) replaces the model's own parameters.
        The result is a view of a buffer: use it before the next call."""
        w = weights or {"user_factors": self.user_factors, "item_factors": self.item_factors,
                        "user_bias": self.user_bias, "item_bias": self.item_bias, "global_bias": self.global_bias}
        n, k = len(users), w["user_factors"].shape[1]
        p = _buffer(buffers, "p", (n, k), self.device)
        q = _buffer(buffers, "q", (n, k), self.device)
        s = _buffer(buffers, "s", (n,), self.device)
        torch.index_select(w["user_factors"], 0, users, out=p)
        torch.index_select(w["item_factors"], 0, items, out=q)
        torch.sum(p.mul_(q), dim=1, out=s)
        s.add_(w["global_bias"])
        if self.config.use_bias:
            b = _buffer(buffers, "b", (n, 1), self.device)
            s.add_(torch.index_select(w["user_bias"], 0, users, out=b).squeeze(1))
            s.add_(torch.index_select(w["item_bias"], 0, items, out=b).squeeze(1))
        return self.squash(s).clamp_(*self.rating_scale)

    @torch.no_grad()
    def predict_in_chunks(self, users: torch.Tensor, items: torch.Tensor, chunk: int = 1 << 20) -> torch.Tensor:
        """``predict`` over long index tensors without a huge temporary."""
        parts = [self.predict(users[s : s + chunk], items[s : s + chunk]) for s in range(0, len(users), chunk)]
        return torch.cat(parts) if parts else torch.zeros(0, device=self.device)

    @torch.no_grad()
    def score_all_items(self, users: torch.Tensor) -> torch.Tensor:
        """Predicted rating of every item for each of ``users`` ([len(users), n_items])."""
        s = self.user_factors[users] @ self.item_factors.T + self.global_bias
        if self.config.use_bias:
            s = s + self.user_bias[users] + self.item_bias.T
        return self.squash(s).clamp(*self.rating_scale)

    @torch.no_grad()
    def weights_finite(self) -> bool:
        """No NaN or infinity in any parameter. Checked through each tensor's sum (a NaN or an
        infinity makes the sum non-finite; one reduction per tensor and one sync, instead of
        a boolean copy of every table); a sum overflowing float32 from finite weights
        (|w| ~ 1e34) also counts as not finite: such a run has diverged anyway."""
        sums = torch.stack([p.detach().sum() for p in self.parameters()])
        return bool(torch.isfinite(sums).all())


def _buffer(buffers: dict[str, torch.Tensor], name: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A float32 view of ``shape`` on a kept buffer (reallocated only when it is too small)."""
    size = math.prod(shape)
    buf = buffers.get(name)
    if buf is None or buf.numel() < size or buf.device != device:
        buf = buffers[name] = torch.empty(size, dtype=torch.float32, device=device)
    return buf[:size].view(shape)


def _logit_within(value: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    x = min(max((value - lo) / (hi - lo), 1e-4), 1 - 1e-4)
    return math.log(x / (1 - x))
