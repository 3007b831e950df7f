"""Implicit-feedback (SVD++-style) SGD folded into plain biased MF."""

import numpy as np
import pytest
import torch

from mfcore.config import ModelConfig, TrainConfig
from mfcore.data.splits import Split, random_split
from mfcore.errors import ConfigError
from mfcore.training.implicit import ImplicitSGDStepper
from mfcore.training.trainer import Trainer, fit
from tests.factories import planted_data

CFG = TrainConfig(optimizer="sgd", lr=0.01, batch_size=1, epochs=6, l2=0.05, l2_count_power=0.5,
                  implicit_feedback=True, l2_implicit=1.0)


@pytest.fixture(scope="module")
def data_and_split():
    data = planted_data()
    return data, random_split(data, 0.2, seed=0)


def test_the_model_holds_the_folded_user_vectors(data_and_split):
    data, split = data_and_split
    trainer = Trainer(data, split, ModelConfig(n_factors=4), CFG)
    for event in trainer.run():  # two epochs, to have a trained model on the CPU
        if event.kind == "epoch" and event.epoch == 2:
            break
    # Rebuild the stepper state by hand for one epoch and compare with the explicit SVD++ formula.
    from mfcore.training.steppers import TrainTensors, l2_row_weights

    u = torch.from_numpy(data.user_idx[split.train])
    i = torch.from_numpy(data.item_idx[split.train])
    r = torch.from_numpy(data.rating[split.train])
    train = TrainTensors(u, i, r, l2_row_weights(u, data.n_users, 0.5), l2_row_weights(i, data.n_items, 0.5))
    model = trainer.model
    stepper = ImplicitSGDStepper(model, CFG, train)
    stepper.Y[:] = np.random.default_rng(0).normal(0, 0.1, stepper.Y.shape).astype(np.float32)
    stepper._publish()
    users = data.user_idx[split.train]
    for user in (0, 7, 33):
        rated = data.item_idx[split.train][users == user]
        z = stepper.P[user] + stepper.Y[rated].sum(0) / np.sqrt(len(rated))
        assert np.allclose(model.user_factors[user].detach().numpy(), z, atol=1e-5)


def test_seeded_and_learns(data_and_split):
    data, split = data_and_split
    a = fit(data, split, ModelConfig(n_factors=4), CFG)
    b = fit(data, split, ModelConfig(n_factors=4), CFG)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert a.final_metrics["test_rmse"] < a.final_metrics["global_mean_rmse"]
    assert a.history.test_rmse[-1] < a.history.test_rmse[0]


def test_never_looks_at_the_test_set(data_and_split):
    """Same training rows, different test rows: the same model (N(u) comes from training only)."""
    data, split = data_and_split
    other = Split("fewer-test-rows", split.train, split.test[: len(split.test) // 2])
    a = fit(data, split, ModelConfig(n_factors=4), CFG).model.state_dict()
    b = fit(data, other, ModelConfig(n_factors=4), CFG).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_implicit_feedback_needs_per_rating_sgd_and_a_linear_output(data_and_split):
    with pytest.raises(ConfigError, match="implicit_feedback: needs per-rating SGD"):
        TrainConfig(optimizer="adam", implicit_feedback=True)
    with pytest.raises(ConfigError, match="implicit_feedback: needs per-rating SGD"):
        TrainConfig(optimizer="sgd", batch_size=64, implicit_feedback=True)
    data, split = data_and_split
    with pytest.raises(ConfigError, match="linear output only"):
        Trainer(data, split, ModelConfig(output="sigmoid"), CFG)
