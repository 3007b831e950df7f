"""Bounded factor snapshots: at most a fixed number per run, thinned geometrically.

The 2D map animates a run's item/user factors over its epochs. Keeping every epoch grows
without bound (400 epochs of the default preset: 128 MB; 1,024 factors x 100,000 epochs:
gigabytes), so a run keeps at most :func:`snapshot_limit` snapshots. When one more arrives
the keeper drops the interior snapshot whose neighbours are closest in log-epoch, so the kept
epochs stay spread geometrically over the whole run (dense at the start, where the factors
move most; always the first and the latest epoch), e.g. 40 of 400 epochs:
1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 15, ... 277, 325, 400.

Each snapshot is a dict of float16 arrays plus ``"epoch"`` (a 0-d int array), so a page can
label its frames with the epochs they show.
"""

from __future__ import annotations

import math

import numpy as np

from mfcore.limits import MAX_SNAPSHOTS, SNAPSHOT_BUDGET_BYTES


def snapshot_limit(n_users: int, n_items: int, n_factors: int, *, max_snapshots: int = MAX_SNAPSHOTS,
                   budget_bytes: int = SNAPSHOT_BUDGET_BYTES) -> int:
    """How many float16 snapshots of (users + items) x factors fit the budget (at most
    ``max_snapshots``; at least 2, the first and the latest epoch, unless even one does not fit)."""
    one = max(1, (int(n_users) + int(n_items)) * int(n_factors) * 2)
    fits = budget_bytes // one
    if fits < 1:
        return 0
    return int(max(min(fits, max_snapshots), min(2, fits)))


def snapshot_epoch(snapshot: dict[str, np.ndarray], default: int) -> int:
    """The epoch a snapshot shows (``default`` for snapshots written before epochs were kept)."""
    value = snapshot.get("epoch")
    return default if value is None else int(np.asarray(value).reshape(-1)[0])


def snapshot_epochs(snapshots: list[dict[str, np.ndarray]]) -> list[int]:
    """The epoch of each snapshot (1, 2, ... for old checkpoints that kept every epoch)."""
    return [snapshot_epoch(s, i) for i, s in enumerate(snapshots, start=1)]


def keep_snapshot(snapshots: list[dict[str, np.ndarray]], epoch: int, snapshot: dict[str, np.ndarray],
                  limit: int) -> None:
    """Append ``snapshot`` of ``epoch`` to ``snapshots`` (in place), then thin to ``limit``.

    Thinning drops the interior snapshot with the smallest log-epoch gap between its two
    neighbours (the earliest on ties), so the kept epochs stay geometrically spread.
    """
    if limit <= 0:
        snapshots.clear()
        return
    snapshot = dict(snapshot)
    snapshot["epoch"] = np.asarray(int(epoch), dtype=np.int64)
    snapshots.append(snapshot)
    while len(snapshots) > limit:
        if limit == 1:
            del snapshots[0]
            continue
        epochs = snapshot_epochs(snapshots)
        best, drop = math.inf, 1
        for j in range(1, len(epochs) - 1):
            gap = math.log(max(epochs[j + 1], 1)) - math.log(max(epochs[j - 1], 1))
            if gap < best:
                best, drop = gap, j
        del snapshots[drop]
