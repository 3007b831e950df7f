"""Progress events that training streams to any caller (CLI, tests, job runner, app).

Each event is a small frozen dataclass; ``event_to_dict`` makes it JSON-safe for a
store or a queue. The model is in a usable state whenever an event is yielded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Union


@dataclass(frozen=True)
class RunStarted:
    kind: ClassVar[str] = "started"
    device: str
    epochs: int
    n_train: int
    n_test: int
    batches_per_epoch: int
    baselines: dict[str, float] = field(default_factory=dict)
    """global_mean_rmse/mae and baseline_rmse/mae (regularised biases) on the same split."""


@dataclass(frozen=True)
class EpochProgress:
    """Within-epoch progress, emitted at most every ``progress_interval_s`` of work."""

    kind: ClassVar[str] = "progress"
    epoch: int
    epochs: int
    done: int
    """Training ratings processed so far in this epoch."""
    total: int
    train_loss: float
    """Mean squared error over the ratings of this epoch so far."""
    examples_per_second: float
    elapsed_s: float
    device: str


@dataclass(frozen=True)
class EpochEnded:
    kind: ClassVar[str] = "epoch"
    epoch: int
    """1-based."""
    epochs: int
    train_loss: float
    """Mean squared training error over the epoch (as seen while stepping)."""
    test_rmse: float
    test_mae: float
    examples_per_second: float
    seconds: float
    """Training seconds of this epoch (evaluation excluded)."""
    elapsed_s: float
    """Training seconds since the start (evaluation excluded)."""
    lr: float
    device: str
    is_best: bool


@dataclass(frozen=True)
class RunFinished:
    kind: ClassVar[str] = "finished"
    reason: str
    """"completed", "early_stopped" or "cancelled"."""
    epochs_run: int
    best_epoch: int
    metrics: dict[str, float]
    """Final test metrics of the kept weights, next to the baselines."""
    train_seconds: float
    examples_per_second: float
    device: str


@dataclass(frozen=True)
class RunFailed:
    kind: ClassVar[str] = "failed"
    reason: str
    """"diverged" or "error"."""
    message: str
    epoch: int
    device: str


Event = Union[RunStarted, EpochProgress, EpochEnded, RunFinished, RunFailed]
EVENT_TYPES: dict[str, type] = {
    cls.kind: cls for cls in (RunStarted, EpochProgress, EpochEnded, RunFinished, RunFailed)
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """JSON-safe dict with a ``kind`` key."""
    return {"kind": event.kind, **asdict(event)}


def event_from_dict(values: dict[str, Any]) -> Event:
    """Inverse of :func:`event_to_dict`."""
    values = dict(values)
    cls = EVENT_TYPES[values.pop("kind")]
    return cls(**values)
