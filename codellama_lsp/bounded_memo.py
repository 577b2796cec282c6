"""A least-recently-used memo bounded by the bytes of what it holds, not by its entry count.

A count bound says nothing of memory when entries range from a short line to a whole minified
file: every memo of document text is bounded here, by an estimate of each entry's size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

ENTRY_BYTES = 120
"""An entry's cost beyond its key and value: the dict slot and the order links."""


class BoundedMemo(Generic[K, V]):
    """Entries by key, the least recently used dropped first once they weigh over `max_bytes`.

    `size` estimates an entry's bytes (its key's and value's); an entry heavier than the whole
    bound is not kept, rather than emptying the memo for it. Safe to share between threads.
    """

    def __init__(self, max_bytes: int, size: Callable[[K, V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            return found[0]

    def put(self, key: K, value: V) -> None:
        cost = self._size(key, value) + ENTRY_BYTES
        with self._lock:
            self._drop(key)
            if cost > self.max_bytes:
                return
            self._entries[key] = (value, cost)
            self.nbytes += cost
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.nbytes -= dropped

    def pop(self, key: K) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: K) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self.nbytes -= found[1]
