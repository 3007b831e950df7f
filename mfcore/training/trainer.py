"""The streaming trainer: a generator of events around an epoch loop.

    trainer = Trainer(data, split, ModelConfig(), TrainConfig())
    for event in trainer.run():      # or fit(..., on_event=print)
        ...                          # trainer.model is usable after every event
    trainer.cancel()                 # from any thread: stops between batches

Ratings live as tensors on the device; each epoch slices a shuffled index tensor
into batches (no DataLoader, no Python objects per rating).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig, check_combination
from mfcore.data.dataset import RatingData
from mfcore.data.splits import Split
from mfcore.device import configure_cpu_threads, default_kernel_threads, describe_device, resolve_device
from mfcore.errors import DivergedError, MFError
from mfcore.evaluation import evaluate
from mfcore.events import EpochEnded, EpochProgress, Event, RunFailed, RunFinished, RunStarted
from mfcore.model import MFModel
from mfcore.training.steppers import TrainTensors, l2_row_weights, make_stepper
from mfcore.training.snapshots import keep_snapshot, snapshot_limit

# Up to this many ratings, factor snapshots are kept per epoch by default (ml-1m size).
SNAPSHOT_MAX_RATINGS = 1_100_000


@dataclass
class History:
    """Per-epoch metrics, as lists (plain data: goes into checkpoints and stores)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_rmse: list[float] = field(default_factory=list)
    test_mae: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    examples_per_second: list[float] = field(default_factory=list)

    def add(self, event: EpochEnded) -> None:
        self.epoch.append(event.epoch)
        self.train_loss.append(event.train_loss)
        self.test_rmse.append(event.test_rmse)
        self.test_mae.append(event.test_mae)
        self.seconds.append(event.seconds)
        self.examples_per_second.append(event.examples_per_second)

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.__dict__.items()}


class Trainer:
    """Fits one model on one split and streams events."""

    def __init__(
        self,
        data: RatingData,
        split: Split,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
        runtime: RuntimeOptions | None = None,
        *,
        resume_from: Any = None,
        first_epoch: int = 1,
    ) -> None:
        """``resume_from`` (a TrainedModel of the same data and model config) starts from its
        weights at epoch ``first_epoch`` (the learning rate decayed as if the earlier epochs
        had run); the shuffles of the resumed epochs differ from an uninterrupted run's."""
        self.resume_from = resume_from
        self.first_epoch = int(first_epoch)
        self.data = data
        self.split = split
        self.model_config = model_config or ModelConfig()
        self.train_config = train_config or TrainConfig()
        self.runtime = runtime or RuntimeOptions()
        check_combination(self.model_config, self.train_config)
        self.device = resolve_device(self.runtime.device)
        self.model: MFModel | None = None
        self.history = History()
        self.snapshots: list[dict[str, np.ndarray]] = []
        self.baselines: dict[str, float] = {}
        self.final_metrics: dict[str, float] = {}
        self._cancel = threading.Event()
        self._eval_buffers: dict[str, torch.Tensor] = {}  # per-epoch evaluation reuses its memory

    # -- control ----------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the run to stop before its next batch (thread-safe)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> Iterator[Event]:
        """Train, yielding events; never raises for a diverging or failing run."""
        device_name = "?"
        epoch = 0
        self._threads = 1
        try:
            if self.device.type == "cpu":
                torch_threads = configure_cpu_threads(self.runtime.cpu_threads)
                chosen = self.runtime.cpu_threads is not None and self.runtime.cpu_threads > 0
                self._threads = torch_threads if chosen else default_kernel_threads(int(self.split.n_train))
            device_name = describe_device(self.device, self._threads if self.device.type == "cpu" else None)
            for event in self._run(device_name):
                epoch = getattr(event, "epoch", epoch)
                yield event
        except DivergedError as exc:
            yield RunFailed(reason="diverged", message=str(exc), epoch=epoch, device=device_name)
        except MFError as exc:
            yield RunFailed(reason="error", message=str(exc), epoch=epoch, device=device_name)
        except (RuntimeError, ValueError, MemoryError) as exc:
            # torch reports out-of-memory and device faults as RuntimeError.
            yield RunFailed(reason="error", message=f"{type(exc).__name__}: {exc}", epoch=epoch, device=device_name)

    # -- the loop ---------------------------------------------------------------------
    def _run(self, device_name: str) -> Iterator[Event]:
        from mfcore.baselines import evaluate_baselines

        tc, rt = self.train_config, self.runtime
        data, split, dev = self.data, self.split, self.device
        gen = torch.Generator().manual_seed(tc.seed)

        # The baselines first: their float64 temporaries (~1 GB on 25M ratings) are gone
        # before the training tensors exist, which keeps the run's peak memory down.
        self.baselines = evaluate_baselines(data, split)
        # int32 indices and float32 ratings, one copy each (the row selections), kept as
        # they are: no int64 or float64 versions of anything of size n.
        train_u = torch.from_numpy(data.user_idx[split.train]).to(dev)
        train_i = torch.from_numpy(data.item_idx[split.train]).to(dev)
        train_r = torch.from_numpy(data.rating[split.train]).to(dev)
        test_u = torch.from_numpy(data.user_idx[split.test]).to(dev)
        test_i = torch.from_numpy(data.item_idx[split.test]).to(dev)
        test_r = torch.from_numpy(data.rating[split.test]).to(dev)
        n_train = len(train_r)
        global_mean = _mean_f64(train_r) if n_train else 0.0

        self.model = model = MFModel(
            data.n_users, data.n_items, self.model_config,
            global_mean=global_mean, rating_scale=data.rating_scale, generator=gen, device=dev,
        )
        if self.resume_from is not None:
            _load_weights(model, self.resume_from)
        train = TrainTensors(
            train_u, train_i, train_r,
            user_weight=l2_row_weights(train_u, data.n_users, tc.l2_count_power),
            item_weight=l2_row_weights(train_i, data.n_items, tc.l2_count_power),
        )
        stepper = make_stepper(model, tc, train, threads=self._threads)
        n_batches = max(1, math.ceil(n_train / max(1, tc.batch_size or n_train)))
        keep_snapshots = rt.keep_snapshots if rt.keep_snapshots is not None else data.n_ratings <= SNAPSHOT_MAX_RATINGS
        # at most snapshot_limit() snapshots, thinned geometrically over the run (bounded memory and checkpoint)
        max_snapshots = snapshot_limit(data.n_users, data.n_items, self.model_config.n_factors) if keep_snapshots else 0

        yield RunStarted(
            device=device_name, epochs=tc.epochs, n_train=n_train, n_test=len(test_r),
            batches_per_epoch=n_batches, baselines=dict(self.baselines),
        )

        averager = _WeightAverager(model) if tc.average_from is not None else None
        best = (math.inf, 0, None)  # (rmse, epoch, state)
        lr = tc.lr * tc.lr_decay ** (self.first_epoch - 1)
        elapsed = 0.0
        reason = "completed"
        epoch = 0
        for epoch in range(self.first_epoch, tc.epochs + 1):
            stepper.set_lr(lr)
            t0 = time.perf_counter()
            last_report = t0
            sq_sum, seen = 0.0, 0
            for seen, sq_sum in stepper.epoch(gen):
                if not math.isfinite(sq_sum):
                    raise DivergedError(_diverged_message(epoch, lr, "the training loss"))
                if self._cancel.is_set():
                    break
                now = time.perf_counter()
                if now - last_report >= rt.progress_interval_s and seen < n_train:
                    last_report = now
                    yield EpochProgress(
                        epoch=epoch, epochs=tc.epochs, done=seen, total=n_train,
                        train_loss=sq_sum / seen, examples_per_second=seen / (now - t0),
                        elapsed_s=elapsed + now - t0, device=device_name,
                    )
            seconds = time.perf_counter() - t0
            elapsed += seconds
            if self._cancel.is_set():
                epoch -= 1  # the interrupted epoch does not count
                reason = "cancelled"
                break
            if not model.weights_finite():
                raise DivergedError(_diverged_message(epoch, lr, "the weights"))
            if averager is not None and epoch >= tc.average_from:
                averager.add(model)
            rmse, mae = self._evaluate(model, averager, test_u, test_i, test_r)
            is_best = rmse < best[0]
            if is_best and tc.early_stopping_patience > 0:
                best = (rmse, epoch, self._eval_state(model, averager))
            elif is_best:
                best = (rmse, epoch, None)
            if max_snapshots:
                keep_snapshot(self.snapshots, epoch, _snapshot(model, averager), max_snapshots)
            ended = EpochEnded(
                epoch=epoch, epochs=tc.epochs, train_loss=sq_sum / max(1, seen), test_rmse=rmse, test_mae=mae,
                examples_per_second=seen / max(seconds, 1e-9), seconds=seconds, elapsed_s=elapsed,
                lr=lr, device=device_name, is_best=is_best,
            )
            self.history.add(ended)
            yield ended
            if tc.early_stopping_patience > 0 and epoch - best[1] >= tc.early_stopping_patience:
                reason = "early_stopped"
                break
            lr *= tc.lr_decay

        # Keep what evaluation reported: the best weights (early stopping) or the average.
        if tc.early_stopping_patience > 0 and best[2] is not None:
            model.load_state_dict(best[2])
        elif averager is not None and averager.count:
            averager.copy_to(model)
        if epoch == 0:
            final: dict = {"test_rmse": math.nan, "test_mae": math.nan}
        else:
            final = evaluate(model, data, split, ranking=rt.eval_ranking, seed=tc.seed, buffers=self._eval_buffers)
        self.final_metrics = {**final, **self.baselines}
        yield RunFinished(
            reason=reason, epochs_run=epoch, best_epoch=best[1], metrics=dict(self.final_metrics),
            train_seconds=elapsed, examples_per_second=(n_train * max(epoch, 0)) / max(elapsed, 1e-9),
            device=device_name,
        )

    # -- helpers ----------------------------------------------------------------------
    @torch.no_grad()
    def _evaluate(self, model: MFModel, averager: "_WeightAverager | None", u, i, r) -> tuple[float, float]:
        """Test RMSE/MAE of the model (of the weight average once it has started), computed in
        buffers kept for the run and without loading the average into the model."""
        if len(r) == 0:
            return math.nan, math.nan
        weights = averager.mean_in_buffers() if averager is not None and averager.count else None
        return _rmse_mae(model, u, i, r, buffers=self._eval_buffers, weights=weights)

    def _eval_state(self, model: MFModel, averager: "_WeightAverager | None") -> dict[str, torch.Tensor]:
        if averager is not None and averager.count:
            with averager.swapped_in(model):
                return {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _WeightAverager:
    """Running mean of the weights over epochs (stochastic weight averaging)."""

    def __init__(self, model: MFModel) -> None:
        self.sums = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in model.state_dict().items()}
        self.count = 0
        self._mean64: dict[str, torch.Tensor] | None = None
        self._mean32: dict[str, torch.Tensor] = {}
        self._mean_count = 0  # the count the buffers hold the mean of

    def add(self, model: MFModel) -> None:
        for k, v in model.state_dict().items():
            self.sums[k] += v
        self.count += 1

    def mean_state(self) -> dict[str, torch.Tensor]:
        return {k: (s / self.count).to(torch.float32) for k, s in self.sums.items()}

    def mean_in_buffers(self) -> dict[str, torch.Tensor]:
        """``mean_state()``'s values (the same operations), written into tensors kept between
        calls and recomputed only after an ``add``: read-only, valid until the next ``add``. For
        the per-epoch evaluation and snapshot (no fresh memory, one division an epoch)."""
        if self._mean64 is None:
            self._mean64 = {k: torch.empty_like(s) for k, s in self.sums.items()}
            self._mean32 = {k: torch.empty_like(s, dtype=torch.float32) for k, s in self.sums.items()}
        if self._mean_count != self.count:
            for k, s in self.sums.items():
                self._mean32[k].copy_(torch.div(s, self.count, out=self._mean64[k]))
            self._mean_count = self.count
        return self._mean32

    def copy_to(self, model: MFModel) -> None:
        model.load_state_dict(self.mean_state())

    def swapped_in(self, model: MFModel):
        return _Swap(model, self.mean_state())


class _Swap:
    """Temporarily load other weights into a model (for evaluating the average)."""

    def __init__(self, model: MFModel, state: dict[str, torch.Tensor]) -> None:
        self.model, self.state = model, state

    def __enter__(self) -> MFModel:
        self.saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.state)
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.load_state_dict(self.saved)


def _snapshot(model: MFModel, averager: _WeightAverager | None) -> dict[str, np.ndarray]:
    state = averager.mean_in_buffers() if averager is not None and averager.count else model.state_dict()
    return {
        "item_factors": state["item_factors"].detach().to("cpu", torch.float16).numpy().copy(),
        "user_factors": state["user_factors"].detach().to("cpu", torch.float16).numpy().copy(),
    }


EVAL_CHUNK = 1 << 20


@torch.no_grad()
def _rmse_mae(model: MFModel, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor, *,
              buffers: dict[str, torch.Tensor] | None = None,
              weights: dict[str, torch.Tensor] | None = None) -> tuple[float, float]:
    """Test RMSE and MAE, predicted and summed (in float64) one chunk at a time; with
    ``buffers`` (kept by the caller between calls) the predictions reuse their memory, with
    ``weights`` (a state dict) they come from those weights instead of the model's. The
    per-epoch evaluation (``buffers`` given) of a linear model on the CPU runs as a compiled
    loop that gathers no rows (heldout.heldout_errors_cpu; equal to this formula to ~1e-7)."""
    if buffers is not None and model.device.type == "cpu" and model.config.output == "linear":
        from mfcore.training.heldout import heldout_errors_cpu

        sq, ab = heldout_errors_cpu(u.numpy(), i.numpy(), r.numpy(), weights or model.state_dict(),
                                 model.config.use_bias, model.rating_scale)
        return math.sqrt(sq / len(r)), ab / len(r)
    sq, ab = 0.0, 0.0
    for s in range(0, len(r), EVAL_CHUNK):
        uu, ii = u[s : s + EVAL_CHUNK], i[s : s + EVAL_CHUNK]
        if buffers is None and weights is None:
            pred = model.predict(uu, ii)
        else:
            pred = model.predict_with_buffers(uu, ii, {} if buffers is None else buffers, weights)
        err = (pred - r[s : s + EVAL_CHUNK]).double()
        sq += float(err.square().sum())
        ab += float(err.abs().sum())
    return math.sqrt(sq / len(r)), ab / len(r)


def _mean_f64(t: torch.Tensor, chunk: int = 1 << 22) -> float:
    """Mean of a float32 tensor summed in float64, without a float64 copy of it."""
    return sum(float(t[s : s + chunk].sum(dtype=torch.float64)) for s in range(0, len(t), chunk)) / len(t)


def _diverged_message(epoch: int, lr: float, what: str) -> str:
    return (
        f"training diverged in epoch {epoch}: {what} became NaN or infinite at learning rate {lr:g}; "
        f"lower the learning rate (try {lr / 10:g}) or raise the regularisation"
    )


def train(
    data: RatingData,
    split: Split,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    runtime: RuntimeOptions | None = None,
) -> Iterator[Event]:
    """Shorthand for ``Trainer(...).run()``."""
    return Trainer(data, split, model_config, train_config, runtime).run()


def fit(
    data: RatingData,
    split: Split,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    runtime: RuntimeOptions | None = None,
    *,
    on_event: Callable[[Event], None] | None = None,
) -> Trainer:
    """Run training to the end, passing each event to ``on_event``; returns the trainer.

    A failed run raises the matching :class:`MFError` (DivergedError for divergence).
    """
    trainer = Trainer(data, split, model_config, train_config, runtime)
    for event in trainer.run():
        if on_event is not None:
            on_event(event)
        if isinstance(event, RunFailed):
            raise (DivergedError if event.reason == "diverged" else MFError)(event.message)
    return trainer


def _load_weights(model: MFModel, trained: Any) -> None:
    """Copy a checkpoint's weights into a fresh model of the same shape (MFError otherwise)."""
    from mfcore.errors import CheckpointError

    state = trained.model.state_dict()
    mine = model.state_dict()
    for key, value in mine.items():
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"the checkpoint does not fit this run ({key}: {tuple(state.get(key, value).shape)} vs "
                f"{tuple(value.shape)}); launch it again instead")
    with torch.no_grad():
        for key, value in mine.items():
            value.copy_(state[key].to(value.device, value.dtype))
