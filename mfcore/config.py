"""Hyperparameters (what is learned and how) and runtime options (where and how loud).

Both are frozen dataclasses validated on creation: a bad value raises
:class:`~mfcore.errors.ConfigError` naming the field, the value and the allowed range,
so a UI can put the message next to the field. Both are stored in every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from mfcore.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "sparse_adam", "als")
INITS = ("normal", "uniform")
OUTPUTS = ("linear", "sigmoid")
GLOBAL_BIASES = ("mean", "learned", "none")


@dataclass(frozen=True)
class ModelConfig:
    """The model's form.

    Prediction (biased):  r̂(u, i) = g + b_u + b_i + p_u · q_i
    Prediction (plain):   r̂(u, i) = p_u · q_i
    With ``output="sigmoid"`` the sum is squashed into ``output_range`` by a scaled
    sigmoid: lo + (hi - lo) * σ(sum).
    """

    n_factors: int = 64
    """Length k of each user and item vector."""
    use_bias: bool = True
    """Learn a bias per user and per item (biased MF); False = plain dot-product MF."""
    global_bias: Literal["mean", "learned", "none"] = "mean"
    """g: fixed to the train mean, a learned scalar (started at the mean), or absent."""
    init: Literal["normal", "uniform"] = "normal"
    """Factor initialisation: normal(0, init_std) or uniform(init_low, init_high)."""
    init_std: float = 0.05
    init_low: float = 0.0
    init_high: float = 0.05
    output: Literal["linear", "sigmoid"] = "linear"
    """Linear predictions are clipped to the rating scale when evaluated; sigmoid squashes."""
    output_range: tuple[float, float] | None = None
    """Sigmoid range; None = the data's scale widened by half a step at the top (fastai's 0-5.5)."""

    def __post_init__(self) -> None:
        _check_int("n_factors", self.n_factors, 1, 1024)
        _check_choice("global_bias", self.global_bias, GLOBAL_BIASES)
        _check_choice("init", self.init, INITS)
        _check_choice("output", self.output, OUTPUTS)
        _check_float("init_std", self.init_std, 0.0, 10.0)
        _check_float("init_low", self.init_low, -10.0, 10.0)
        _check_float("init_high", self.init_high, -10.0, 10.0)
        if self.init == "uniform" and not self.init_low < self.init_high:
            raise ConfigError("init_high", f"must be above init_low ({self.init_low}), got {self.init_high}")
        if self.output_range is not None:
            lo, hi = self.output_range
            _check_float("output_range", lo, -1e6, 1e6)
            _check_float("output_range", hi, -1e6, 1e6)
            if not lo < hi:
                raise ConfigError("output_range", f"low must be below high, got ({lo}, {hi})")


@dataclass(frozen=True)
class TrainConfig:
    """How the model is fitted."""

    optimizer: Literal["sgd", "adam", "adamw", "adagrad", "sparse_adam", "als"] = "sgd"
    """SGD-family optimizers step on mini-batches; "als" solves alternating ridge regressions."""
    lr: float = 0.01
    """Learning rate (ignored by ALS)."""
    epochs: int = 40
    batch_size: int = 256
    """Ratings per step; 0 = the whole training set (full-batch gradient descent)."""
    l2: float = 0.05
    """L2 penalty on the factor rows each rating touches (classic SGD-MF), per rating."""
    l2_bias: float = 0.02
    """The same for the biases."""
    l2_count_power: float = 1.0
    """How a row's total L2 grows with its number of training ratings n: as n^power.
    1 = classic per-rating L2 (each rating adds l2); 0.5 = square root, i.e. per rating
    l2·(n̄/n)^0.5, which lets heavily rated users and movies keep more of their signal."""
    implicit_feedback: bool = False
    """Per-rating SGD only: learn from WHICH movies each user rated in training too
    (SVD++-style); the result is folded into the user vectors, so the model keeps the
    plain biased-MF form."""
    l2_implicit: float = 1.5
    """L2 on the implicit-feedback item vectors (with implicit_feedback)."""
    weight_decay: float = 0.0
    """Optimizer weight decay on all parameters (the D2L/fastai way); 0 = off."""
    momentum: float = 0.0
    """SGD momentum."""
    lr_decay: float = 1.0
    """Multiply the learning rate by this after each epoch (1 = constant)."""
    average_from: int | None = None
    """Average the weights of every epoch from this one (1-based) on (stochastic weight
    averaging): evaluation and the saved model use the average. None = off."""
    early_stopping_patience: int = 0
    """Stop after this many epochs without a better validation RMSE and restore the best weights; 0 = off."""
    seed: int = 0
    """Seeds initialisation and shuffling (the split has its own seed argument)."""

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_float("lr", self.lr, 0.0, 100.0, low_open=True)
        _check_int("epochs", self.epochs, 1, 100_000)
        _check_int("batch_size", self.batch_size, 0, 100_000_000)
        if self.batch_size == 0 and self.optimizer == "sgd" and self.lr < 1.0:
            # one step per epoch of lr x the mean gradient: each row moves by about lr x its share of
            # the ratings, so a per-rating lr leaves the model at the global mean (issue 11)
            raise ConfigError("batch_size", f"0 means the whole training set in one step per epoch; plain SGD "
                              f"then needs a learning rate of 1 or more (the 'lowrank' preset uses 50), not "
                              f"{self.lr:g}; use batch size 1 for per-rating SGD, or a batch such as 256")
        _check_float("l2", self.l2, 0.0, 1e4)
        _check_float("l2_bias", self.l2_bias, 0.0, 1e4)
        _check_float("l2_count_power", self.l2_count_power, 0.0, 1.0)
        _check_float("l2_implicit", self.l2_implicit, 0.0, 1e4)
        if self.implicit_feedback and (self.optimizer != "sgd" or self.batch_size != 1 or self.momentum
                                       or self.weight_decay):
            raise ConfigError("implicit_feedback", "needs per-rating SGD: optimizer sgd, batch size 1, "
                              "no momentum, no weight decay")
        _check_float("weight_decay", self.weight_decay, 0.0, 10.0)
        _check_float("momentum", self.momentum, 0.0, 0.999)
        _check_float("lr_decay", self.lr_decay, 0.0, 1.0, low_open=True)
        if self.average_from is not None:
            _check_int("average_from", self.average_from, 1, 100_000)
        _check_int("early_stopping_patience", self.early_stopping_patience, 0, 100_000)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        if self.optimizer == "sparse_adam" and self.weight_decay > 0:
            raise ConfigError("weight_decay", "SparseAdam has no weight decay; set it to 0 and use l2 instead")
        if self.optimizer == "als" and self.l2 <= 0:
            raise ConfigError("l2", "ALS needs a positive l2 (its ridge penalty), e.g. 0.05")


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how a run executes; never changes what is learned."""

    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps (see mfcore.device.resolve_device)."""
    cpu_threads: int = 0
    """CPU threads of a run; 0 = the measured defaults: torch ops use one thread per job on a 2-core
    machine (mfcore.device.default_cpu_threads), the compiled kernels every core from 4M ratings on
    (mfcore.device.default_kernel_threads)."""
    progress_interval_s: float = 1.0
    """Emit an in-epoch progress event at most this often (seconds of work)."""
    keep_snapshots: bool | None = None
    """Keep item/user factors after every epoch (for the animated 2D map); None = only for
    datasets up to ml-1m size."""
    eval_ranking: bool = False
    """Also compute ranking metrics at the end (costs a pass over all user x item scores)."""

    def __post_init__(self) -> None:
        _check_int("cpu_threads", self.cpu_threads, 0, 1024)
        _check_float("progress_interval_s", self.progress_interval_s, 0.0, 3600.0, low_open=True)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-safe dict of a config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a config, ignoring unknown keys (configs from older versions load)."""
    names = {f.name for f in fields(cls)}
    kept = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names}
    return cls(**kept)


def with_changes(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that also validates (frozen dataclasses re-run __post_init__)."""
    return replace(config, **changes)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"unknown value {value!r}; choose one of {', '.join(choices)}")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {value}")


def _check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(name, f"must be a finite number, got {value}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bound = f"above {low}" if low_open else f"at least {low}"
        raise ConfigError(name, f"must be {bound} and at most {high}, got {value}")


def check_combination(model: ModelConfig, train: TrainConfig) -> None:
    """Checks that need both configs (each is valid alone)."""
    if train.implicit_feedback and model.output != "linear":
        raise ConfigError("implicit_feedback", "works with the linear output only; set output to 'linear'")
    if train.optimizer == "als" and model.output != "linear":
        raise ConfigError("output", "ALS solves least squares on a linear output; use output 'linear' or an SGD-family optimizer")
