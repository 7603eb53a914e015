"""Per-owner rate limits: token buckets, bounded in number so many clients cannot grow them."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from serve.errors import ApiError


class RateLimiter:
    """Token buckets per owner: ``rate`` requests per second on average, ``burst`` at once.

    Bounded: at most ``max_owners`` buckets are kept (least recently used dropped; a dropped
    owner starts again with a full bucket), so many clients cannot grow it without bound.
    """

    def __init__(self, rate: float, burst: float, clock=time.monotonic, max_owners: int = 10_000):
        if rate > 0 and burst < 1:
            raise ValueError(f"a rate limit needs a burst of at least 1 request, got {burst}")
        self.rate, self.burst, self.clock, self.max_owners = rate, burst, clock, max_owners
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, owner: str) -> float:
        """Take one token for ``owner``: 0.0 when granted, else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.pop(owner, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[owner] = (tokens - 1 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_owners:
                self._buckets.popitem(last=False)
            return wait


def take(limiter: RateLimiter, owner: str) -> None:
    """Take a token for ``owner``; ApiError 429 with ``Retry-After`` when its bucket is empty."""
    wait = limiter.acquire(owner)
    if wait > 0:
        raise ApiError(
            429, "too many requests", f"retry after {math.ceil(wait)} s", headers={"Retry-After": str(math.ceil(wait))}
        )
