"""A clean stop: count the requests in flight, refuse new ones once draining, wait for the rest."""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager


class InFlight:
    """The requests in flight through one guard, and whether it drains (one per ingress replica)."""

    def __init__(self):
        self.count = 0
        self.draining = False

    @contextmanager
    def one(self):
        """Count one request while the block runs."""
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1

    async def drain(self, timeout_s: float, clock=time.monotonic) -> int:
        """Refuse new requests from now on and wait up to ``timeout_s`` for those in flight;
        returns how many were still running."""
        self.draining = True
        deadline = clock() + timeout_s
        while self.count and clock() < deadline:
            await asyncio.sleep(0.05)
        return self.count
