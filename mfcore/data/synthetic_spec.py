"""Spec strings for the synthetic dataset: ``synthetic`` or ``synthetic:knob=value,...``.

One string names one synthetic dataset, so the job runner, the CLI and the app's caches
can all load and key it the same way.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from mfcore.data.synthetic import make_synthetic
from mfcore.errors import ConfigError


# The knobs a synthetic spec may set, in their canonical order, with their types.
SYNTHETIC_KNOBS: dict[str, type] = {
    "n_users": int,
    "n_items": int,
    "density": float,
    "rank": int,
    "noise": float,
    "popularity_skew": float,
    "seed": int,
}
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    name: inspect.signature(make_synthetic).parameters[name].default for name in SYNTHETIC_KNOBS
}


def _format_knob(name: str, value: Any) -> str:
    kind = SYNTHETIC_KNOBS[name]
    if kind is int:
        if isinstance(value, bool) or float(value) != int(value):
            raise ConfigError(name, f"must be an integer, got {value!r}")
        return str(int(value))
    return repr(float(value))  # shortest text that reads back as the same float


def synthetic_spec(params: Mapping[str, Any] | None) -> str:
    """The spec string of a synthetic dataset with knobs ``params`` (missing = default).

    All knobs at their defaults give plain ``"synthetic"``; otherwise every knob is
    written, in the order of :data:`SYNTHETIC_KNOBS`, so one dataset has one spec::

        synthetic:n_users=1000,n_items=1500,density=0.05,rank=8,noise=0.3,popularity_skew=1.0,seed=0
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(SYNTHETIC_KNOBS))
    if unknown:
        raise ConfigError("synthetic", f"unknown knob(s) {', '.join(unknown)}; use {', '.join(SYNTHETIC_KNOBS)}")
    full = {name: params.get(name, default) for name, default in SYNTHETIC_DEFAULTS.items()}
    text = {name: _format_knob(name, value) for name, value in full.items()}
    if all(text[n] == _format_knob(n, SYNTHETIC_DEFAULTS[n]) for n in SYNTHETIC_KNOBS):
        return "synthetic"
    return "synthetic:" + ",".join(f"{name}={text[name]}" for name in SYNTHETIC_KNOBS)


def is_synthetic(spec: str) -> bool:
    return spec.strip().lower().partition(":")[0] == "synthetic"


def parse_synthetic_spec(spec: str) -> dict[str, Any]:
    """The knobs of a synthetic spec, all of them (defaults filled in); raises ConfigError."""
    head, _, rest = spec.strip().partition(":")
    if head.lower() != "synthetic":
        raise ConfigError("dataset", f"{spec!r} is not a synthetic spec; expected synthetic[:knob=value,...]")
    params = dict(SYNTHETIC_DEFAULTS)
    for part in filter(None, (p.strip() for p in rest.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in SYNTHETIC_KNOBS:
            raise ConfigError(
                "dataset", f"{spec!r}: {part!r} is not knob=value with a knob among {', '.join(SYNTHETIC_KNOBS)}"
            )
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, f"{value.strip()!r} is not a number (in {spec!r})") from None
        if SYNTHETIC_KNOBS[name] is int:
            if not number.is_integer():
                raise ConfigError(name, f"must be an integer, got {value.strip()!r} (in {spec!r})")
            params[name] = int(number)
        else:
            params[name] = number
    return params
