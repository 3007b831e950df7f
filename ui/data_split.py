"""The split step of the Data page: which splits the chosen dataset allows, the widgets'
starting values, and the words around them. No drawing here.

The committed split lives in ``ui.state.SPLIT_SPEC`` (a spec for
:func:`mfcore.data.splits.make_split`); the widgets under the ``data_split_*`` keys and
``data_seed`` edit it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import streamlit as st

from mfcore.data.dataset import RatingData
from mfcore.data.splits import SplitSpec, parse_split_spec
from mfcore.errors import MFError
from ui.data_sources import seed_widget

# split kind -> (radio label, caption)
SPLIT_KINDS: dict[str, tuple[str, str]] = {
    "random": ("Random", "any ratings, uniformly at random"),
    "user": ("Per user", "the same share of every user's ratings"),
    "temporal": ("Temporal, global", "the latest ratings overall"),
    "temporal-user": ("Temporal, per user", "each user's latest ratings"),
    "kfold": ("K-fold", "one of K random folds"),
    "predefined": ("Official ml-100k split", "u1..u5 (5-fold), ua/ub (10 per user)"),
}
FRACTION_KINDS = ("random", "user", "temporal", "temporal-user")  # kinds set by a test fraction
KIND_KEY = "data_split_kind"
FRACTION_KEY = "data_split_frac"
K_KEY = "data_split_k"
FOLD_KEY = "data_split_fold"
OFFICIAL_KEY = "data_split_official"
SEED_KEY = "data_seed"


@dataclass(frozen=True)
class SplitOptions:
    """What the chosen dataset allows: temporal splits need timestamps, official splits ship
    with the data (ml-100k's u1..u5, ua, ub)."""

    name: str
    has_timestamps: bool
    predefined: tuple[str, ...]

    @classmethod
    def of(cls, data: RatingData) -> SplitOptions:
        return cls(data.name, data.timestamp is not None, tuple(sorted(data.predefined_splits)))

    @property
    def kinds(self) -> list[str]:
        """The kinds the radio offers (temporal ones too: they are shown, then explained)."""
        return [k for k in SPLIT_KINDS if k != "predefined" or self.predefined]

    def unavailable(self, kind: str) -> bool:
        """True for a temporal kind on data without timestamps."""
        return kind.startswith("temporal") and not self.has_timestamps

    def caption(self, kind: str) -> str:
        """The radio caption of ``kind``: what it holds out, or why it cannot."""
        return "unavailable: this dataset has no timestamps" if self.unavailable(kind) else SPLIT_KINDS[kind][1]


def fallback_split(current: str, options: SplitOptions) -> tuple[str, str | None]:
    """The committed split if this dataset supports it, else a random one, with a note saying why."""
    try:
        parsed = parse_split_spec(current)
    except MFError:
        return "random:0.1", None
    if parsed.needs_timestamps and not options.has_timestamps:
        return (f"random:{parsed.fraction:g}",
                f"{options.name} has no timestamps, so the split `{current}` was replaced by a random one.")
    if parsed.kind == "predefined" and parsed.name not in options.predefined:
        return "random:0.2", f"{options.name} has no official split {parsed.name}; using a random 20% split instead."
    return parsed.text, None


def seed_widgets(committed: SplitSpec, options: SplitOptions, seed: int) -> None:
    """Start the split widgets at the committed split (once), and drop a kind this dataset lacks."""
    kinds = options.kinds
    seed_widget(KIND_KEY, committed.kind if committed.kind in kinds else "random")
    if st.session_state[KIND_KEY] not in kinds:  # left from a dataset with other splits
        st.session_state[KIND_KEY] = "random"
    seed_widget(FRACTION_KEY, float(committed.fraction or 0.1))
    seed_widget(K_KEY, int(committed.k or 5))
    seed_widget(FOLD_KEY, int(committed.fold or 1))
    seed_widget(SEED_KEY, int(seed))


def clamp_fold(k: int) -> None:
    """Keep the test fold within 1..K when K shrinks (before the fold input is drawn)."""
    if st.session_state[FOLD_KEY] > k:
        st.session_state[FOLD_KEY] = int(k)


def seed_official(committed: SplitSpec, options: SplitOptions) -> None:
    """Point the official-split selectbox at a split this dataset has (the committed one if it can)."""
    if st.session_state.get(OFFICIAL_KEY) not in options.predefined:
        first = committed.name if committed.name in options.predefined else options.predefined[0]
        st.session_state[OFFICIAL_KEY] = first


def _cold(n: int, noun: str, ratings: int) -> str:
    """'23 cold items (24 test ratings)': the count the metric beside it shows, then their ratings."""
    rated = f"{ratings:,} test rating" + ("" if ratings == 1 else "s")
    return f"{n:,} cold {noun}" + ("" if n == 1 else "s") + f" ({rated})"


def split_sentence(report: Mapping[str, Any], spec: str) -> str:
    """Sizes of the split and its cold-start share, in words."""
    cold = report["cold_user_ratings"] + report["cold_item_ratings"]
    return (
        f"{parse_split_spec(spec).describe().capitalize()}: {report['n_train']:,} train and "
        f"{report['n_test']:,} test ratings ({report['test_fraction']:.1%} held out). "
        + (f"Cold start: {_cold(report['cold_users'], 'user', report['cold_user_ratings'])} and "
           f"{_cold(report['cold_items'], 'item', report['cold_item_ratings'])} appear only in the test set; for "
           "their ratings a model can only guess the mean plus the bias it knows."
           if cold else "Every test user and item also appears in training (no cold start).")
    )
