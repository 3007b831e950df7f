"""Per-rating SGD (classic Funk/Surprise SGD-MF) as a compiled CPU kernel and its torch twin.

For each rating in the shuffled order, with e = r - (g + b_u + b_i + p_u·q_i):

    b_u += lr (e - l2_bias w_u b_u)    b_i += lr (e - l2_bias w_i b_i)
    p_u += lr (e q_i - l2 w_u p_u)     q_i += lr (e p_u - l2 w_i q_i)  (both from the old values)
    g   += lr e                         (only when the global bias is learned)

(w_u, w_i: the rows' L2 weights, 1 for classic L2; see TrainConfig.l2_count_power.)
On the CPU this runs as a numba loop over ratings, updating the model's tensors in
place through zero-copy numpy views (tens of millions of ratings a second on one core).
On other devices the same update is applied to chunks of ratings at once: each rating's
step is computed from the weights at the start of the chunk and the steps are summed
into the rows (Hogwild-style), which equals the sequential loop when no two ratings of
a chunk share a row and stays close to it otherwise.
"""

from __future__ import annotations

import numpy as np
import torch

from mfcore.training.heldout import _heldout_errors_py, heldout_errors_cpu

try:  # numba is a hard requirement, but keep the import failure explicit and local
    import numba
except ImportError:  # pragma: no cover - exercised only on broken installs
    numba = None

# Fast-math flags for the kernels: contraction (FMA) and reassociation let LLVM
# vectorise the dot product's reduction; no "nnan"/"ninf", so a diverging run still
# shows NaN/inf where the trainer looks for it.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
PREFETCH_AHEAD = 8
"""Ratings ahead whose user/item rows the kernel prefetches (their records twice as far)."""


def _make_prefetch():
    """``prefetch(array_1d, index)``: a cache hint for the address of ``array_1d[index]``
    (LLVM's prefetch intrinsic); a no-op where it cannot be compiled."""
    if numba is None:  # pragma: no cover
        return lambda arr, idx: None

    @numba.njit(inline="always")
    def noop(arr, idx):  # pragma: no cover - only on toolchains without the intrinsic
        pass

    try:
        from llvmlite import ir
        from numba.core import cgutils, types
        from numba.extending import intrinsic

        @intrinsic
        def prefetch(typingctx, arr, idx):
            if not isinstance(arr, types.Array) or arr.ndim != 1 or not isinstance(idx, types.Integer):
                return None

            def codegen(context, builder, signature, args):
                aryty, _ = signature.args
                ary = context.make_array(aryty)(context, builder, args[0])
                ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
                i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
                fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
                fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
                # (address, write=1: the rows are updated, locality=3: keep in all levels, data cache)
                builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
                return context.get_dummy_value()

            return types.void(arr, idx), codegen

        return prefetch, noop
    except Exception:  # pragma: no cover - an llvmlite without the API: run without hints
        return noop, noop


prefetch, _prefetch_noop = _make_prefetch()


def _prefetch_probe(a):  # pragma: no cover - compiled
    prefetch(a, 1)
    return a[1]


def _probe_prefetch() -> bool:
    """Compile (or, from the second process on, load from numba's cache: ~10 ms instead of a
    ~0.1-0.2 s compile on every import) a function using the hint; on failure the kernels
    compiled afterwards get the no-op instead."""
    global prefetch
    if numba is None or prefetch is _prefetch_noop:  # pragma: no cover
        return False
    try:
        numba.njit(cache=True)(_prefetch_probe)(np.zeros(2, dtype=np.float32))
    except Exception:  # pragma: no cover - a toolchain that cannot compile the intrinsic
        prefetch = _prefetch_noop
        return False
    return True


PREFETCH_COMPILED = _probe_prefetch()
"""False where the toolchain could not compile the hint (the kernels then run without it)."""


def _sgd_epoch_py(order, users, items, ratings, wu, wi, P, Q, bu, bi, g, lr, l2, l2_bias, use_bias, learn_g):
    """The reference loop (plain Python semantics of the compiled kernel)."""
    k = P.shape[1]
    sq = 0.0
    for n in order:
        u = users[n]
        i = items[n]
        lam_u = l2 * wu[u]
        lam_i = l2 * wi[i]
        pred = g[0]
        if use_bias:
            pred += bu[u, 0] + bi[i, 0]
        for f in range(k):
            pred += P[u, f] * Q[i, f]
        e = ratings[n] - pred
        sq += e * e
        if use_bias:
            bu[u, 0] += lr * (e - l2_bias * wu[u] * bu[u, 0])
            bi[i, 0] += lr * (e - l2_bias * wi[i] * bi[i, 0])
        if learn_g:
            g[0] += lr * e
        for f in range(k):
            p = P[u, f]
            q = Q[i, f]
            P[u, f] = p + lr * (e * q - lam_u * p)
            Q[i, f] = q + lr * (e * p - lam_i * q)
    return sq


def _rating_step(n, users, items, ratings, wu, wi, P, Q, bu, bi, g, lr, l2, l2_bias, use_bias, learn_g):
    """One rating's update; returns its error (float32 throughout, rows as views)."""
    u = users[n]
    i = items[n]
    pu = P[u]
    qi = Q[i]
    pred = g[0]
    if use_bias:
        pred += bu[u, 0] + bi[i, 0]
    dot = np.float32(0.0)
    for f in range(pu.shape[0]):
        dot += pu[f] * qi[f]
    e = ratings[n] - (pred + dot)
    if use_bias:
        bu[u, 0] += lr * (e - l2_bias * wu[u] * bu[u, 0])
        bi[i, 0] += lr * (e - l2_bias * wi[i] * bi[i, 0])
    if learn_g:
        g[0] += lr * e
    lam_u = l2 * wu[u]
    lam_i = l2 * wi[i]
    for f in range(pu.shape[0]):
        p = pu[f]
        q = qi[f]
        pu[f] = p + lr * (e * q - lam_u * p)
        qi[f] = q + lr * (e * p - lam_i * q)
    return e


def _prefetch_rows(n, users, items, P, Q, bu, bi):
    """Cache hints for the rows rating ``n`` will update (one per 64-byte line)."""
    u = users[n]
    i = items[n]
    pn = P[u]
    qn = Q[i]
    for f in range(0, pn.shape[0], 16):
        prefetch(pn, f)
        prefetch(qn, f)
    prefetch(bu[u], 0)
    prefetch(bi[i], 0)


if numba is not None:
    _rating_step = numba.njit(inline="always", fastmath=FASTMATH)(_rating_step)
    _prefetch_rows = numba.njit(inline="always")(_prefetch_rows)


def _sgd_order_fast(order, users, items, ratings, wu, wi, P, Q, bu, bi, g, lr, l2, l2_bias, use_bias, learn_g):
    """The loop over ``order``, compiled: the rows of the ratings a few steps ahead and
    (twice as far ahead) their records are prefetched, so the random accesses overlap."""
    m = order.shape[0]
    ahead = PREFETCH_AHEAD
    sq = 0.0
    for j in range(m):
        if j + 2 * ahead < m:
            far = order[j + 2 * ahead]
            prefetch(users, far)
            prefetch(items, far)
            prefetch(ratings, far)
        if j + ahead < m:
            _prefetch_rows(order[j + ahead], users, items, P, Q, bu, bi)
        e = _rating_step(order[j], users, items, ratings, wu, wi, P, Q, bu, bi, g, lr, l2, l2_bias, use_bias, learn_g)
        sq += e * e
    return sq


def _sgd_range_fast(lo, hi, users, items, ratings, wu, wi, P, Q, bu, bi, g, lr, l2, l2_bias, use_bias, learn_g):
    """The loop over the stored ratings ``lo..hi-1`` in storage order (records read
    sequentially; rows prefetched a few steps ahead)."""
    ahead = PREFETCH_AHEAD
    sq = 0.0
    for n in range(lo, hi):
        if n + ahead < hi:
            _prefetch_rows(n + ahead, users, items, P, Q, bu, bi)
        e = _rating_step(n, users, items, ratings, wu, wi, P, Q, bu, bi, g, lr, l2, l2_bias, use_bias, learn_g)
        sq += e * e
    return sq


def _shuffle_records_py(users, items, ratings, lo, hi, seed):
    """Fisher-Yates of the stored ratings ``lo..hi-1`` in place (all three arrays alike),
    from a splitmix64 stream seeded with ``seed``; unbiased (Lemire's bounded draws)."""
    state = seed
    for i in range(hi - 1, lo, -1):
        span = np.uint64(i - lo + 1)
        state, m = _draw(state, span)
        j = lo + np.int64(m >> np.uint64(32))
        users[i], users[j] = users[j], users[i]
        items[i], items[j] = items[j], items[i]
        ratings[i], ratings[j] = ratings[j], ratings[i]


def _splitmix64(x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _draw(state, span):
    """(new state, m) with m >> 32 uniform in [0, span) (span < 2**32)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    m = (_splitmix64(state) >> np.uint64(32)) * span
    if (m & np.uint64(0xFFFFFFFF)) < span:
        floor = (np.uint64(1 << 32) - span) % span
        while (m & np.uint64(0xFFFFFFFF)) < floor:
            state = state + np.uint64(0x9E3779B97F4A7C15)
            m = (_splitmix64(state) >> np.uint64(32)) * span
    return state, m


if numba is not None:
    _splitmix64 = numba.njit(inline="always")(_splitmix64)
    _draw = numba.njit(inline="always")(_draw)
    _jit = numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
    _sgd_epoch = _jit(_sgd_order_fast)
    _sgd_range = _jit(_sgd_range_fast)
    _shuffle_records = numba.njit(cache=True, nogil=True)(_shuffle_records_py)
else:  # pragma: no cover
    _sgd_epoch = _sgd_range = None
    _shuffle_records = _shuffle_records_py


def sgd_chunk_cpu(
    order: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    wu: np.ndarray,
    wi: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    g: np.ndarray,
    lr: float,
    l2: float,
    l2_bias: float,
    use_bias: bool,
    learn_g: bool,
) -> float:
    """Sequential per-rating SGD over ``order``; arrays are updated in place."""
    fn = _sgd_epoch if _sgd_epoch is not None else _sgd_epoch_py
    return float(
        fn(order, users, items, ratings, wu, wi, P, Q, bu, bi, g,
           np.float32(lr), np.float32(l2), np.float32(l2_bias), use_bias, learn_g)
    )


def sgd_range_cpu(lo: int, hi: int, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                  wu: np.ndarray, wi: np.ndarray, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray,
                  g: np.ndarray, lr: float, l2: float, l2_bias: float, use_bias: bool, learn_g: bool) -> float:
    """Sequential per-rating SGD over the stored ratings ``lo..hi-1`` in storage order."""
    if _sgd_range is None:  # pragma: no cover
        return float(_sgd_epoch_py(np.arange(lo, hi), users, items, ratings, wu, wi, P, Q, bu, bi, g,
                                   np.float32(lr), np.float32(l2), np.float32(l2_bias), use_bias, learn_g))
    return float(
        _sgd_range(lo, hi, users, items, ratings, wu, wi, P, Q, bu, bi, g,
                   np.float32(lr), np.float32(l2), np.float32(l2_bias), use_bias, learn_g)
    )


def shuffle_records(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, lo: int, hi: int, seed: int) -> None:
    """Shuffle the stored ratings ``lo..hi-1`` in place, reproducibly from ``seed``."""
    _shuffle_records(users, items, ratings, lo, hi, np.uint64(int(seed) & (2**64 - 1)))


@torch.no_grad()
def sgd_chunk_torch(
    idx: torch.Tensor,
    users: torch.Tensor,
    items: torch.Tensor,
    ratings: torch.Tensor,
    wu: torch.Tensor,
    wi: torch.Tensor,
    P: torch.Tensor,
    Q: torch.Tensor,
    bu: torch.Tensor,
    bi: torch.Tensor,
    g: torch.Tensor,
    lr: float,
    l2: float,
    l2_bias: float,
    use_bias: bool,
    learn_g: bool,
) -> float:
    """The same update for a chunk of ratings at once (summed per-rating steps)."""
    u = users[idx].long()
    i = items[idx].long()
    p = P.index_select(0, u)
    q = Q.index_select(0, i)
    pred = (p * q).sum(1) + g
    if use_bias:
        b_u = bu.index_select(0, u).squeeze(1)
        b_i = bi.index_select(0, i).squeeze(1)
        pred = pred + b_u + b_i
    e = ratings[idx] - pred
    w_u, w_i = wu[u], wi[i]
    if use_bias:
        bu.index_add_(0, u, (lr * (e - l2_bias * w_u * b_u)).unsqueeze(1))
        bi.index_add_(0, i, (lr * (e - l2_bias * w_i * b_i)).unsqueeze(1))
    if learn_g:
        g.add_(lr * e.sum())
    ec = e.unsqueeze(1)
    P.index_add_(0, u, lr * (ec * q - (l2 * w_u).unsqueeze(1) * p))
    Q.index_add_(0, i, lr * (ec * p - (l2 * w_i).unsqueeze(1) * q))
    return float(e.double().square().sum())


if numba is not None:
    _heldout_errors = numba.njit(cache=True, fastmath=FASTMATH, nogil=True)(_heldout_errors_py)
else:  # pragma: no cover
    _heldout_errors = _heldout_errors_py


def warm_up() -> float:
    """Load every compiled kernel the default preset's run uses (the implicit-feedback pass,
    its fold, the per-epoch test errors: the ahead-of-time build where it is current, see
    :mod:`mfcore.training.aot`) and the plain per-rating SGD path (kernel and epoch shuffle),
    by running each once on a 3 x 3 problem through the steppers themselves, so the argument
    types are exactly those of a real run. From numba's on-disk cache this takes ~0.1-0.7 s once
    per process (the first call in a fresh environment compiles and caches, ~10-20 s);
    afterwards the first epoch of a run pays nothing for it. Thread-safe (numba compiles under a
    lock), so a server can call it from a background thread at start. Returns the seconds it took."""
    import time
    from dataclasses import replace

    from mfcore.model import MFModel
    from mfcore.presets import get_preset
    from mfcore.training.implicit import ImplicitSGDStepper
    from mfcore.training.steppers import PerRatingSGDStepper, TrainTensors, l2_row_weights

    t0 = time.perf_counter()
    preset = get_preset("default")
    users = torch.tensor([0, 0, 1, 2], dtype=torch.int32)
    items = torch.tensor([0, 1, 2, 1], dtype=torch.int32)
    ratings = torch.tensor([4.0, 3.0, 5.0, 2.0])
    train = TrainTensors(users, items, ratings, l2_row_weights(users, 3, preset.train.l2_count_power),
                         l2_row_weights(items, 3, preset.train.l2_count_power))
    generator = torch.Generator().manual_seed(0)
    # the preset's own k for its pass (64: the register kernels), and the generic pass too
    for k, stepper_of in (
        (preset.model.n_factors, lambda m: ImplicitSGDStepper(m, preset.train, train)),
        (4, lambda m: ImplicitSGDStepper(m, preset.train, train)),
        (4, lambda m: PerRatingSGDStepper(m, replace(preset.train, implicit_feedback=False), train)),
    ):
        model = MFModel(3, 3, replace(preset.model, n_factors=k), global_mean=3.5, rating_scale=(1.0, 5.0),
                        generator=generator)
        for _ in stepper_of(model).epoch(generator):
            pass
    heldout_errors_cpu(users.numpy(), items.numpy(), ratings.numpy(), model.state_dict(), True, (1.0, 5.0))
    return time.perf_counter() - t0
