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

from mfcore.config import ModelConfig, TrainConfig
from mfcore.model import MFModel
from mfcore.training.objective import batch_objective


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
        order = self.epoch_order(generator)
        sq_sum = 0.0
        for start in range(0, n, self.chunk_size):
            idx = order[start : start + self.chunk_size]
            sq_sum += self.step(idx)
            yield min(start + self.chunk_size, n), sq_sum

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        """This epoch's shuffle of the training ratings: int32 indices on the data's device.

        On the CPU (and MPS) it is :func:`mfcore.training.shuffle.epoch_order`: exactly
        ``torch.randperm(n, generator=generator)`` up to 4M ratings, a cheaper uniform
        shuffle above. On CUDA the permutation is drawn on the GPU from a device
        generator seeded once from ``generator`` (a CPU shuffle of 25M ratings would
        cost more than the GPU's whole epoch).
        """
        n = len(self.train)
        device = self.train.ratings.device
        if device.type == "cuda":
            dev_gen = getattr(self, "_device_generator", None)
            if dev_gen is None:
                seed = int(torch.randint(0, 2**62, (1,), generator=generator, dtype=torch.int64))
                dev_gen = self._device_generator = torch.Generator(device=device).manual_seed(seed)
            return torch.randperm(n, generator=dev_gen, device=device, dtype=torch.int32)
        from mfcore.training.shuffle import epoch_order  # (numba: imported where a run needs it)

        return torch.from_numpy(epoch_order(n, generator)).to(device)


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
    counts = torch.bincount(index, minlength=n_rows).to(torch.float32)  # int32 as is: no int64 copy
    if power >= 1.0:
        return torch.ones(n_rows, device=index.device)
    rated = counts[counts > 0]
    mean = float(rated.mean()) if len(rated) else 1.0
    return (mean / counts.clamp(min=1.0)).pow(1.0 - power)


def make_stepper(model: MFModel, config: TrainConfig, train: TrainTensors, threads: int = 1) -> Stepper:
    """ALS gets the solver, per-rating SGD (batch size 1) the compiled kernel, the rest autograd.

    ``threads``: CPU threads the per-rating kernel may use on large data (see
    :class:`PerRatingSGDStepper`); torch's own ops follow ``torch.set_num_threads``.
    """
    if config.optimizer == "als":
        from mfcore.training.als import ALSStepper

        return ALSStepper(model, config, train, threads=threads)
    if config.implicit_feedback:
        from mfcore.training.implicit import ImplicitSGDStepper

        return ImplicitSGDStepper(model, config, train)
    if _is_per_rating_sgd(model.config, config):
        return PerRatingSGDStepper(model, config, train, threads=threads)
    batch = len(train) if config.batch_size == 0 else config.batch_size
    return TorchOptimStepper(model, config, train, max(1, min(batch, len(train))))


def _is_per_rating_sgd(model_config: ModelConfig, config: TrainConfig) -> bool:
    return (config.optimizer == "sgd" and config.batch_size == 1 and config.momentum == 0
            and config.weight_decay == 0 and model_config.output == "linear")


def updates_every_row(model_config: ModelConfig, config: TrainConfig) -> bool:
    """Whether each batch updates every row of both factor tables (a dense torch optimizer:
    Adam, AdamW, or SGD/Adagrad with momentum or weight decay). Such a batch costs as much
    as the tables, whatever its size: on ml-25m-shaped tables an Adam epoch took 199 s where
    per-rating SGD took 1.4 s (benchmarks/NOTES.md, section 6)."""
    if config.optimizer == "als" or config.implicit_feedback or _is_per_rating_sgd(model_config, config):
        return False
    return not TorchOptimStepper.uses_sparse_updates(config)


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
        self.sparse = self.uses_sparse_updates(config)
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

    @staticmethod
    def uses_sparse_updates(config: TrainConfig) -> bool:
        """Sparse gradients: only the rows a batch touches are updated."""
        return config.optimizer == "sparse_adam" or (
            config.optimizer in ("sgd", "adagrad") and config.weight_decay == 0 and config.momentum == 0
        )

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

    CPU: a compiled sequential loop over the model's own storage, in the order of
    ``torch.randperm`` (bit for bit, so results do not depend on this speed-up) up to
    :attr:`BLOCKED_MIN_RATINGS` training ratings. From there on (ml-10m and up) the
    factor tables outgrow the caches and the epoch follows a cache-blocked schedule
    (:mod:`mfcore.training.blocked`), which also runs on ``threads`` threads, race-free.
    Other devices: the same update on chunks of ratings (see :mod:`mfcore.training.kernels`).
    """

    CPU_CHUNK = 32_768  # ratings per kernel call: small enough for ~10 progress checks/s
    DEVICE_CHUNK = 4_096  # ratings updated together on a GPU
    BLOCKED_MIN_RATINGS = (1 << 22) + 1  # shuffle.EXACT_MAX + 1 (a test holds them equal)
    """From this many training ratings on, CPU epochs follow the cache-blocked schedule
    (which reorders the TrainTensors in place: only the set of ratings matters)."""

    def __init__(self, model: MFModel, config: TrainConfig, train: TrainTensors, threads: int = 1) -> None:
        self.model = model
        self.config = config
        self.train = train
        self.lr = config.lr
        self.on_cpu = model.device.type == "cpu"
        self.chunk_size = self.CPU_CHUNK if self.on_cpu else self.DEVICE_CHUNK
        self.use_bias = model.config.use_bias
        self.learn_g = model.config.global_bias == "learned"
        self.blocks = None
        from mfcore.training import kernels  # (numba: imported where a run needs it)

        self._kernels = kernels
        if self.on_cpu:
            self._np = [t.detach().numpy() for t in (train.users, train.items, train.ratings,
                                                     train.user_weight, train.item_weight)]
            self._weights = [
                p.detach().numpy()
                for p in (model.user_factors, model.item_factors, model.user_bias, model.item_bias)
            ] + [model.global_bias.detach().view(1).numpy()]
            if len(train) >= self.BLOCKED_MIN_RATINGS:
                from mfcore.training.blocked import BlockedSchedule

                self.blocks = BlockedSchedule(*self._np[:3], model.n_users, model.n_items,
                                              model.config.n_factors, threads=threads)

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[int, float]]:
        if self.on_cpu and self.blocks is not None:
            cfg = self.config
            return self.blocks.epoch(generator, self._weights, self._np[3], self._np[4], self.lr, cfg.l2,
                                     cfg.l2_bias, self.use_bias, self.learn_g, self.CPU_CHUNK)
        return super().epoch(generator)

    def step(self, idx: torch.Tensor) -> float:
        cfg, m = self.config, self.model
        if self.on_cpu:
            return self._kernels.sgd_chunk_cpu(
                idx.numpy(), *self._np, *self._weights,
                self.lr, cfg.l2, cfg.l2_bias, self.use_bias, self.learn_g,
            )
        return self._kernels.sgd_chunk_torch(
            idx, self.train.users, self.train.items, self.train.ratings,
            self.train.user_weight, self.train.item_weight,
            m.user_factors.data, m.item_factors.data, m.user_bias.data, m.item_bias.data, m.global_bias.data,
            self.lr, cfg.l2, cfg.l2_bias, self.use_bias, self.learn_g,
        )
