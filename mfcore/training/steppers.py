"""Steppers: one epoch of weight updates over a shuffled order of training ratings.

The trainer owns the loop, the events and the evaluation; a stepper only knows how to
update the model for a slice of ratings. All steppers share one objective, per rating:

    ½ (r - r̂)² + ½ l2 (|p_u|² + |q_i|²) + ½ l2_bias (b_u² + b_i²)

so ``lr`` and ``l2`` mean what they mean in classic SGD-MF (Funk, Surprise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np
import torch

from mfcore.config import TrainConfig
from mfcore.model import MFModel
from mfcore.training.objective import batch_objective
from mfcore.training.kernels import sgd_chunk_cpu, sgd_chunk_torch


class Stepper(Protocol):
    def epoch(self, generator: torch.Generator) -> Iterator[tuple[int, float]]:
        """Run one epoch, yielding (ratings processed, summed squared error so far)
        after each chunk of work; the caller may stop iterating to cancel."""

    def set_lr(self, lr: float) -> None: ...


class ChunkedStepper:
    """An epoch = a seeded shuffle of the training ratings, cut into ``chunk_size`` steps."""

    chunk_size: int
    train: "TrainTensors"

    def step(self, idx: torch.Tensor) -> float:
        """Update on the training ratings ``idx``; return their summed squared error
        (each measured before its own update)."""
        raise NotImplementedError

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[int, float]]:
        n = len(self.train)
        order = torch.randperm(n, generator=generator).to(self.train.ratings.device)
        sq_sum = 0.0
        for start in range(0, n, self.chunk_size):
            idx = order[start : start + self.chunk_size]
            sq_sum += self.step(idx)
            yield min(start + self.chunk_size, n), sq_sum


@dataclass
class TrainTensors:
    """The training ratings on the device: dense user/item indices and ratings."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor
    user_weight: torch.Tensor
    """Per-user multiplier of the per-rating L2 (all ones for classic L2)."""
    item_weight: torch.Tensor

    def __len__(self) -> int:
        return len(self.ratings)


def l2_row_weights(index: torch.Tensor, n_rows: int, power: float) -> torch.Tensor:
    """Per-rating L2 multiplier (n̄/n)^(1-power) for each row, n its training count.

    A row's total penalty is then l2·n̄^(1-power)·n^power; n̄ is the mean count over rows
    that have ratings, so the average row is penalised exactly ``l2`` per rating.
    """
    counts = torch.bincount(index.long(), minlength=n_rows).to(torch.float32)
    if power >= 1.0:
        return torch.ones(n_rows, device=index.device)
    rated = counts[counts > 0]
    mean = float(rated.mean()) if len(rated) else 1.0
    return (mean / counts.clamp(min=1.0)).pow(1.0 - power)


def make_stepper(model: MFModel, config: TrainConfig, train: TrainTensors) -> Stepper:
    """ALS gets the solver, per-rating SGD (batch size 1) the compiled kernel, the rest autograd."""
    if config.optimizer == "als":
        from mfcore.training.als import ALSStepper

        return ALSStepper(model, config, train)
    if config.implicit_feedback:
        from mfcore.training.implicit import ImplicitSGDStepper

        return ImplicitSGDStepper(model, config, train)
    if (
        config.optimizer == "sgd"
        and config.batch_size == 1
        and config.momentum == 0
        and config.weight_decay == 0
        and model.config.output == "linear"
    ):
        return PerRatingSGDStepper(model, config, train)
    batch = len(train) if config.batch_size == 0 else config.batch_size
    return TorchOptimStepper(model, config, train, max(1, min(batch, len(train))))


class TorchOptimStepper(ChunkedStepper):
    """Autograd + a ``torch.optim`` optimizer on index batches (the general path).

    The batch loss is the mean of the per-rating objective, so plain SGD's step per
    rating is ``lr / batch_size``; adaptive optimizers (Adam, Adagrad) do not care.
    Embedding rows get sparse gradients where the optimizer supports them, so a step
    costs the rows a batch touches, not the whole table.
    """

    def __init__(self, model: MFModel, config: TrainConfig, train: TrainTensors, batch_size: int) -> None:
        self.model = model
        self.config = config
        self.train = train
        self.chunk_size = batch_size
        name = config.optimizer
        self.sparse = name == "sparse_adam" or (
            name in ("sgd", "adagrad") and config.weight_decay == 0 and config.momentum == 0
        )
        table_params = [model.user_factors, model.item_factors]
        if model.config.use_bias:
            table_params += [model.user_bias, model.item_bias]
        dense_params = [model.global_bias] if model.global_bias.requires_grad else []
        if self.sparse:
            self.optimizers = [_make_optimizer(name, table_params, config)]
            if dense_params:
                # SparseAdam refuses dense tensors; the one scalar gets its dense twin.
                dense_name = "adam" if name == "sparse_adam" else name
                self.optimizers.append(_make_optimizer(dense_name, dense_params, config))
        else:
            self.optimizers = [_make_optimizer(name, table_params + dense_params, config)]

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, idx: torch.Tensor) -> float:
        model, cfg = self.model, self.config
        users, items, ratings = self.train.users[idx], self.train.items[idx], self.train.ratings[idx]
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss, sq = batch_objective(model, users, items, ratings, cfg.l2, cfg.l2_bias, sparse_grad=self.sparse,
                                   user_weight=self.train.user_weight[users], item_weight=self.train.item_weight[items])
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        return float(sq.sum())


def _make_optimizer(name: str, params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "sparse_adam":
        return torch.optim.SparseAdam(params, lr=cfg.lr)
    raise ValueError(f"no torch optimizer for {name!r}")  # configs are validated before this


class PerRatingSGDStepper(ChunkedStepper):
    """Classic per-rating SGD (batch size 1) without autograd.

    CPU: a compiled sequential loop over the model's own storage. Other devices: the
    same update on chunks of ratings (see :mod:`mfcore.training.kernels`).
    """

    CPU_CHUNK = 32_768  # ratings per kernel call: small enough for ~10 progress checks/s
    DEVICE_CHUNK = 4_096  # ratings updated together on a GPU

    def __init__(self, model: MFModel, config: TrainConfig, train: TrainTensors) -> None:
        self.model = model
        self.config = config
        self.train = train
        self.lr = config.lr
        self.on_cpu = model.device.type == "cpu"
        self.chunk_size = self.CPU_CHUNK if self.on_cpu else self.DEVICE_CHUNK
        self.use_bias = model.config.use_bias
        self.learn_g = model.config.global_bias == "learned"
        if self.on_cpu:
            self._np = [t.detach().numpy() for t in (train.users, train.items, train.ratings,
                                                     train.user_weight, train.item_weight)]
            self._weights = [
                p.detach().numpy()
                for p in (model.user_factors, model.item_factors, model.user_bias, model.item_bias)
            ] + [model.global_bias.detach().view(1).numpy()]

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def step(self, idx: torch.Tensor) -> float:
        cfg, m = self.config, self.model
        if self.on_cpu:
            return sgd_chunk_cpu(
                idx.numpy(), *self._np, *self._weights,
                self.lr, cfg.l2, cfg.l2_bias, self.use_bias, self.learn_g,
            )
        return sgd_chunk_torch(
            idx, self.train.users, self.train.items, self.train.ratings,
            self.train.user_weight, self.train.item_weight,
            m.user_factors.data, m.item_factors.data, m.user_bias.data, m.item_bias.data, m.global_bias.data,
            self.lr, cfg.l2, cfg.l2_bias, self.use_bias, self.learn_g,
        )
