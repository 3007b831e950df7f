"""Correctness of the speed paths (no timing here: speed lives in benchmarks/speed.py).

The compiled kernels against the Python reference, the int32 epoch orders against
torch.randperm, the cache-blocked schedule (a permutation of the ratings, conflict-free
rounds, reproducible on two threads, as good as the sequential order), and the
trainer's memory-saving evaluation against the simple formulas.
"""

import numpy as np
import pytest
import torch

from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
from mfcore.training import blocked, kernels, shuffle
from mfcore.training.steppers import PerRatingSGDStepper, TrainTensors, l2_row_weights
from mfcore.training.trainer import Trainer, _mean_f64, _rmse_mae, fit
from tests.factories import planted_data

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def data_and_split():
    from mfcore.data.splits import random_split

    data = planted_data()
    return data, random_split(data, 0.2, seed=0)


def _arrays(n=5000, nu=70, ni=50, k=5, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    r = rng.uniform(1, 5, n).astype(np.float32)
    w = [rng.uniform(0.5, 2, nu).astype(np.float32), rng.uniform(0.5, 2, ni).astype(np.float32)]
    weights = [(rng.standard_normal((nu, k)) * 0.1).astype(np.float32), (rng.standard_normal((ni, k)) * 0.1).astype(np.float32),
               np.zeros((nu, 1), np.float32), np.zeros((ni, 1), np.float32), np.array([3.0], np.float32)]
    return u, i, r, w, weights


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("k", [5, 32])
@pytest.mark.parametrize("learn_g", [False, True])
def test_compiled_kernel_matches_the_python_reference(k, learn_g):
    u, i, r, w, ref = _arrays(k=k)
    fast = [a.copy() for a in ref]
    order = np.random.default_rng(1).permutation(len(r)).astype(np.int32)
    args = (np.float32(0.02), np.float32(0.05), np.float32(0.01), True, learn_g)
    sq_ref = kernels._sgd_epoch_py(order, u, i, r, *w, *ref, *args)
    sq_fast = kernels.sgd_chunk_cpu(order, u, i, r, *w, *fast, 0.02, 0.05, 0.01, True, learn_g)
    assert sq_fast == pytest.approx(sq_ref, rel=1e-4)
    for a, b in zip(ref, fast):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_range_kernel_equals_the_order_kernel_on_storage_order():
    u, i, r, w, a = _arrays()
    b = [x.copy() for x in a]
    sq_a = kernels.sgd_chunk_cpu(np.arange(100, 4000, dtype=np.int32), u, i, r, *w, *a, 0.02, 0.05, 0.01, True, False)
    sq_b = kernels.sgd_range_cpu(100, 4000, u, i, r, *w, *b, 0.02, 0.05, 0.01, True, False)
    assert sq_a == pytest.approx(sq_b, rel=1e-6)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_record_shuffle_moves_whole_ratings_within_the_range_and_is_seeded():
    u, i, r, _, _ = _arrays(n=1000)
    triples = sorted(zip(u[200:700].tolist(), i[200:700].tolist(), r[200:700].tolist()))
    a = [x.copy() for x in (u, i, r)]
    b = [x.copy() for x in (u, i, r)]
    kernels.shuffle_records(*a, 200, 700, seed=7)
    kernels.shuffle_records(*b, 200, 700, seed=7)
    for x, y, orig in zip(a, b, (u, i, r)):
        np.testing.assert_array_equal(x, y)  # same seed, same order
        np.testing.assert_array_equal(x[:200], orig[:200])  # outside the range: untouched
        np.testing.assert_array_equal(x[700:], orig[700:])
    assert sorted(zip(a[0][200:700].tolist(), a[1][200:700].tolist(), a[2][200:700].tolist())) == triples
    assert not np.array_equal(a[0], u)
    c = [x.copy() for x in (u, i, r)]
    kernels.shuffle_records(*c, 200, 700, seed=8)
    assert not np.array_equal(c[0], a[0])


def test_prefetch_is_compiled():
    """The cache hint compiles on this toolchain (else the kernels silently lose it)."""
    assert kernels.PREFETCH_COMPILED


# --------------------------------------------------------------------------- shuffles


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 3 * 624 + 5, 100_003])
@pytest.mark.parametrize("seed", [0, 123])
def test_int32_order_is_exactly_torch_randperm_and_leaves_the_same_generator_state(n, seed):
    a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    torch.rand(5, generator=a), torch.rand(5, generator=b)  # start mid-stream
    expected = torch.randperm(n, generator=a)
    got = shuffle.torch_randperm(n, b)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected.numpy())
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_the_compiled_randperm_is_in_use():
    assert shuffle._fast_path_matches_torch()


def test_bucket_shuffle_is_a_seeded_permutation():
    n = 300_000
    p1 = shuffle.bucket_shuffle(n, torch.Generator().manual_seed(3), bucket_size=4096)
    p2 = shuffle.bucket_shuffle(n, torch.Generator().manual_seed(3), bucket_size=4096)
    p3 = shuffle.bucket_shuffle(n, torch.Generator().manual_seed(4), bucket_size=4096)
    assert p1.dtype == np.int32
    np.testing.assert_array_equal(np.sort(p1), np.arange(n))
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(p1, p3)
    # no visible structure: neighbours in the output are far apart in the input
    assert np.median(np.abs(np.diff(p1.astype(np.int64)))) > n / 10


def test_bucket_shuffle_is_uniform_over_positions():
    n, trials = 6, 12_000
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros((n, n))
    for _ in range(trials):
        p = shuffle.bucket_shuffle(n, gen, bucket_size=1)  # several buckets for 6 entries
        counts[np.arange(n), p] += 1
    expected = trials / n
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_epoch_order_is_randperm_up_to_the_threshold():
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    np.testing.assert_array_equal(shuffle.epoch_order(50_000, gen_a), torch.randperm(50_000, generator=gen_b).numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_epoch_order_is_a_permutation_on_the_device(data_and_split, device):
    data, split = data_and_split
    from mfcore.model import MFModel
    from mfcore.training.steppers import make_stepper

    train = TrainTensors(*(torch.from_numpy(a[split.train]).to(device) for a in (data.user_idx, data.item_idx, data.rating)),
                         user_weight=torch.ones(data.n_users, device=device), item_weight=torch.ones(data.n_items, device=device))
    model = MFModel(data.n_users, data.n_items, ModelConfig(n_factors=3), global_mean=3.0, rating_scale=(1, 5), device=device)
    stepper = make_stepper(model, TrainConfig(optimizer="adam", batch_size=64), train)
    order = stepper.epoch_order(torch.Generator().manual_seed(0))
    assert order.device.type == device and order.dtype == torch.int32
    assert torch.equal(order.sort().values.cpu(), torch.arange(len(train), dtype=torch.int32))


# --------------------------------------------------------------------------- blocked schedule


def _blocked(u, i, r, nu, ni, k=4, threads=1, block_bytes=512):
    old = blocked.BLOCK_BYTES
    blocked.BLOCK_BYTES = block_bytes
    try:
        return blocked.BlockedSchedule(u, i, r, nu, ni, k, threads=threads)
    finally:
        blocked.BLOCK_BYTES = old


def test_block_sort_keeps_every_rating_and_groups_them_by_block():
    u, i, r, _, _ = _arrays(n=20_000, nu=300, ni=200)
    before = sorted(zip(u.tolist(), i.tolist(), r.tolist()))
    s = _blocked(u, i, r, 300, 200)
    assert s.n_user_ranges > 2 and s.n_item_ranges > 2
    assert sorted(zip(u.tolist(), i.tolist(), r.tolist())) == before
    block = s.user_range[u] * s.n_item_ranges + s.item_range[i]
    assert np.all(np.diff(block) >= 0)
    np.testing.assert_array_equal(np.searchsorted(block, np.arange(s.n_blocks)), s.offsets[:-1])
    assert s.offsets[-1] == len(u)


def test_rounds_share_no_rows_and_cover_each_block_once():
    u, i, r, _, _ = _arrays(n=20_000, nu=300, ni=200)
    s = _blocked(u, i, r, 300, 200, threads=2)
    rounds = s.rounds(np.random.default_rng(0).permutation(s.n_blocks))
    flat = [b for rd in rounds for b in rd]
    non_empty = [b for b in range(s.n_blocks) if s.offsets[b + 1] > s.offsets[b]]
    assert sorted(flat) == non_empty
    assert sum(len(rd) == 2 for rd in rounds) >= 0.8 * len(rounds)
    for rd in rounds:
        assert len({s.block_user_range[b] for b in rd}) == len(rd)
        assert len({s.block_item_range[b] for b in rd}) == len(rd)


def _fit_blocked(monkeypatch, data, split, mc, tc, threads):
    monkeypatch.setattr(PerRatingSGDStepper, "BLOCKED_MIN_RATINGS", 1)
    monkeypatch.setattr(blocked, "BLOCK_BYTES", 256)
    return fit(data, split, mc, tc, RuntimeOptions(cpu_threads=threads))


@pytest.mark.parametrize("global_bias", ["mean", "learned"])
def test_blocked_schedule_learns_as_well_as_the_sequential_order(data_and_split, monkeypatch, global_bias):
    data, split = data_and_split
    mc = ModelConfig(n_factors=4, global_bias=global_bias)
    tc = TrainConfig(optimizer="sgd", lr=0.05, batch_size=1, epochs=12, l2=0.02)
    sequential = fit(data, split, mc, tc)
    one = _fit_blocked(monkeypatch, data, split, mc, tc, threads=1)
    two = _fit_blocked(monkeypatch, data, split, mc, tc, threads=2)
    again = _fit_blocked(monkeypatch, data, split, mc, tc, threads=2)
    ref = sequential.final_metrics["test_rmse"]
    assert one.final_metrics["test_rmse"] == pytest.approx(ref, abs=0.03)
    assert two.final_metrics["test_rmse"] == pytest.approx(ref, abs=0.03)
    # race-free: two threads give the same model every time
    for k, v in two.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    # and the run still learns (well below the bias-only baseline)
    assert two.final_metrics["test_rmse"] < two.baselines["baseline_rmse"] - 0.4


def test_blocked_epochs_report_progress_and_cancel(data_and_split, monkeypatch):
    data, split = data_and_split
    monkeypatch.setattr(PerRatingSGDStepper, "BLOCKED_MIN_RATINGS", 1)
    monkeypatch.setattr(PerRatingSGDStepper, "CPU_CHUNK", 200)
    monkeypatch.setattr(blocked, "BLOCK_BYTES", 256)
    trainer = Trainer(data, split, ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=0.02, batch_size=1, epochs=3),
                      RuntimeOptions(progress_interval_s=1e-9))
    events = []
    for e in trainer.run():
        events.append(e)
        if e.kind == "progress" and e.epoch == 2:
            trainer.cancel()
    kinds = [e.kind for e in events]
    assert "progress" in kinds and kinds[-1] == "finished"
    assert events[-1].reason == "cancelled" and events[-1].epochs_run == 1


# --------------------------------------------------------------------------- trainer memory paths


def test_chunked_test_metrics_equal_the_one_shot_formulas(data_and_split, monkeypatch):
    import mfcore.training.trainer as trainer_mod
    from mfcore.model import MFModel

    data, split = data_and_split
    model = MFModel(data.n_users, data.n_items, ModelConfig(n_factors=3, init_std=0.5), global_mean=3.0,
                    rating_scale=(1, 5), generator=torch.Generator().manual_seed(0))
    u, i, r = (torch.from_numpy(a[split.test]) for a in (data.user_idx, data.item_idx, data.rating))
    err = (model.predict(u, i) - r).double()
    monkeypatch.setattr(trainer_mod, "EVAL_CHUNK", 37)  # many uneven chunks
    rmse, mae = _rmse_mae(model, u, i, r)
    assert rmse == pytest.approx(float(err.square().mean().sqrt()), rel=1e-12)
    assert mae == pytest.approx(float(err.abs().mean()), rel=1e-12)


def test_mean_without_a_float64_copy_equals_the_double_mean():
    t = torch.rand(1_000_003) * 4 + 1
    assert _mean_f64(t, chunk=4096) == pytest.approx(float(t.double().mean()), rel=1e-12)


def test_count_weights_from_int32_indices_equal_those_from_int64():
    idx = torch.randint(0, 50, (5000,), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(l2_row_weights(idx, 60, 0.5), l2_row_weights(idx.long(), 60, 0.5))


# --------------------------------------------------------------------------- ALS


@pytest.mark.parametrize("mc, tc", [
    (ModelConfig(n_factors=4), TrainConfig(optimizer="als", epochs=3, l2=0.05, l2_bias=0.01)),
    (ModelConfig(n_factors=6, use_bias=False, global_bias="learned"), TrainConfig(optimizer="als", epochs=3, l2=0.05)),
    (ModelConfig(n_factors=5), TrainConfig(optimizer="als", epochs=3, l2=0.5, l2_count_power=0.5)),
])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_als_equals_the_device_path(data_and_split, monkeypatch, mc, tc, threads):
    """The CPU's compiled per-row solves give the torch (GPU) path's model."""
    from mfcore.training import als

    data, split = data_and_split
    monkeypatch.setattr(als.ALSStepper, "CPU_ROWS_PER_CALL", 7)  # many calls, uneven slices over threads
    compiled = fit(data, split, mc, tc, RuntimeOptions(cpu_threads=threads))
    monkeypatch.setattr(als, "numba", None)  # -> the torch path, as on a GPU
    torch_path = fit(data, split, mc, tc)
    for k, v in compiled.model.state_dict().items():
        assert torch.allclose(v, torch_path.model.state_dict()[k], atol=2e-5), k
    assert compiled.history.train_loss == pytest.approx(torch_path.history.train_loss, rel=1e-4)


# --------------------------------------------------------------------------- threads


def test_compiled_kernels_use_every_core_only_on_large_data(monkeypatch):
    from mfcore import device

    monkeypatch.delenv("MFSTUDIO_CPU_THREADS", raising=False)
    monkeypatch.setattr(device.os, "cpu_count", lambda: 2)
    assert device.default_kernel_threads(1_000_000) == 1  # small data: the other core stays free
    assert device.default_kernel_threads(25_000_000) == 2
    monkeypatch.setattr(device.os, "cpu_count", lambda: 64)
    assert device.default_kernel_threads(25_000_000) == 8
    monkeypatch.setenv("MFSTUDIO_CPU_THREADS", "3")
    assert device.default_kernel_threads(25_000_000) == 3


@pytest.mark.parametrize("asked, expected", [(0, 2), (1, 1)])
def test_a_large_run_gets_the_kernel_threads_unless_the_user_chose(data_and_split, monkeypatch, asked, expected):
    from mfcore import device
    from mfcore.training import steppers

    data, split = data_and_split
    monkeypatch.delenv("MFSTUDIO_CPU_THREADS", raising=False)
    monkeypatch.setattr(device.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(device, "KERNEL_THREADS_MIN_RATINGS", 10)  # this small set counts as large
    seen = []
    make = steppers.make_stepper
    monkeypatch.setattr("mfcore.training.trainer.make_stepper",
                        lambda *a, threads=1, **k: seen.append(threads) or make(*a, threads=threads, **k))
    tc = TrainConfig(optimizer="sgd", batch_size=1, epochs=1, lr=0.01)
    events = list(Trainer(data, split, ModelConfig(n_factors=4), tc, RuntimeOptions(cpu_threads=asked)).run())
    assert seen == [expected]
    assert events[0].device == f"cpu ({expected} thread{'s' if expected > 1 else ''})"
    assert torch.get_num_threads() == 1  # torch's own ops stay on one thread either way


@pytest.mark.parametrize("changes, model_changes, dense", [
    ({"optimizer": "adam", "batch_size": 8192}, {}, True),
    ({"optimizer": "adamw", "batch_size": 512}, {}, True),
    ({"optimizer": "sgd", "batch_size": 512, "momentum": 0.9}, {}, True),
    ({"optimizer": "sgd", "batch_size": 1}, {"output": "sigmoid"}, False),  # autograd, sparse gradients
    ({"optimizer": "sgd", "batch_size": 1}, {}, False),  # the per-rating kernel
    ({"optimizer": "sparse_adam", "batch_size": 8192}, {}, False),
    ({"optimizer": "adagrad", "batch_size": 8192}, {}, False),
    ({"optimizer": "als"}, {}, False),
])
def test_updates_every_row_names_the_dense_optimizers(changes, model_changes, dense):
    from mfcore.training.steppers import TorchOptimStepper, updates_every_row

    tc = TrainConfig(**{"implicit_feedback": False, "l2": 0.0 if changes.get("optimizer") != "als" else 0.1,
                        **changes})
    mc = ModelConfig(**model_changes)
    assert updates_every_row(mc, tc) is dense
    if changes.get("optimizer") not in ("als",) and not (changes.get("batch_size") == 1 and not model_changes):
        assert TorchOptimStepper.uses_sparse_updates(tc) is not dense


# --------------------------------------------------------------------------- issue 13: per-epoch costs


@pytest.mark.parametrize("use_bias", [True, False])
def test_buffered_predictions_equal_predict_bit_for_bit(data_and_split, use_bias):
    from mfcore.model import MFModel

    data, split = data_and_split
    model = MFModel(data.n_users, data.n_items, ModelConfig(n_factors=6, init_std=0.5, use_bias=use_bias),
                    global_mean=3.0, rating_scale=(1, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.user_bias.normal_(0, 0.3)
        model.item_bias.normal_(0, 0.3)
    u, i = (torch.from_numpy(a[split.test]) for a in (data.user_idx, data.item_idx))
    buffers: dict = {}
    assert torch.equal(model.predict_with_buffers(u, i, buffers), model.predict(u, i))
    assert torch.equal(model.predict_with_buffers(u[:7], i[:7], buffers), model.predict(u[:7], i[:7]))  # reused, smaller
    other = {k: v * 0.5 for k, v in model.state_dict().items()}
    expected = MFModel(data.n_users, data.n_items, model.config, global_mean=3.0, rating_scale=(1, 5))
    expected.load_state_dict(other)
    assert torch.equal(model.predict_with_buffers(u, i, buffers, other), expected.predict(u, i))


def test_evaluating_the_average_in_buffers_equals_evaluating_it_swapped_in(data_and_split):
    from mfcore.training.trainer import _WeightAverager

    data, split = data_and_split
    trainer = fit(data, split, ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=0.02, batch_size=1, epochs=2))
    model = trainer.model
    averager = _WeightAverager(model)
    averager.add(model)
    with torch.no_grad():
        model.user_factors.mul_(0.7)
    averager.add(model)
    u, i, r = (torch.from_numpy(a[split.test]) for a in (data.user_idx, data.item_idx, data.rating))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = trainer._evaluate(model, averager, u, i, r)
    with averager.swapped_in(model):
        slow = _rmse_mae(model, u, i, r)
    assert fast == pytest.approx(slow, rel=1e-6)
    assert fast != trainer._evaluate(model, None, u, i, r)  # it did evaluate the average
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model was not touched


def test_weights_finite_sees_a_nan_or_an_infinity_anywhere(data_and_split):
    from mfcore.model import MFModel

    model = MFModel(5, 4, ModelConfig(n_factors=3), global_mean=3.0, rating_scale=(1, 5))
    assert model.weights_finite()
    for name, value in (("item_factors", float("nan")), ("user_bias", float("inf")), ("user_factors", -float("inf"))):
        with torch.no_grad():
            getattr(model, name).view(-1)[-1] = value
        assert not model.weights_finite()
        with torch.no_grad():
            getattr(model, name).view(-1)[-1] = 0.0
        assert model.weights_finite()


@pytest.mark.parametrize("ahead_of_time", ["1", "0"])
def test_warm_up_loads_the_default_presets_kernels_once(data_and_split, ahead_of_time, monkeypatch):
    """After warm_up a default-preset run adds no new compiled specialisation (no compile
    in the first epoch), and a second warm_up is nearly free. (With the ahead-of-time build
    loaded, the implicit pass, its fold and the test errors never reach numba at all.)"""
    from mfcore.presets import get_preset
    from mfcore.training import aot, implicit_kernels
    from mfcore.training.implicit import uses_register_kernels

    monkeypatch.setenv("MFSTUDIO_AOT", ahead_of_time)
    monkeypatch.setattr(aot, "_kernels", None)  # chosen again now, the earlier choice back after the test
    preset = get_preset("default")
    kernels.warm_up()
    jit = [kernels._sgd_epoch]
    if not aot.kernels().native:
        jit += [implicit_kernels.users_pass, implicit_kernels.fold_users, kernels._heldout_errors]
        if uses_register_kernels(preset.model.n_factors):
            jit += [implicit_kernels.users_pass_k64, implicit_kernels.fold_users_k64]
    loaded = {f: len(f.signatures) for f in jit}
    assert all(n >= 1 for n in loaded.values())  # (earlier tests in this process may have added others)
    assert kernels.warm_up() < 0.5
    data, split = data_and_split
    fit(data, split, preset.model, TrainConfig(**{**preset.train.__dict__, "epochs": 2, "average_from": 2}))
    assert {f: len(f.signatures) for f in loaded} == loaded


def test_the_cli_training_path_imports_no_scikit_learn(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from mfcore.cli import main; "
            "rc = main(['train', '--dataset', 'synthetic:n_users=60,n_items=40,density=0.3,rank=2,seed=0', "
            "'--epochs', '2', '--json']); "
            "assert rc == 0; assert 'sklearn' not in sys.modules, 'scikit-learn was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_implicit_pass_shuffles_each_users_ratings_in_place_keeping_them(data_and_split):
    """The pass reorders the stepper's user-grouped records every epoch; each user keeps
    exactly their (item, rating) pairs."""
    from mfcore.presets import get_preset
    from mfcore.training.implicit import ImplicitSGDStepper
    from mfcore.model import MFModel

    data, split = data_and_split
    preset = get_preset("default")
    u, i, r = (torch.from_numpy(a[split.train]) for a in (data.user_idx, data.item_idx, data.rating))
    train = TrainTensors(u, i, r, l2_row_weights(u, data.n_users, 0.5), l2_row_weights(i, data.n_items, 0.5))
    model = MFModel(data.n_users, data.n_items, ModelConfig(n_factors=4), global_mean=3.0, rating_scale=(1, 5))
    stepper = ImplicitSGDStepper(model, preset.train, train)

    def per_user():
        return [sorted(zip(stepper.items[a:b].tolist(), stepper.ratings[a:b].tolist()))
                for a, b in zip(stepper.indptr[:-1], stepper.indptr[1:])]

    before, items_before = per_user(), stepper.items.copy()
    for _ in stepper.epoch(torch.Generator().manual_seed(0)):
        pass
    assert per_user() == before
    assert not np.array_equal(stepper.items, items_before)


@pytest.mark.parametrize("use_bias", [True, False])
def test_compiled_test_errors_equal_the_torch_formula_with_clipping(data_and_split, use_bias):
    from mfcore.model import MFModel

    data, split = data_and_split
    model = MFModel(data.n_users, data.n_items, ModelConfig(n_factors=5, init_std=1.0, use_bias=use_bias),
                    global_mean=3.0, rating_scale=(1, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.user_bias.normal_(0, 0.5)
        model.item_bias.normal_(0, 0.5)
    u, i, r = (torch.from_numpy(a[split.test]) for a in (data.user_idx, data.item_idx, data.rating))
    pred = model.predict(u, i)
    assert (pred == 1).any() and (pred == 5).any()  # clipping is exercised at both ends
    err = (pred - r).double()
    sq, ab = kernels.heldout_errors_cpu(u.numpy(), i.numpy(), r.numpy(), model.state_dict(), use_bias, (1.0, 5.0))
    assert sq == pytest.approx(float(err.square().sum()), rel=1e-6)
    assert ab == pytest.approx(float(err.abs().sum()), rel=1e-6)
    assert _rmse_mae(model, u, i, r, buffers={}) == pytest.approx(_rmse_mae(model, u, i, r), rel=1e-6)


def test_final_evaluation_in_buffers_gives_the_same_metrics(data_and_split):
    from mfcore.evaluation import evaluate

    data, split = data_and_split
    trainer = fit(data, split, ModelConfig(n_factors=4), TrainConfig(optimizer="sgd", lr=0.02, batch_size=1, epochs=2))
    buffers: dict = {"p": torch.full((3,), 7.0)}  # a stale, too small buffer is replaced
    assert evaluate(trainer.model, data, split, buffers=buffers) == evaluate(trainer.model, data, split)
