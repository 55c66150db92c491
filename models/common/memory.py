"""What the process remembers between calls: every cache and every learnt refusal, one kind of store.

The SDK builds a model object per request, so anything a later call should know lives at
module level in a `Memory`: a map whose entries each live `lifetime` seconds from when
they were stored, of which at most `max_entries` are kept (the least recently used go
first). `forget_everything()` empties them all (the tests call it between tests).

What the plugin learns from a server it keeps for `LEARNT_FOR`, 300 s: the model's
description, the tools it refuses, the prompts it lacks. A model can be relaunched under
the same UID with other settings (context size, abilities, engine, family), so whatever
is learnt about it is learnt again within five minutes, and a refusal is learnt at the
first one. Learning again costs one describe request, or one rejected request answered
before any inference, per model every five minutes. `MAX_REMEMBERED` (1,024 models per
process, a few MB at most) keeps a Dify with many tenants and servers from growing
without end. Pooled HTTP sessions are not something learnt: they are kept as long as they
are used, the 64 most recently used (see transport.py). A pure function's memo (the format
strings of text_embedding/vectors.py) is no memory: its values never go stale.
"""

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

LEARNT_FOR = 300.0
MAX_REMEMBERED = 1024
FOREVER = math.inf

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_every_memory: list["Memory"] = []


class Memory(Generic[K, V]):
    def __init__(
        self, lifetime: float = LEARNT_FOR, max_entries: int = MAX_REMEMBERED, on_drop: Callable[[V], None] | None = None
    ) -> None:
        self.lifetime = lifetime
        self.max_entries = max_entries
        self._on_drop = on_drop
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        _every_memory.append(self)

    def get(self, key: K) -> V | None:
        """The value stored under `key`, or None when there is none or it outlived its lifetime."""
        with self._lock:
            return self._fresh(key)

    def __contains__(self, key: K) -> bool:
        return self.get(key) is not None

    def put(self, key: K, value: V) -> V:
        """Stores `value` for a full lifetime from now."""
        with self._lock:
            return self._store(key, value)

    def add(self, key: K, value: V) -> bool:
        """Stores `value` unless a live one is there already: whether it did."""
        with self._lock:
            if self._fresh(key) is not None:
                return False
            self._store(key, value)
            return True

    def get_or_put(self, key: K, make: Callable[[], V]) -> V:
        """The value under `key`, or else `make()`'s, stored: one step, so every caller gets the same value."""
        with self._lock:
            value = self._fresh(key)
            return self._store(key, make()) if value is None else value

    def reset(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._drop(key)

    def _fresh(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def _store(self, key: K, value: V) -> V:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + self.lifetime, value)
        while len(self._entries) > self.max_entries:  # the least recently used go first
            self._drop(next(iter(self._entries)))
        return value

    def _drop(self, key: K) -> None:
        _, value = self._entries.pop(key)
        if self._on_drop is not None:
            self._on_drop(value)


def forget_everything() -> None:
    """Empties every memory of the process."""
    for memory in _every_memory:
        memory.reset()
