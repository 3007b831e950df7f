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


def _pass_state(seed: int, k: int = 64, n_users: int = 50, n_items: int = 40):
    """A user-grouped problem as the stepper holds it (aligned float32 tables, int32 items)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 12, n_users)
    counts[3] = 0  # a user without training ratings
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    items = np.concatenate([rng.choice(n_items, c, replace=False) for c in counts]).astype(np.int32)
    table = lambda n: rng.normal(0, 0.1, (n, k)).astype(np.float32)  # noqa: E731
    return {
        "indptr": indptr, "items": items, "ratings": rng.integers(1, 6, len(items)).astype(np.float32),
        "P": table(n_users), "Q": table(n_items), "Y": table(n_items),
        "bu": rng.normal(0, 0.1, (n_users, 1)).astype(np.float32), "bi": rng.normal(0, 0.1, (n_items, 1)).astype(np.float32),
        "wu": rng.uniform(0.5, 2, n_users).astype(np.float32), "wi": rng.uniform(0.5, 2, n_items).astype(np.float32),
        "wy": rng.uniform(0.2, 1, n_items).astype(np.float32), "work": np.zeros((4, k), dtype=np.float32),
        "order": rng.permutation(n_users).astype(np.int64),
    }


@pytest.mark.parametrize("use_bias", [True, False])
def test_the_register_kernels_compute_the_generic_pass(use_bias):
    """users_pass_k64 / fold_users_k64 (vectors in registers, pipelined dot, y-sum inside the
    shuffle) are the generic kernels' maths: the same shuffle, the same updates, equal to
    float rounding after several passes."""
    from mfcore.training import implicit_kernels as kern

    a, b = _pass_state(0), _pass_state(0)
    for epoch in range(4):
        args = lambda s: (s["order"], s["indptr"], s["items"], s["ratings"], s["P"], s["Q"], s["Y"], s["bu"],  # noqa: E731
                          s["bi"], np.float32(3.5), np.float32(0.02), np.float32(0.1), np.float32(0.02),
                          np.float32(1.0), s["wu"], s["wi"], s["wy"], use_bias, 77 + epoch, s["work"])
        sq_generic = kern.users_pass(*args(a))
        sq_registers = kern.users_pass_k64(*args(b))
        assert sq_registers == pytest.approx(sq_generic, rel=1e-5)
    assert np.array_equal(a["items"], b["items"]) and np.array_equal(a["ratings"], b["ratings"])  # same shuffles
    for key in ("P", "Q", "Y", "bu", "bi"):
        assert np.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key
        updated = use_bias or key not in ("bu", "bi")
        assert np.array_equal(a[key], _pass_state(0)[key]) is not updated, key  # (both did update it, or left it)
    za, zb = np.empty_like(a["P"]), np.empty_like(a["P"])
    kern.fold_users(a["indptr"], a["items"], a["P"], a["Y"], za)
    kern.fold_users_k64(a["indptr"], a["items"], a["P"], a["Y"], zb)
    assert np.allclose(za, zb, rtol=1e-5, atol=1e-7)
    assert np.array_equal(zb[3], a["P"][3])  # no ratings: p_u alone


def test_the_stepper_takes_the_register_kernels_for_64_factors_on_avx512():
    from mfcore.training import aot
    from mfcore.training.implicit import uses_register_kernels

    assert not uses_register_kernels(32)
    assert uses_register_kernels(64) is aot.cpu_has("avx512f")
