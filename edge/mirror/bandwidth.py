"""A token bucket: at most ``rate`` bytes per second, with bursts of up to one second's worth.

``acquire`` waits for its tokens (the global cap: everything waits); ``try_acquire`` never
waits (a per-topic cap: the mirror ships other topics meanwhile)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_bytes_per_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate_bytes_per_s <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate_bytes_per_s)
        self.capacity = self.rate
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.last = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def acquire(self, n: int) -> float:
        """Take ``n`` bytes' worth of tokens, sleeping as long as needed; returns the wait.
        A record larger than the bucket may drive it negative (paid back by waiting)."""
        self._refill()
        self.tokens -= n
        if self.tokens >= 0:
            return 0.0
        wait = -self.tokens / self.rate
        self.sleep(wait)
        self._refill()
        return wait

    def try_acquire(self, n: int) -> bool:
        """Take ``n`` bytes' worth of tokens if they are there now; a record larger than the
        bucket goes when the bucket is full (then drives it negative, paid back by waiting)."""
        self._refill()
        if self.tokens >= n or self.tokens >= self.capacity:
            self.tokens -= n
            return True
        return False
