"""One epoch of the default preset's implicit-feedback pass, kernel by kernel.

    python benchmarks/implicit_pass.py [--data-dir ../shared/data] [--repeats 15]

Trains the default preset on ml-100k's random 90/10 split (seed 0), builds the stepper on the
trained model, then times one whole pass over the 90k training ratings (all users, one call)
and the fold, each from the same saved state, alternating the kernels, this thread's CPU time:
the generic loops (scratch rows in memory) and the k = 64 register loops
(mfcore.training.simd), each as numba's JIT dispatcher and as the ahead-of-time build
(mfcore.training.aot) when one is current. Prints median and min in ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    import numpy as np
    import torch

    from mfcore.config import RuntimeOptions
    from mfcore.data.sources import load_dataset
    from mfcore.data.splits import make_split
    from mfcore.presets import get_preset
    from mfcore.training import aot, implicit_kernels
    from mfcore.training.implicit import ImplicitSGDStepper
    from mfcore.training.steppers import TrainTensors, l2_row_weights
    from mfcore.training.trainer import fit

    data = load_dataset("ml-100k", data_dir=args.data_dir, download=False)
    split = make_split(data, "random:0.1", 0)
    preset = get_preset("default")
    cfg = preset.train
    trained = fit(data, split, preset.model, cfg, RuntimeOptions(keep_snapshots=False))
    u, i = (torch.from_numpy(a[split.train]) for a in (data.user_idx, data.item_idx))
    r = torch.from_numpy(data.rating[split.train])
    train = TrainTensors(u, i, r, l2_row_weights(u, data.n_users, cfg.l2_count_power),
                         l2_row_weights(i, data.n_items, cfg.l2_count_power))
    st = ImplicitSGDStepper(trained.model, cfg, train)
    st.Y[:] = np.random.default_rng(0).normal(0, 0.05, st.Y.shape).astype(np.float32)
    saved = {k: getattr(st, k).copy() for k in ("P", "Q", "Y", "bu", "bi", "items", "ratings")}
    g = np.float32(float(trained.model.global_bias))
    order = np.random.default_rng(1).permutation(data.n_users).astype(np.int64)
    out = np.empty_like(st.P)

    def restore() -> None:
        for k, v in saved.items():
            getattr(st, k)[...] = v

    def one_pass(fn):
        return lambda: fn(order, st.indptr, st.items, st.ratings, st.P, st.Q, st.Y, st.bu, st.bi, g,
                          np.float32(cfg.lr), np.float32(cfg.l2), np.float32(cfg.l2_bias),
                          np.float32(cfg.l2_implicit), st.wu, st.wi, st.wy, True, 12345, st.work)

    def one_fold(fn):
        return lambda: fn(st.indptr, st.items, st.P, st.Y, out)

    aot.reset()
    native = aot.kernels() if aot.enabled() and aot.is_current() else None
    cases = {
        "pass, generic (JIT)": one_pass(implicit_kernels.users_pass),
        "pass, k = 64 registers (JIT)": one_pass(implicit_kernels.users_pass_k64),
        "fold, generic (JIT)": one_fold(implicit_kernels.fold_users),
        "fold, k = 64 registers (JIT)": one_fold(implicit_kernels.fold_users_k64),
    }
    if native is not None and native.native:
        cases["pass, k = 64 registers (ahead of time)"] = one_pass(native.users_pass_k64)
        cases["fold, k = 64 registers (ahead of time)"] = one_fold(native.fold_users_k64)
    for run in cases.values():  # compile / load once
        restore()
        run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, run in cases.items():
            restore()
            t = time.thread_time()
            run()
            times[name].append(time.thread_time() - t)
    print(f"# ml-100k random 90/10 train ({st.n_train:,} ratings, k = {st.P.shape[1]}), one pass from the same "
          f"state, thread CPU, {args.repeats} repeats, load average {os.getloadavg()[0]:.1f}; "
          f"AVX-512: {aot.cpu_has('avx512f')}")
    print(f"{'kernel':<42} {'median ms':>10} {'min ms':>8}")
    for name, xs in times.items():
        print(f"{name:<42} {1000 * statistics.median(xs):>10.2f} {1000 * min(xs):>8.2f}")


if __name__ == "__main__":
    main()
