"""Clocks: the API never reads the time itself; the app is given one of these."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Integer Unix seconds now."""

    def now(self) -> int: ...


class WallClock:
    """The system clock (production)."""

    def now(self) -> int:
        return int(time.time())


class ManualClock:
    """A clock that moves only when told to (tests, demos)."""

    def __init__(self, now: int) -> None:
        self._now = now
        self._lock = threading.Lock()

    def now(self) -> int:
        with self._lock:
            return self._now

    def set(self, now: int) -> None:
        with self._lock:
            self._now = now

    def advance(self, seconds: int) -> int:
        with self._lock:
            self._now += seconds
            return self._now
