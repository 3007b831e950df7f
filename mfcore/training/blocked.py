"""Cache-blocked per-rating SGD for large data (the LIBMF/FPSGD schedule).

On ml-25m-sized data the factor tables (160k users and 60k items of 32-64 floats:
25-60 MB) do not fit in the CPU's caches, and a shuffled epoch touches two random rows
per rating: the kernel waits on memory and runs at ~3.5 M ratings/s here. Grouping the
ratings into blocks (a range of users x a range of items, each range's rows ~0.5 MB)
and visiting the blocks one at a time, each block's ratings shuffled, keeps the rows a
block touches in cache: ~18 M ratings/s on the same data and core (benchmarks/NOTES.md).

The schedule per epoch: a random order of the blocks; within each block a fresh random
order of its ratings. Every rating is visited once per epoch, as before; what changes
is that a user's ratings come in as many bursts as there are item ranges. Measured
time-to-RMSE curves are in benchmarks/NOTES.md.

Blocks that share no user range and no item range touch disjoint rows, so with
``threads > 1`` several blocks run at once, one per thread, without locks and without
races (the learned global bias, the one shared number, gets a per-thread copy whose
changes are summed after each round). Pairing is decided from the random block order
alone, so a run is reproducible for a given thread count; threads block (never spin)
while they wait for each other, which keeps a busy 2-core machine usable.

The stored training ratings are reordered in place (block by block) and reshuffled
within their block each epoch, so there is no separate order array at all and the
kernel reads them sequentially.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from mfcore.training.kernels import numba, sgd_range_cpu, shuffle_records

BLOCK_BYTES = 512 * 1024
"""Bytes of factor rows (user or item) per range: half of the 1 MiB L2 of this machine
kind per side. Measured plateau on the ml-25m shape: 16-640 ranges pairs, see NOTES."""
MAX_RANGES = 1024


def row_ranges(counts: np.ndarray, n_ranges: int) -> np.ndarray:
    """Range number (int32) of each row: consecutive rows, about equal rating counts."""
    cum = np.cumsum(counts, dtype=np.int64)
    total = int(cum[-1]) if len(cum) else 0
    if n_ranges <= 1 or total == 0:
        return np.zeros(len(counts), dtype=np.int32)
    # a row belongs to the range its first rating falls in
    start = cum - counts
    return np.minimum(start * n_ranges // total, n_ranges - 1).astype(np.int32)


def _n_ranges(n_rows: int, row_bytes: int, at_least: int) -> int:
    return int(min(MAX_RANGES, max(at_least, math.ceil(n_rows * row_bytes / BLOCK_BYTES))))


def _block_sort_py(users, items, ratings, user_range, item_range, n_item_ranges, offsets, scratch_i, scratch_f):
    """Stable counting sort of the ratings by block, in place (via scratch buffers)."""
    n = users.shape[0]
    n_blocks = offsets.shape[0] - 1
    offsets[:] = 0
    for t in range(n):
        offsets[1 + user_range[users[t]] * n_item_ranges + item_range[items[t]]] += 1
    for b in range(n_blocks):
        offsets[b + 1] += offsets[b]
    pos = offsets[:-1].copy()
    dest = np.empty(n, dtype=np.int32)
    for t in range(n):
        b = user_range[users[t]] * n_item_ranges + item_range[items[t]]
        dest[t] = pos[b]
        pos[b] += 1
    for t in range(n):
        scratch_i[dest[t]] = users[t]
    users[:] = scratch_i
    for t in range(n):
        scratch_i[dest[t]] = items[t]
    items[:] = scratch_i
    for t in range(n):
        scratch_f[dest[t]] = ratings[t]
    ratings[:] = scratch_f


_block_sort = numba.njit(cache=True, nogil=True)(_block_sort_py) if numba is not None else _block_sort_py


class BlockedSchedule:
    """The block layout of one training set (reorders ``users``/``items``/``ratings``,
    numpy views of the trainer's tensors, in place) and its epochs."""

    def __init__(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
                 n_factors: int, threads: int = 1) -> None:
        self.users, self.items, self.ratings = users, items, ratings
        self.threads = max(1, int(threads))
        row_bytes = 4 * (n_factors + 2)  # factors + bias + L2 weight
        floor = 2 * self.threads if self.threads > 1 else 1
        self.n_user_ranges = _n_ranges(n_users, row_bytes, floor)
        self.n_item_ranges = _n_ranges(n_items, row_bytes, floor)
        self.user_range = row_ranges(np.bincount(users, minlength=n_users), self.n_user_ranges)
        self.item_range = row_ranges(np.bincount(items, minlength=n_items), self.n_item_ranges)
        n_blocks = self.n_user_ranges * self.n_item_ranges
        self.offsets = np.zeros(n_blocks + 1, dtype=np.int64)
        scratch = np.empty(len(users), dtype=np.int32)
        _block_sort(users, items, ratings, self.user_range, self.item_range, self.n_item_ranges, self.offsets,
                    scratch, scratch.view(np.float32) if ratings.dtype == np.float32 else np.empty_like(ratings))
        del scratch
        self.block_user_range = np.repeat(np.arange(self.n_user_ranges), self.n_item_ranges)
        self.block_item_range = np.tile(np.arange(self.n_item_ranges), self.n_user_ranges)

    @property
    def n_blocks(self) -> int:
        return len(self.offsets) - 1

    def rounds(self, block_order: np.ndarray) -> list[list[int]]:
        """Group the (non-empty) blocks, in ``block_order``, into rounds of up to
        ``threads`` blocks that share no user range and no item range (first fit)."""
        pending = [int(b) for b in block_order if self.offsets[b + 1] > self.offsets[b]]
        if self.threads == 1:
            return [[b] for b in pending]
        rounds = []
        while pending:
            chosen, users_used, items_used, rest = [], set(), set(), []
            for b in pending:
                ur, ir = int(self.block_user_range[b]), int(self.block_item_range[b])
                if len(chosen) < self.threads and ur not in users_used and ir not in items_used:
                    chosen.append(b)
                    users_used.add(ur)
                    items_used.add(ir)
                else:
                    rest.append(b)
            rounds.append(chosen)
            pending = rest
        return rounds

    def epoch(self, generator: torch.Generator, weights: list[np.ndarray], wu: np.ndarray, wi: np.ndarray,
              lr: float, l2: float, l2_bias: float, use_bias: bool, learn_g: bool,
              chunk: int) -> Iterator[tuple[int, float]]:
        """Run one epoch; yields (ratings done, summed squared error) as it goes."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, dtype=torch.int64))
        order = np.random.default_rng(seed).permutation(self.n_blocks)
        P, Q, bu, bi, g = weights
        users, items, ratings = self.users, self.items, self.ratings

        def run_block(b: int, g_arr: np.ndarray, pieces: int | None) -> Iterator[float]:
            lo, hi = int(self.offsets[b]), int(self.offsets[b + 1])
            shuffle_records(users, items, ratings, lo, hi, seed ^ (0x9E3779B97F4A7C15 * (b + 1)) & (2**64 - 1))
            step = hi - lo if pieces is None else pieces
            for s in range(lo, hi, step):
                e = min(hi, s + step)
                yield e - s, sgd_range_cpu(s, e, users, items, ratings, wu, wi, P, Q, bu, bi, g_arr,
                                           lr, l2, l2_bias, use_bias, learn_g)

        done, sq = 0, 0.0
        rounds = self.rounds(order)
        if self.threads == 1:
            for (b,) in rounds:
                for count, part in run_block(b, g, chunk):
                    done += count
                    sq += part
                    yield done, sq
            return

        def whole_block(b: int, g_arr: np.ndarray) -> tuple[int, float]:
            c, s = 0, 0.0
            for count, part in run_block(b, g_arr, None):
                c += count
                s += part
            return c, s

        with ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="mf-sgd") as pool:
            for blocks in rounds:
                g_copies = [g.copy() for _ in blocks] if learn_g else [g] * len(blocks)
                futures = [pool.submit(whole_block, b, ga) for b, ga in zip(blocks[1:], g_copies[1:])]
                results = [whole_block(blocks[0], g_copies[0])] + [f.result() for f in futures]
                if learn_g:
                    g += sum(ga - g for ga in g_copies)
                for count, part in results:
                    done += count
                    sq += part
                yield done, sq
