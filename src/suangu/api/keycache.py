"""A small thread-safe cache of verified API keys (see :mod:`suangu.api.auth`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")

#: How long a verified key is trusted without asking the database again, seconds of the app's
#: clock, on routes that read.
KEY_CACHE_TTL_S = 2
#: The same on routes whose write checks in its own transaction that the key is active
#: (``suangu.api.idempotency.run_write``, ``suangu.api.orderbatch``): the cache only spares
#: them the lookup of the member, so it may be trusted longer.
WRITE_KEY_CACHE_TTL_S = 300
#: Most keys a cache holds (the least recently used go first).
KEY_CACHE_SIZE = 10_000


class KeyCache(Generic[T]):
    """Values (the caller behind a key) by the sha256 of the key's token, for ``ttl_s``
    (or the ``ttl_s`` a lookup asks for, which may be longer: entries are kept up to
    ``keep_s``).

    :meth:`forget` (on revocation) drops a key and bumps a generation counter; a verification
    stores its result with :meth:`put` only if no key was forgotten since it began
    (:meth:`generation`, read before asking the database), so a revocation racing with a
    verification cannot leave the revoked key cached.
    """

    def __init__(
        self,
        ttl_s: int = KEY_CACHE_TTL_S,
        size: int = KEY_CACHE_SIZE,
        keep_s: int = WRITE_KEY_CACHE_TTL_S,
    ) -> None:
        self.ttl_s = ttl_s
        self.keep_s = max(keep_s, ttl_s)
        self.size = size
        self._items: OrderedDict[str, tuple[T, str, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0

    def generation(self) -> int:
        return self._generation

    def get(self, digest: str, now: int, ttl_s: int | None = None) -> T | None:
        """The value if it was verified less than ``ttl_s`` (default: the cache's) ago."""
        ttl = self.ttl_s if ttl_s is None else min(ttl_s, self.keep_s)
        with self._lock:
            item = self._items.get(digest)
            if item is None:
                return None
            value, _, added = item
            if now >= added + self.keep_s:
                del self._items[digest]
                return None
            if now >= added + ttl:
                return None
            self._items.move_to_end(digest)
            return value

    def put(self, digest: str, value: T, key_id: str, now: int, generation: int) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._items[digest] = (value, key_id, now)
            self._items.move_to_end(digest)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget(self, key_id: str) -> None:
        """Drop the key ``key_id`` and refuse the verifications under way."""
        with self._lock:
            self._generation += 1
            for digest in [d for d, (_, kid, _) in self._items.items() if kid == key_id]:
                del self._items[digest]

    def __len__(self) -> int:
        return len(self._items)
