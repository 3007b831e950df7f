"""The training contract every configuration passes: events, determinism, cancel,
divergence, early stopping, weight averaging, and the device paths."""

import math
import threading

import numpy as np
import pytest
import torch

from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
from mfcore.errors import DivergedError
from mfcore.events import EpochEnded, EpochProgress, RunFailed, RunFinished, RunStarted, event_from_dict, event_to_dict
from mfcore.training.steppers import PerRatingSGDStepper
from mfcore.training.trainer import Trainer, fit
from tests.factories import planted_data

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else []
)

CONFIGS = {
    "sgd-per-rating": (ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=0.02, batch_size=1, epochs=4, l2=0.02)),
    "adam": (ModelConfig(n_factors=4), TrainConfig(optimizer="adam", lr=0.02, batch_size=64, epochs=4, l2=0.01)),
    "adamw": (ModelConfig(n_factors=4), TrainConfig(optimizer="adamw", lr=0.02, batch_size=64, epochs=4, weight_decay=1e-4)),
    "adagrad": (ModelConfig(n_factors=4), TrainConfig(optimizer="adagrad", lr=0.1, batch_size=64, epochs=4)),
    "sparse-adam": (ModelConfig(n_factors=4, global_bias="learned"), TrainConfig(optimizer="sparse_adam", lr=0.02, batch_size=64, epochs=4)),
    "sgd-momentum": (ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=0.5, momentum=0.9, batch_size=64, epochs=4, l2=0.0)),
    "plain-sigmoid": (
        ModelConfig(n_factors=4, use_bias=False, global_bias="none", output="sigmoid", init="uniform"),
        TrainConfig(optimizer="adam", lr=0.05, batch_size=128, epochs=4),
    ),
    "als": (ModelConfig(n_factors=4), TrainConfig(optimizer="als", epochs=4, l2=0.05, l2_bias=0.01)),
    "als-plain-learned-global": (ModelConfig(n_factors=4, use_bias=False, global_bias="learned"),
                                 TrainConfig(optimizer="als", epochs=4, l2=0.05)),
    "sgd-count-weighted-l2": (ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=0.02, batch_size=1, epochs=4,
                                                                     l2=0.05, l2_count_power=0.5)),
    "adam-count-weighted-l2": (ModelConfig(n_factors=4), TrainConfig(optimizer="adam", lr=0.02, batch_size=64, epochs=4,
                                                                      l2=0.05, l2_count_power=0.5)),
    "als-count-weighted-l2": (ModelConfig(n_factors=4), TrainConfig(optimizer="als", epochs=4, l2=0.5, l2_count_power=0.5)),
    "sgd-implicit-feedback": (ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=0.02, batch_size=1, epochs=4,
                                                                     l2=0.05, implicit_feedback=True, l2_implicit=1.0)),
    "full-batch": (ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=20.0, batch_size=0, epochs=4, momentum=0.5)),
}


@pytest.fixture(scope="module")
def data_and_split():
    from mfcore.data.splits import random_split

    data = planted_data()
    return data, random_split(data, 0.2, seed=0)


def _run(data, split, mc, tc, **rt):
    trainer = Trainer(data, split, mc, tc, RuntimeOptions(**rt))
    return trainer, list(trainer.run())


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("device", DEVICES)
def test_event_sequence_and_learning(data_and_split, name, device):
    data, split = data_and_split
    mc, tc = CONFIGS[name]
    trainer, events = _run(data, split, mc, tc, device=device)
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished), events[-1]
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert [e.epoch for e in epochs] == list(range(1, tc.epochs + 1))
    assert all(e.device == events[0].device for e in epochs)
    assert events[0].device.startswith(device)
    final = events[-1].metrics
    assert final["test_rmse"] == pytest.approx(epochs[-1].test_rmse, rel=1e-5)
    # Every configuration learns something beyond the global mean on planted data.
    assert final["test_rmse"] < final["global_mean_rmse"], (name, final)
    for e in events:  # events survive a round trip through plain dicts (the store)
        assert event_from_dict(event_to_dict(e)) == e


@pytest.mark.parametrize("name", ["sgd-per-rating", "adam", "sparse-adam", "als", "sgd-implicit-feedback"])
def test_same_seed_same_model(data_and_split, name):
    data, split = data_and_split
    mc, tc = CONFIGS[name]
    a = fit(data, split, mc, tc).model.state_dict()
    b = fit(data, split, mc, tc).model.state_dict()
    c = fit(data, split, mc, TrainConfig(**{**tc.__dict__, "seed": 1})).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["user_factors"], c["user_factors"])


def test_cancel_between_batches_keeps_a_usable_model(data_and_split):
    data, split = data_and_split
    mc, tc = ModelConfig(n_factors=4), TrainConfig(optimizer="adam", lr=0.01, batch_size=8, epochs=50)
    trainer = Trainer(data, split, mc, tc)
    events = []
    for event in trainer.run():
        events.append(event)
        if isinstance(event, EpochEnded) and event.epoch == 2:
            trainer.cancel()
    assert isinstance(events[-1], RunFinished)
    assert events[-1].reason == "cancelled"
    assert events[-1].epochs_run == 2
    assert math.isfinite(events[-1].metrics["test_rmse"])
    assert trainer.model.weights_finite()


def test_cancel_from_another_thread_stops_within_an_epoch(data_and_split):
    data, split = data_and_split
    trainer = Trainer(data, split, ModelConfig(n_factors=4),
                      TrainConfig(optimizer="adam", lr=0.01, batch_size=4, epochs=10_000),
                      RuntimeOptions(progress_interval_s=0.01))
    seen = []
    timer = threading.Timer(0.5, trainer.cancel)
    timer.start()
    for event in trainer.run():
        seen.append(event)
    assert seen[-1].reason == "cancelled"
    assert seen[-1].epochs_run < 10_000


def test_divergence_is_a_failure_event_naming_the_learning_rate(data_and_split):
    data, split = data_and_split
    events = list(Trainer(data, split, ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=90.0, batch_size=1, epochs=3, l2=0.0)).run())
    failed = events[-1]
    assert isinstance(failed, RunFailed) and failed.reason == "diverged"
    assert "learning rate 90" in failed.message and "lower the learning rate" in failed.message
    with pytest.raises(DivergedError, match="diverged"):
        fit(data, split, ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=90.0, batch_size=1, epochs=3, l2=0.0))


def test_progress_events_within_long_epochs(data_and_split):
    data, split = data_and_split
    trainer, events = _run(data, split, ModelConfig(n_factors=4),
                           TrainConfig(optimizer="adam", lr=0.01, batch_size=2, epochs=1), progress_interval_s=1e-4)
    progress = [e for e in events if isinstance(e, EpochProgress)]
    assert progress, "no within-epoch progress"
    assert all(0 < p.done < p.total == len(split.train) for p in progress)
    assert [p.done for p in progress] == sorted(p.done for p in progress)


def test_early_stopping_restores_the_best_weights(data_and_split):
    data, split = data_and_split
    # A big learning rate without regularisation overfits quickly, then gets worse.
    mc, tc = ModelConfig(n_factors=16), TrainConfig(optimizer="adam", lr=0.05, batch_size=32, epochs=60, l2=0.0,
                                                    l2_bias=0.0, early_stopping_patience=3)
    trainer, events = _run(data, split, mc, tc)
    done = events[-1]
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert done.reason == "early_stopped"
    best = min(epochs, key=lambda e: e.test_rmse)
    assert done.best_epoch == best.epoch
    assert epochs[-1].epoch == best.epoch + 3
    assert done.metrics["test_rmse"] == pytest.approx(best.test_rmse, rel=1e-5)


def test_weight_averaging_evaluates_and_keeps_the_average(data_and_split):
    data, split = data_and_split
    mc = ModelConfig(n_factors=4)
    tc = TrainConfig(optimizer="sgd", lr=0.02, batch_size=1, epochs=6, l2=0.02, average_from=3)
    averaged = fit(data, split, mc, tc)
    plain = fit(data, split, mc, TrainConfig(**{**tc.__dict__, "average_from": None}))
    # Epochs before the averaging starts are identical; afterwards they differ.
    assert averaged.history.test_rmse[:2] == plain.history.test_rmse[:2]
    assert averaged.history.test_rmse[2:] != plain.history.test_rmse[2:]
    assert averaged.final_metrics["test_rmse"] == pytest.approx(averaged.history.test_rmse[-1], rel=1e-5)


def test_torch_chunk_path_tracks_the_compiled_kernel(data_and_split, monkeypatch):
    """The GPU code path (chunked summed updates) is exercised on the CPU: with chunks
    of one rating it is the sequential kernel exactly; with big chunks it stays close."""
    data, split = data_and_split
    mc, tc = ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=0.02, batch_size=1, epochs=2, l2=0.02)
    kernel = fit(data, split, mc, tc)
    original = PerRatingSGDStepper.__init__

    def as_device_path(chunk):
        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.on_cpu = False
            self.chunk_size = chunk
        return init

    monkeypatch.setattr(PerRatingSGDStepper, "__init__", as_device_path(1))
    exact = fit(data, split, mc, tc)
    for k, v in kernel.model.state_dict().items():
        assert torch.allclose(v, exact.model.state_dict()[k], atol=1e-4), k
    monkeypatch.setattr(PerRatingSGDStepper, "__init__", as_device_path(256))
    chunked = fit(data, split, mc, tc)
    assert chunked.final_metrics["test_rmse"] == pytest.approx(kernel.final_metrics["test_rmse"], abs=0.02)


def test_snapshots_are_kept_per_epoch_for_small_data(data_and_split):
    data, split = data_and_split
    trainer = fit(data, split, ModelConfig(n_factors=4), TrainConfig(optimizer="adam", lr=0.01, batch_size=64, epochs=3))
    assert len(trainer.snapshots) == 3
    assert trainer.snapshots[-1]["item_factors"].shape == (data.n_items, 4)
    off = fit(data, split, ModelConfig(n_factors=4), TrainConfig(optimizer="adam", lr=0.01, batch_size=64, epochs=3),
              RuntimeOptions(keep_snapshots=False))
    assert off.snapshots == []


def test_unavailable_device_is_a_failure_not_a_fallback(data_and_split):
    from mfcore.errors import DeviceError

    data, split = data_and_split
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the failure path needs a machine without it
    with pytest.raises(DeviceError, match="CUDA was requested"):
        Trainer(data, split, runtime=RuntimeOptions(device="cuda"))


def test_als_rejects_a_sigmoid_output(data_and_split):
    from mfcore.errors import ConfigError

    data, split = data_and_split
    with pytest.raises(ConfigError, match="ALS solves least squares on a linear output"):
        Trainer(data, split, ModelConfig(output="sigmoid"), TrainConfig(optimizer="als"))


def test_als_solves_the_ridge_problem_exactly(data_and_split):
    """After a user sweep, each user's [p_u, b_u] is the closed-form ridge solution."""
    from mfcore.model import MFModel
    from mfcore.training.als import ALSStepper
    from mfcore.training.steppers import TrainTensors

    data, split = data_and_split
    model = MFModel(data.n_users, data.n_items, ModelConfig(n_factors=3), global_mean=3.0, rating_scale=(1, 5),
                    generator=torch.Generator().manual_seed(0))
    train = TrainTensors(*(torch.from_numpy(a[split.train]) for a in (data.user_idx, data.item_idx, data.rating)),
                         user_weight=torch.ones(data.n_users), item_weight=torch.ones(data.n_items))
    stepper = ALSStepper(model, TrainConfig(optimizer="als", l2=0.1, l2_bias=0.05), train)
    it = stepper.epoch(torch.Generator())
    next(it)  # users solved, items untouched
    u = 5
    mask = train.users == u
    X = torch.cat([model.item_factors[train.items[mask].long()], torch.ones(int(mask.sum()), 1)], 1).double()
    y = (train.ratings[mask] - 3.0 - model.item_bias[train.items[mask].long(), 0]).double()
    n = float(mask.sum())
    A = X.T @ X + torch.diag(torch.tensor([0.1 * n] * 3 + [0.05 * n], dtype=torch.float64))
    expected = torch.linalg.solve(A, X.T @ y)
    got = torch.cat([model.user_factors[u], model.user_bias[u]]).double()
    assert torch.allclose(got, expected, atol=1e-4)


def test_count_weights_make_the_average_row_pay_exactly_l2():
    from mfcore.training.steppers import l2_row_weights

    index = torch.tensor([0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2])  # counts 4, 1, 9; row 3 unrated
    w = l2_row_weights(index, 4, 0.5)
    mean = (4 + 1 + 9) / 3
    assert w[:3].tolist() == pytest.approx([(mean / 4) ** 0.5, mean ** 0.5, (mean / 9) ** 0.5])
    # total penalty of a row ∝ n^0.5
    totals = torch.tensor([4.0, 1.0, 9.0]) * w[:3]
    assert (totals / totals[1]).tolist() == pytest.approx([2.0, 1.0, 3.0])
    assert torch.equal(l2_row_weights(index, 4, 1.0), torch.ones(4))
