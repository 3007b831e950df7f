"""Sweeps: one or two hyperparameters varied over a base configuration, as ordinary runs.

    axis = parse_axis("n_factors", "2..256 doubling")      # (2, 4, 8, ..., 256), log x
    axis = parse_axis("l2", "0.001..1 log 7")              # 7 log-spaced values
    plan = make_plan(base_model, base_train, [axis], dataset="ml-100k", split="random:0.1", seed=0, owner=oid)
    top_up(plan, runner, book)                             # submits as many points as the owner may queue
    frame = results_frame(plan, records_and_histories)     # final / best-epoch test RMSE, train RMSE per point

A sweep is a group of ordinary runs sharing a ``sweep_id`` (``RunRequest.sweep_id``), so
each point is stored, inspectable and follows the runner's rules: the fair queue
interleaves owners, and the per-owner bound (``JobRunner.max_queued_per_owner``) counts
sweep points like any run. A sweep therefore submits only as many points as its owner
has free slots; the rest wait in the sweep's plan (a small JSON file per sweep under the
runs folder, :class:`SweepBook`) and are submitted by :func:`top_up` as earlier points
end. The plan also records the varied axes, so a chart can be drawn again after a reload.

Sizes are bounded: a sweep of more than :func:`max_sweep_runs` points
(``$MFSTUDIO_MAX_SWEEP_RUNS``, default 24) is refused with :class:`SweepTooLargeError`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig, config_from_dict, config_to_dict
from mfcore.errors import ConfigError, MFError, RunnerError

__all__ = [
    "PARAMETERS", "MAX_SWEEP_ENV", "DEFAULT_MAX_SWEEP_RUNS", "SweepAxis", "SweepPoint", "SweepPlan",
    "SweepTooLargeError", "SweepBook", "parse_values", "parse_axis", "max_sweep_runs", "expand", "make_plan",
    "top_up", "results_frame", "best_point", "point_label",
]

MAX_SWEEP_ENV = "MFSTUDIO_MAX_SWEEP_RUNS"
DEFAULT_MAX_SWEEP_RUNS = 24
MAX_VALUES_PER_AXIS = 64  # a range that expands to more values than this is a typo, whatever the limit

# What can be varied: parameter -> (config it belongs to, integer?, label for charts).
PARAMETERS: dict[str, tuple[str, bool, str]] = {
    "n_factors": ("model", True, "factors k"),
    "l2": ("train", False, "L2"),
    "lr": ("train", False, "learning rate"),
    "epochs": ("train", True, "epochs"),
}


class SweepTooLargeError(ConfigError):
    """A sweep with more points than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            "sweep",
            f"this sweep has {size} points, more than the limit of {limit} runs per sweep; use fewer values "
            f"(a coarser range) or ask the server's admin to raise ${MAX_SWEEP_ENV}",
        )


# ---------------------------------------------------------------------------- values
@dataclass(frozen=True)
class SweepAxis:
    """One varied hyperparameter and its values, in order."""

    name: str
    """A key of :data:`PARAMETERS`."""
    values: tuple[float, ...]
    log: bool = False
    """Whether the values are spaced on a log scale (the chart's x axis then is too)."""

    @property
    def label(self) -> str:
        return PARAMETERS[self.name][2]


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:\.\.|\bto\b)\s*({_NUMBER})\s*(.*?)\s*$", re.IGNORECASE)


def _number(text: str, field_name: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(field_name, f"{text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(field_name, f"{text.strip()!r} is not a finite number")
    return value


def _count(text: str, field_name: str) -> int:
    n = _number(text, field_name)
    if n != int(n) or not 2 <= n <= MAX_VALUES_PER_AXIS:
        raise ConfigError(field_name, f"the number of values must be a whole number from 2 to {MAX_VALUES_PER_AXIS}, "
                                      f"got {text.strip()!r}")
    return int(n)


def parse_values(text: str, field_name: str = "values") -> tuple[tuple[float, ...], bool]:
    """Values from a list or a range; returns ``(values, log)``.

    Grammar (case-insensitive)::

        "8, 16, 32"            a list (log when all positive and the largest is 10x the smallest or more)
        "2..256 doubling"      2, 4, 8, ..., 256 (also "x2", "times 3": any factor > 1); log
        "0.001..1 log 7"       7 values spaced evenly on a log scale, ends included; log
        "10..50 lin 5"         5 evenly spaced values, ends included (also "10..50 5"); linear
        "10..50 step 10"       10, 20, ..., 50; linear

    Raises ConfigError (field ``field_name``) naming what could not be read.
    """
    text = (text or "").strip()
    if not text:
        raise ConfigError(field_name, "give values, e.g. 8, 16, 32 or 2..256 doubling or 0.001..1 log 7")
    m = _RANGE.match(text) if ".." in text or re.search(r"\bto\b", text, re.IGNORECASE) else None
    if m is None:
        parts = [p for p in re.split(r"[,;\s]+", text) if p.strip()]
        values = [_number(p, field_name) for p in parts]
        if len(values) == 0:
            raise ConfigError(field_name, f"no values in {text!r}")
        if len(values) > MAX_VALUES_PER_AXIS:
            raise ConfigError(field_name, f"at most {MAX_VALUES_PER_AXIS} values, got {len(values)}")
        positive = all(v > 0 for v in values)
        log = positive and len(values) > 2 and max(values) / min(values) >= 10
        return tuple(values), log
    lo, hi, rest = _number(m.group(1), field_name), _number(m.group(2), field_name), m.group(3).strip().lower()
    if hi < lo:
        lo, hi = hi, lo
    words = rest.replace("×", "x ").split()
    if not words:
        raise ConfigError(field_name, f"say how to fill {lo:g}..{hi:g}: 'doubling', 'log 7', 'lin 5' or 'step 10'")
    kind, arg = words[0], (words[1] if len(words) > 1 else "")
    if kind.startswith("x") and len(kind) > 1 and not arg:
        kind, arg = "x", kind[1:]
    if kind in ("doubling", "double", "x", "times"):
        factor = 2.0 if kind.startswith("doubl") else _number(arg, field_name)
        if factor <= 1:
            raise ConfigError(field_name, f"the factor must be above 1, got {factor:g}")
        if lo <= 0:
            raise ConfigError(field_name, f"a multiplying range must start above 0, got {lo:g}")
        values, v = [], lo
        while v <= hi * (1 + 1e-9):
            values.append(v)
            v *= factor
            if len(values) > MAX_VALUES_PER_AXIS:
                raise ConfigError(field_name, f"{text!r} gives more than {MAX_VALUES_PER_AXIS} values")
        return tuple(values), True
    if kind in ("log", "logspace", "geom"):
        if lo <= 0:
            raise ConfigError(field_name, f"a log range must start above 0, got {lo:g}")
        n = _count(arg, field_name)
        return tuple(float(v) for v in np.geomspace(lo, hi, n)), True
    if kind in ("step", "by"):
        step = _number(arg, field_name)
        if step <= 0:
            raise ConfigError(field_name, f"the step must be above 0, got {step:g}")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        if n > MAX_VALUES_PER_AXIS:
            raise ConfigError(field_name, f"{text!r} gives {n} values, more than {MAX_VALUES_PER_AXIS}")
        return tuple(lo + k * step for k in range(n)), False
    if kind in ("lin", "linear", "linspace") or re.fullmatch(r"\d+", kind):
        n = _count(arg if kind in ("lin", "linear", "linspace") else kind, field_name)
        return tuple(float(v) for v in np.linspace(lo, hi, n)), False
    raise ConfigError(field_name, f"unknown range kind {kind!r}; use 'doubling', 'x3', 'log 7', 'lin 5' or 'step 10'")


def parse_axis(name: str, text: str) -> SweepAxis:
    """A :class:`SweepAxis` for parameter ``name`` from ``text`` (see :func:`parse_values`).

    Integer parameters (factors, epochs) are rounded and de-duplicated; every value is
    checked against the parameter's own range when the configs are built (:func:`expand`).
    """
    if name not in PARAMETERS:
        raise ConfigError("sweep", f"cannot sweep {name!r}; choose one of {', '.join(PARAMETERS)}")
    values, log = parse_values(text, name)
    if PARAMETERS[name][1]:
        rounded: list[float] = []
        for v in values:
            r = float(int(round(v)))
            if r not in rounded:
                rounded.append(r)
        values = tuple(rounded)
    else:
        values = tuple(dict.fromkeys(float(f"{v:.6g}") for v in values))
    return SweepAxis(name, values, log)


def max_sweep_runs() -> int:
    """``$MFSTUDIO_MAX_SWEEP_RUNS`` (a whole number >= 1), else :data:`DEFAULT_MAX_SWEEP_RUNS`."""
    env = os.environ.get(MAX_SWEEP_ENV, "").strip()
    if not env:
        return DEFAULT_MAX_SWEEP_RUNS
    if not env.isdigit() or int(env) < 1:
        raise ConfigError(MAX_SWEEP_ENV, f"must be a whole number of at least 1, got {env!r}")
    return int(env)


# ---------------------------------------------------------------------------- expanding
def _with(model: ModelConfig, train: TrainConfig, name: str, value: float) -> tuple[ModelConfig, TrainConfig]:
    where, integer, _ = PARAMETERS[name]
    v: Any = int(value) if integer else float(value)
    if where == "model":
        return replace(model, **{name: v}), train
    changes: dict[str, Any] = {name: v}
    if name == "epochs" and train.average_from is not None and train.average_from > v:
        # weight averaging from an epoch the run never reaches: keep the same share of the run averaged
        changes["average_from"] = max(1, int(round(v * train.average_from / max(1, train.epochs))))
    return model, replace(train, **changes)


def expand(
    model: ModelConfig, train: TrainConfig, axes: Sequence[SweepAxis], limit: int | None = None,
) -> list[tuple[dict[str, float], ModelConfig, TrainConfig]]:
    """Every combination of the axes' values over the base configs: ``(values, model, train)``.

    The first axis varies slowest. Raises :class:`SweepTooLargeError` when there are more
    points than ``limit`` (default :func:`max_sweep_runs`), ConfigError when an axis is
    repeated, empty, or a value is refused by the configs (the message names the value).
    """
    if not 1 <= len(axes) <= 2:
        raise ConfigError("sweep", f"vary one or two hyperparameters, got {len(axes)}")
    if len({a.name for a in axes}) != len(axes):
        raise ConfigError("sweep", "the two varied hyperparameters must differ")
    for a in axes:
        if not a.values:
            raise ConfigError(a.name, "no values to sweep")
    size = math.prod(len(a.values) for a in axes)
    limit = max_sweep_runs() if limit is None else limit
    if size > limit:
        raise SweepTooLargeError(size, limit)
    points = []
    for combo in product(*(a.values for a in axes)):
        m, t = model, train
        values = {}
        for axis, value in zip(axes, combo):
            try:
                m, t = _with(m, t, axis.name, value)
            except ConfigError as exc:
                raise ConfigError(axis.name, f"{axis.label} = {value:g} is refused: {exc}") from None
            values[axis.name] = value
        points.append((values, m, t))
    return points


# ---------------------------------------------------------------------------- plans
@dataclass
class SweepPoint:
    values: dict[str, float]
    run_id: str | None = None
    """None while the point waits for a free slot of its owner."""


@dataclass
class SweepPlan:
    """A sweep: what is varied, over which base, on which data; and its points' runs."""

    sweep_id: str
    owner: str
    owner_name: str
    dataset: str
    split: str
    seed: int
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    runtime: dict[str, Any]
    axes: list[SweepAxis]
    points: list[SweepPoint]
    created_at: float = field(default_factory=time.time)
    label: str = ""

    @property
    def pending(self) -> list[SweepPoint]:
        return [p for p in self.points if p.run_id is None]

    @property
    def run_ids(self) -> list[str]:
        return [p.run_id for p in self.points if p.run_id]

    def describe(self) -> str:
        """"factors k x L2 on ml-100k (6 points)" for lists and headers."""
        what = " × ".join(a.label for a in self.axes)
        return f"{what} on {self.dataset} · {self.split} ({len(self.points)} points)"

    def request(self, point: SweepPoint):
        """The :class:`~mfcore.runs.runner.RunRequest` of one point."""
        from mfcore.runs.runner import RunRequest

        model = config_from_dict(ModelConfig, self.model_config)
        train = config_from_dict(TrainConfig, self.train_config)
        for axis in self.axes:
            model, train = _with(model, train, axis.name, point.values[axis.name])
        return RunRequest(
            dataset=self.dataset, split=self.split, seed=self.seed, model_config=model, train_config=train,
            runtime=config_from_dict(RuntimeOptions, self.runtime), owner=self.owner, owner_name=self.owner_name,
            label=point_label(self, point), sweep_id=self.sweep_id,
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["axes"] = [{"name": a.name, "values": list(a.values), "log": a.log} for a in self.axes]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SweepPlan":
        data = dict(data)
        data["axes"] = [SweepAxis(a["name"], tuple(float(v) for v in a["values"]), bool(a.get("log"))) for a in data["axes"]]
        data["points"] = [SweepPoint({k: float(v) for k, v in p["values"].items()}, p.get("run_id"))
                          for p in data["points"]]
        return cls(**data)


def point_label(plan: SweepPlan, point: SweepPoint) -> str:
    """"sweep 3f2a: k=8 l2=0.01" — the run's label in the runs list."""
    parts = []
    for axis in plan.axes:
        v = point.values[axis.name]
        short = {"n_factors": "k"}.get(axis.name, axis.name)
        parts.append(f"{short}={int(v) if PARAMETERS[axis.name][1] else f'{v:g}'}")
    return f"sweep {plan.sweep_id[:6]}: " + " ".join(parts)


def make_plan(
    model: ModelConfig, train: TrainConfig, axes: Sequence[SweepAxis], *, dataset: str, split: str, seed: int,
    runtime: RuntimeOptions | None = None, owner: str = "", owner_name: str = "", limit: int | None = None,
    label: str = "",
) -> SweepPlan:
    """A new sweep (nothing submitted yet): every point's configs are checked first."""
    points = expand(model, train, axes, limit)
    return SweepPlan(
        sweep_id=secrets.token_hex(6), owner=owner, owner_name=owner_name, dataset=dataset, split=split,
        seed=int(seed), model_config=config_to_dict(model), train_config=config_to_dict(train),
        runtime=config_to_dict(runtime or RuntimeOptions()), axes=list(axes),
        points=[SweepPoint(values) for values, _, _ in points], label=label,
    )


class SweepBook:
    """Sweep plans as small JSON files in ``<runs folder>/sweeps`` (one per sweep)."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.folder = Path(runs_dir) / "sweeps"

    def _path(self, sweep_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{6,32}", sweep_id or ""):
            raise RunnerError(f"{sweep_id!r} is not a sweep id")
        return self.folder / f"{sweep_id}.json"

    def save(self, plan: SweepPlan) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(plan.sweep_id)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.folder)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(plan.to_json(), fh)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load(self, sweep_id: str) -> SweepPlan:
        path = self._path(sweep_id)
        try:
            return SweepPlan.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise RunnerError(f"no sweep {sweep_id}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise RunnerError(f"sweep {sweep_id}: its plan file {path} is damaged ({exc})") from None

    def list(self, owner: str | None = None) -> list[SweepPlan]:
        """Plans, newest first (optionally one owner's); damaged files are left out."""
        plans = []
        for path in self.folder.glob("*.json") if self.folder.is_dir() else ():
            try:
                plan = self.load(path.stem)
            except MFError:
                continue
            if owner is None or plan.owner == owner:
                plans.append(plan)
        return sorted(plans, key=lambda p: p.created_at, reverse=True)


log = logging.getLogger(__name__)
_top_up_lock = threading.Lock()


def free_slots(runner, owner: str) -> int | None:
    """How many more runs ``owner`` may queue now (None = no bound)."""
    limit = getattr(runner, "max_queued_per_owner", None)
    if limit is None:
        return None
    return max(0, int(limit) - runner.store.count_active(owner))


def top_up(plan: SweepPlan, runner, book: SweepBook | None = None) -> int:
    """Submit the plan's waiting points while its owner has free queue slots; returns how many.

    A point is submitted as an ordinary run of the owner (the per-owner bound and the fair
    queue apply); the plan is saved after each submission, so a reload or another tab
    never submits a point twice (one lock per server process).
    """
    submitted = 0
    with _top_up_lock:
        if book is not None:
            try:
                plan.points = book.load(plan.sweep_id).points  # another tab may have submitted some
            except MFError:
                pass
        for point in plan.points:
            if point.run_id is not None:
                continue
            free = free_slots(runner, plan.owner)
            if free is not None and free <= 0:
                break
            try:
                point.run_id = runner.submit(plan.request(point))
            except RunnerError as exc:
                if "waiting" in str(exc):  # the owner's queue share is used up: later
                    break
                raise
            submitted += 1
            if book is not None:
                book.save(plan)
    return submitted


def top_up_all(runner) -> int:
    """Submit every sweep's waiting points whose owner has free queue slots; returns how many.

    The job runner calls this after each job ends (``runner.on_job_end``), so a sweep goes
    on when its owner has closed the Sweeps page.
    """
    book = SweepBook(runner.store.runs_dir)
    submitted = 0
    for plan in book.list():
        if plan.pending:
            try:
                submitted += top_up(plan, runner, book)
            except MFError as exc:
                log.warning("sweep %s: waiting points not submitted: %s", plan.sweep_id, exc)
    return submitted


def cancel_pending(plan: SweepPlan, book: SweepBook | None = None) -> int:
    """Drop the points not submitted yet (the plan keeps only the submitted ones); returns how many."""
    with _top_up_lock:
        dropped = len(plan.pending)
        plan.points = [p for p in plan.points if p.run_id is not None]
        if book is not None:
            book.save(plan)
    return dropped


# ---------------------------------------------------------------------------- results
RESULT_COLUMNS = ("point", "run_id", "status", "test_rmse", "best_test_rmse", "best_epoch", "train_rmse",
                  "epochs_done")


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def results_frame(plan: SweepPlan, runs: Mapping[str, tuple[Any, pd.DataFrame | None]]) -> pd.DataFrame:
    """One row per point: its values, run, status, final and best-epoch test RMSE, train RMSE.

    ``runs`` maps run id -> ``(record, history)`` (a RunRecord or RunSnapshot, and its
    per-epoch frame). ``test_rmse`` is the final metric of a finished run, else the last
    epoch's; ``train_rmse`` the square root of the last epoch's train loss; waiting points
    have status ``waiting`` and no numbers.
    """
    rows = []
    for n, point in enumerate(plan.points):
        row: dict[str, Any] = {"point": n, **{a.name: point.values[a.name] for a in plan.axes},
                               "run_id": point.run_id, "status": "waiting", "test_rmse": None,
                               "best_test_rmse": None, "best_epoch": None, "train_rmse": None, "epochs_done": 0}
        got = runs.get(point.run_id) if point.run_id else None
        if got is not None:
            record, history = got
            row["status"] = record.status
            h = history if history is not None else pd.DataFrame()
            row["epochs_done"] = int(len(h))
            test = [(_finite(v), int(e)) for v, e in zip(h.get("test_rmse", []), h.get("epoch", []))]
            test = [(v, e) for v, e in test if v is not None]
            if test:
                best = min(test)
                row["best_test_rmse"], row["best_epoch"] = best
                row["test_rmse"] = test[-1][0]
            final = _finite((getattr(record, "metrics", None) or {}).get("test_rmse"))
            if final is not None:
                row["test_rmse"] = final
            losses = [_finite(v) for v in h.get("train_loss", [])]
            losses = [v for v in losses if v is not None and v >= 0]
            if losses:
                row["train_rmse"] = math.sqrt(losses[-1])
        rows.append(row)
    frame = pd.DataFrame(rows)
    for col in ("test_rmse", "best_test_rmse", "train_rmse"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def best_point(frame: pd.DataFrame) -> int | None:
    """Index (``point``) of the ended point with the lowest final test RMSE, None when none has ended."""
    ended = frame[frame["status"].isin(("finished", "stopped")) & frame["test_rmse"].notna()]
    if not len(ended):
        return None
    return int(ended.loc[ended["test_rmse"].idxmin(), "point"])


def baselines_of(records: Iterable[Any]) -> dict[str, float]:
    """The baselines of the first run that has them (all points share data and split)."""
    for r in records:
        b = getattr(r, "baselines", None) or {}
        if b:
            return dict(b)
    return {}
