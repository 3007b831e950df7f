"""A round-robin queue across owners.

Runs are taken one per owner in turn, owners in the order they first queued: a student
with three waiting runs does not hold up the next student's first. Not thread-safe on
its own; the job runner guards it with its lock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Iterator

__all__ = ["FairQueue"]


class FairQueue:
    """Items (job ids) queued per owner; :meth:`pop` serves owners in rotation."""

    def __init__(self) -> None:
        self._by_owner: OrderedDict[str, deque[str]] = OrderedDict()
        self._owner_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._owner_of)

    def __contains__(self, item: str) -> bool:
        return item in self._owner_of

    def __iter__(self) -> Iterator[str]:
        return iter(self.order())

    def push(self, owner: str, item: str) -> None:
        if item in self._owner_of:
            raise ValueError(f"{item!r} is already queued")
        self._by_owner.setdefault(owner, deque()).append(item)
        self._owner_of[item] = owner

    def pop(self) -> str:
        """The next item: the first owner in the rotation gives one, then moves to the back."""
        if not self._owner_of:
            raise IndexError("pop from an empty FairQueue")
        owner, items = next(iter(self._by_owner.items()))
        item = items.popleft()
        del self._owner_of[item]
        self._by_owner.pop(owner)
        if items:
            self._by_owner[owner] = items  # back of the rotation
        return item

    def remove(self, item: str) -> bool:
        owner = self._owner_of.pop(item, None)
        if owner is None:
            return False
        items = self._by_owner[owner]
        items.remove(item)
        if not items:
            del self._by_owner[owner]
        return True

    def order(self) -> list[str]:
        """Every item in the order :meth:`pop` would return them (nothing changes)."""
        queues = [list(q) for q in self._by_owner.values()]
        out: list[str] = []
        depth = 0
        while len(out) < len(self._owner_of):
            for q in queues:
                if depth < len(q):
                    out.append(q[depth])
            depth += 1
        return out

    def position(self, item: str) -> int | None:
        """1 for the next item to start, 2 behind it ...; None when not queued."""
        if item not in self._owner_of:
            return None
        return self.order().index(item) + 1

    def clear(self) -> list[str]:
        items = self.order()
        self._by_owner.clear()
        self._owner_of.clear()
        return items
