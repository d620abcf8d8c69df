"""LRU cache of text K/V keyed by token ids: a prompt that does not change is encoded once, across requests."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from .stacks import TextKV


class TextKVCache:
    """Token ids -> ``TextKV``. Pinned entries (the unconditional prompt) are never evicted.

    Args:
        encode: computes the K/V of a token-id tuple (the text tower).
        capacity: unpinned entries kept (0 disables caching of task prompts).

    """

    def __init__(self, encode: Callable[[tuple[int, ...]], TextKV], capacity: int = 8) -> None:
        self._encode = encode
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], TextKV] = OrderedDict()
        self._pinned: dict[tuple[int, ...], TextKV] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, token_ids: tuple[int, ...], *, pin: bool = False) -> TextKV:
        """The cached K/V for ``token_ids``, computing (and storing) it on a miss."""
        key = tuple(token_ids)
        with self._lock:
            if key in self._pinned:
                self.hits += 1
                return self._pinned[key]
            if key in self._entries:
                self.hits += 1
                self._entries.move_to_end(key)
                return self._entries[key]
            self.misses += 1
        value = self._encode(key)
        with self._lock:
            if pin:
                self._pinned[key] = value
            elif self.capacity > 0:
                self._entries[key] = value
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries) + len(self._pinned)

    def clear(self) -> None:
        """Drop every entry, pinned ones too, and reset the hit/miss counters."""
        with self._lock:
            self._entries.clear()
            self._pinned.clear()
            self.hits = self.misses = 0
