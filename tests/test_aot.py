"""The default preset's kernels built ahead of time (mfcore.training.aot): same results as
numba's JIT, loaded only when they match, and a cold CLI run that never starts numba."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mfcore.training import aot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("aot")
    aot.build(folder)
    return folder


@pytest.fixture
def use_build(monkeypatch):
    """Point the loader at a folder (or turn it off with None) for one test."""

    def use(folder: Path | None):
        if folder is None:
            monkeypatch.setenv("MFSTUDIO_AOT", "0")
        else:
            monkeypatch.setenv("MFSTUDIO_AOT", "1")
            monkeypatch.setenv("MFSTUDIO_AOT_DIR", str(folder))
        aot.reset()
        return aot.kernels()

    yield use
    aot.reset()


def _problem(seed: int = 0, n_users: int = 30, n_items: int = 20, k: int = 8):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 8, n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    items = np.concatenate([rng.choice(n_items, c, replace=False) for c in counts]).astype(np.int32)
    ratings = rng.integers(1, 6, len(items)).astype(np.float32)
    table = lambda n: rng.normal(0, 0.1, (n, k)).astype(np.float32)  # noqa: E731
    return {
        "order": rng.permutation(n_users).astype(np.int64), "indptr": indptr, "items": items, "ratings": ratings,
        "P": table(n_users), "Q": table(n_items), "Y": table(n_items),
        "bu": rng.normal(0, 0.1, (n_users, 1)).astype(np.float32), "bi": rng.normal(0, 0.1, (n_items, 1)).astype(np.float32),
        "wu": rng.uniform(0.5, 2, n_users).astype(np.float32), "wi": rng.uniform(0.5, 2, n_items).astype(np.float32),
        "wy": rng.uniform(0.5, 2, n_items).astype(np.float32), "work": np.zeros((4, k), dtype=np.float32),
    }


def _users_pass(fn, p):
    return fn(p["order"], p["indptr"], p["items"], p["ratings"], p["P"], p["Q"], p["Y"], p["bu"], p["bi"],
              np.float32(3.5), np.float32(0.02), np.float32(0.1), np.float32(0.02), np.float32(1.0),
              p["wu"], p["wi"], p["wy"], True, 1234, p["work"])


def test_the_build_computes_what_the_jit_kernels_compute_bit_for_bit(build, use_build):
    native = use_build(build)
    assert native.native
    from mfcore.training import implicit_kernels, kernels

    for suffix, k in (("", 8), ("_k64", 64)):
        a, b = _problem(k=k), _problem(k=k)
        for _ in range(3):  # three passes: the records are reshuffled in place each time
            assert (_users_pass(getattr(native, "users_pass" + suffix), a)
                    == _users_pass(getattr(implicit_kernels, "users_pass" + suffix), b))
        for key in a:
            assert np.array_equal(a[key], b[key]), (suffix, key)
        za, zb = np.empty_like(a["P"]), np.empty_like(b["P"])
        getattr(native, "fold_users" + suffix)(a["indptr"], a["items"], a["P"], a["Y"], za)
        getattr(implicit_kernels, "fold_users" + suffix)(b["indptr"], b["items"], b["P"], b["Y"], zb)
        assert np.array_equal(za, zb) and np.isfinite(za).all(), suffix
    users = np.repeat(np.arange(len(a["P"]), dtype=np.int32), np.diff(a["indptr"]))
    args = (users, a["items"], a["ratings"], a["P"], a["Q"], a["bu"], a["bi"], np.float32(3.5), True,
            np.float32(1.0), np.float32(5.0))
    assert native.heldout_errors(*args) == kernels._heldout_errors(*args)


def test_a_default_preset_run_is_the_same_with_and_without_the_build(build, use_build):
    from mfcore.data.splits import random_split
    from mfcore.presets import get_preset
    from mfcore.training.trainer import fit
    from tests.factories import planted_data

    data = planted_data()
    split = random_split(data, 0.2, seed=0)
    preset = get_preset("default")
    train = type(preset.train)(**{**preset.train.__dict__, "epochs": 4, "average_from": 3})
    runs = []
    for folder in (build, None):
        assert use_build(folder).native is (folder is not None)
        runs.append(fit(data, split, preset.model, train))
    (a, b) = runs
    assert a.history.test_rmse == b.history.test_rmse
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_a_stale_foreign_or_damaged_build_is_not_loaded(build, tmp_path, use_build):
    stale = tmp_path / "stale"
    shutil.copytree(build, stale)
    assert aot.is_current(stale)
    stamp = stale / f"{aot.MODULE}.json"
    stamp.write_text(json.dumps({"fingerprint": "0" * 64}))  # built from other sources or on another CPU
    assert not aot.is_current(stale)
    assert use_build(stale).native is False

    damaged = tmp_path / "damaged"
    shutil.copytree(build, damaged)
    so = aot._extension_path(damaged)
    so.write_bytes(b"not an extension module")
    assert aot.is_current(damaged)  # the stamp matches; loading it fails and the JIT kernels step in
    kernels = use_build(damaged)
    assert kernels.native is False
    p = _problem()
    assert np.isfinite(_users_pass(kernels.users_pass, p))


def test_arguments_the_build_was_not_made_for_go_to_the_jit_kernel(build, use_build):
    """The extension reads memory as the types it was compiled for: a float64 table must never
    reach it (it would read garbage or crash); the JIT kernel takes it instead."""
    kernels = use_build(build)
    p = _problem()
    out32 = np.empty_like(p["P"])
    kernels.fold_users(p["indptr"], p["items"], p["P"], p["Y"], out32)
    P64, Y64 = p["P"].astype(np.float64), p["Y"].astype(np.float64)
    out64 = np.empty_like(P64)
    kernels.fold_users(p["indptr"], p["items"], P64, Y64, out64)
    assert np.allclose(out64, out32, atol=1e-6)
    fortran = np.asfortranarray(p["P"])
    out_f = np.empty_like(p["P"])
    kernels.fold_users(p["indptr"], p["items"], fortran, p["Y"], out_f)
    assert np.array_equal(out_f, out32)


def test_a_cold_cli_run_trains_without_starting_numba(build):
    code = ("import sys; from mfcore.cli import main; "
            "rc = main(['train', '--dataset', 'synthetic:n_users=60,n_items=40,density=0.3,rank=2,seed=0', "
            "'--epochs', '2', '--json']); assert rc == 0; "
            "print(sorted(m for m in ('numba', 'llvmlite', 'scipy', 'sklearn') if m in sys.modules))")
    env = {**os.environ, "MFSTUDIO_AOT": "1", "MFSTUDIO_AOT_DIR": str(build)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    env["MFSTUDIO_AOT"] = "0"  # and the JIT kernels when the build is turned off
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert "numba" in done.stdout.strip().splitlines()[-1]


def test_the_build_command_reports_what_it_did(tmp_path):
    env = {**os.environ, "MFSTUDIO_AOT_DIR": str(tmp_path / "k")}
    first = subprocess.run([sys.executable, "-m", "mfcore", "build-kernels", "--if-stale"], capture_output=True,
                           text=True, cwd=ROOT, env=env)
    assert first.returncode == 0 and first.stdout.startswith("built mfcore_kernels"), first.stdout + first.stderr
    again = subprocess.run([sys.executable, "-m", "mfcore", "build-kernels", "--if-stale"], capture_output=True,
                           text=True, cwd=ROOT, env=env)
    assert again.returncode == 0 and again.stdout == "", again.stdout


def test_the_blocked_threshold_follows_the_exact_shuffle_limit():
    from mfcore.training.shuffle import EXACT_MAX
    from mfcore.training.steppers import PerRatingSGDStepper

    assert PerRatingSGDStepper.BLOCKED_MIN_RATINGS == EXACT_MAX + 1


def test_a_machine_without_a_compiler_gets_a_warning_and_the_jit_kernels(tmp_path, monkeypatch, capsys):
    from mfcore.cli import main

    def no_compiler(folder=None):
        raise OSError("gcc: command not found")

    monkeypatch.setattr(aot, "build", no_compiler)
    assert main(["build-kernels", "--dir", str(tmp_path / "k")]) == 0
    err = capsys.readouterr().err
    assert "not built (OSError: gcc: command not found)" in err and "JIT kernels" in err
    assert not aot.is_current(tmp_path / "k")
