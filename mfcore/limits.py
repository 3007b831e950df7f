"""The engine's bounds, in one place: no small file or allowed setting may exhaust a shared
server's memory or disk.

Every limit here is enforced by the engine itself (the CLI and the app only show its
messages): the size of a synthetic set, the work, model size and checkpoint size of a run
(:func:`estimate_run` / :func:`check_run`), the number of factor snapshots a run keeps, the
length of a ratings-file line, the bytes a zip may expand to, the download cache's total
size, and how much of a bad value an error message may quote (:func:`excerpt`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mfcore.errors import ConfigError

# --------------------------------------------------------------------------- data

MAX_SYNTHETIC_RATINGS = 25_000_095
"""A synthetic set has at most this many ratings (the ml-25m shape; ~1 GB while generated):
enforced by :func:`mfcore.data.synthetic.make_synthetic`, so specs, the CLI and the app share it."""

MAX_SYNTHETIC_RANK = 1024
"""The planted rank of a synthetic set (the model's factors are capped at 1,024 too)."""

MAX_LINE_BYTES = 1 << 16
"""A line of a ratings file longer than this (64 KiB) is refused before any column is built."""

MAX_EXTRACT_BYTES = 1536 * 1024**2
"""The files a MovieLens zip is extracted for (ratings, titles, users, splits) may expand to
at most 1.5 GiB in all (ml-32m's ratings.csv, the largest, is 0.87 GB); other members
(tags, genome scores, links) are never extracted."""

UPLOAD_MAX_MB = 300
"""The app's upload limit in MB (``server.maxUploadSize`` in ``.streamlit/config.toml``):
every official MovieLens zip fits (ml-25m.zip is the largest, 262 MB)."""

ENV_CACHE_MAX_GB = "MFSTUDIO_CACHE_MAX_GB"
DEFAULT_CACHE_MAX_BYTES = 8 * 1024**3
"""The download cache (extracted datasets, uploads) is kept under this total; the oldest
entries are evicted first. ``$MFSTUDIO_CACHE_MAX_GB`` overrides it."""

EXCERPT_CHARS = 40
"""An error message quotes at most this many characters of a bad value."""

# --------------------------------------------------------------------------- runs

MAX_SNAPSHOTS = 40
"""A run keeps at most this many per-epoch factor snapshots (thinned geometrically, see
:mod:`mfcore.training.snapshots`): enough frames for the 2D-map animation."""

SNAPSHOT_BUDGET_BYTES = 32 * 1024**2
"""And the snapshots of one run take at most this many bytes (float16 factors)."""

MAX_MODEL_PARAMETERS = 64 * 1024**2
"""(users + items) x factors of a model: 64 Mi floats, 256 MB of float32 (ml-32m with 224
factors, or the default synthetic set with 1,024)."""

MAX_CHECKPOINT_BYTES = 512 * 1024**2
"""A run's checkpoint: the model (bounded above) plus the snapshots (bounded above) plus ids
and history stay under this estimate."""

MAX_RUN_WORK = 2 * 10**12
"""epochs x training ratings x factors of one run: about ml-25m with 64 factors for 1,250
epochs, or hours of a 2-core CPU. A run past this is refused before it starts."""


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped quotation of ``value`` for an error message: ``repr`` of at most
    ``limit`` characters, with how much was left out."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def list_excerpt(names: Any, limit: int = 12) -> str:
    """``a, b, c`` for a few names, ``a, b, … (N in all)`` for many; each name excerpted."""
    names = list(names)
    shown = ", ".join(excerpt(n, EXCERPT_CHARS)[1:-1] if len(str(n)) <= EXCERPT_CHARS else excerpt(n)
                      for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, … ({len(names):,} in all)"


def cache_max_bytes() -> int:
    """The download cache's size limit: ``$MFSTUDIO_CACHE_MAX_GB`` or 8 GiB."""
    raw = os.environ.get(ENV_CACHE_MAX_GB, "").strip()
    if not raw:
        return DEFAULT_CACHE_MAX_BYTES
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(ENV_CACHE_MAX_GB, f"{excerpt(raw)} is not a number of gigabytes, e.g. 8") from None
    if not value > 0:
        raise ConfigError(ENV_CACHE_MAX_GB, f"must be a positive number of gigabytes, got {excerpt(raw)}")
    return int(value * 1024**3)


def check_synthetic_size(n_users: int, n_items: int, density: float, n_ratings: int | None = None) -> int:
    """The number of ratings a synthetic spec asks for; ConfigError past :data:`MAX_SYNTHETIC_RATINGS`."""
    n = int(n_ratings) if n_ratings is not None else int(round(float(density) * int(n_users) * int(n_items)))
    if n > MAX_SYNTHETIC_RATINGS:
        field = "n_ratings" if n_ratings is not None else "density"
        raise ConfigError(
            field,
            f"gives {n:,} ratings ({int(n_users):,} users x {int(n_items):,} items); a synthetic set has at "
            f"most {MAX_SYNTHETIC_RATINGS:,} (the ml-25m shape), so lower the density or the number of users "
            "or items")
    return n


# --------------------------------------------------------------------------- run estimate


@dataclass(frozen=True)
class RunEstimate:
    """What a run will cost, estimated before it starts (see :func:`estimate_run`)."""

    work: int
    """epochs x training ratings x factors."""
    parameters: int
    """(users + items) x (factors + 1): the factors and biases."""
    snapshots: int
    """factor snapshots the run keeps (0 when they are off)."""
    checkpoint_bytes: int
    """model (float32) + snapshots (float16) + ids + history, in bytes."""
    memory_bytes: int
    """training memory beyond the data: weights, gradients/optimizer state, snapshots."""

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for every bound this run passes; empty when it fits."""
        out = []
        if self.parameters > MAX_MODEL_PARAMETERS:
            out.append(("n_factors", f"the model would have {self.parameters:,} parameters ((users + items) x "
                                     f"factors), over the limit of {MAX_MODEL_PARAMETERS:,}; use fewer factors"))
        if self.work > MAX_RUN_WORK:
            out.append(("epochs", f"epochs x training ratings x factors is {self.work:.3g}, over the limit of "
                                  f"{MAX_RUN_WORK:.3g} for one run; use fewer epochs or factors"))
        if self.checkpoint_bytes > MAX_CHECKPOINT_BYTES and not out:
            out.append(("n_factors", f"the checkpoint would take {self.checkpoint_bytes / 1e6:,.0f} MB, over the "
                                     f"limit of {MAX_CHECKPOINT_BYTES / 1e6:,.0f} MB; use fewer factors"))
        return out

    def describe(self) -> str:
        """One line for a form: the work, the checkpoint and the memory."""
        return (f"{self.work:.2g} factor updates (epochs x ratings x factors), checkpoint about "
                f"{_mb(self.checkpoint_bytes)} ({self.snapshots} epoch snapshots), training memory about "
                f"{_mb(self.memory_bytes)} beyond the data")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 10e6 else f"{n / 1e6:,.0f} MB"


def estimate_run(n_users: int, n_items: int, n_train: int, model_config: Any, train_config: Any,
                 keep_snapshots: bool = True) -> RunEstimate:
    """Estimate the work, checkpoint size and memory of training ``model_config`` with
    ``train_config`` on ``n_train`` ratings of ``n_users`` x ``n_items``."""
    from mfcore.training.snapshots import snapshot_limit

    k = int(model_config.n_factors)
    epochs = int(train_config.epochs)
    rows = int(n_users) + int(n_items)
    parameters = rows * (k + 1)
    work = epochs * int(n_train) * k
    kept = min(epochs, snapshot_limit(n_users, n_items, k)) if keep_snapshots else 0
    snapshot_bytes = kept * rows * k * 2
    weights = parameters * 4
    ids = rows * 8
    history = epochs * 6 * 8
    checkpoint_bytes = weights + snapshot_bytes + ids + history + 4096
    optimizer = str(getattr(train_config, "optimizer", "sgd"))
    states = {"adam": 3, "adamw": 3, "sparse_adam": 3, "adagrad": 2}.get(optimizer, 2)
    averaged = 1 if getattr(train_config, "average_from", None) is not None else 0
    memory_bytes = weights * (1 + states + averaged) + snapshot_bytes
    return RunEstimate(work=work, parameters=parameters, snapshots=kept, checkpoint_bytes=checkpoint_bytes,
                       memory_bytes=memory_bytes)


def check_run(n_users: int, n_items: int, n_train: int, model_config: Any, train_config: Any,
              keep_snapshots: bool = True) -> RunEstimate:
    """:func:`estimate_run`, raising :class:`ConfigError` (naming the field) when a bound is passed."""
    est = estimate_run(n_users, n_items, n_train, model_config, train_config, keep_snapshots)
    problems = est.problems()
    if problems:
        field, message = problems[0]
        raise ConfigError(field, message)
    return est
