"""The fused posterior of a session, kept per session version in each Fusion replica.

Fusing is the costly step after the network (label carrying is a geodesic pass per labelled
region), and every round, PATCH, refine and heat-map PNG of a session asked for the same
posterior again. The ingress names what a posterior depends on (:func:`posterior_key`: the
session, its rounds, its labels and the settings that shape the fusion) and the Fusion replica
keeps the last :data:`MAX_ENTRIES` posteriors by that key, at most :data:`MAX_BYTES` of them: a
repeated output costs a lookup. A miss (another replica, an evicted entry) fuses again, so the
cache never changes an answer, only its cost.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable

from dugray.nig import NIG

MAX_ENTRIES = 32
"""Posteriors one Fusion replica keeps (4 MiB each at 512x512)."""
MAX_BYTES = 2**28
"""Bytes of posteriors one Fusion replica keeps."""
_NOT_FUSION = ("solve", "solve_params", "k", "n", "t", "proposals")
"""Session settings that do not change the fused posterior (a PATCH of ``solve`` keeps its entry)."""


def posterior_key(sid: str, state) -> str:
    """What the fused posterior of ``state`` (a SessionState or WorkingState of session ``sid``)
    depends on, as a digest: the rounds (their count and the last one's matte and evidence, which
    the network computed from every earlier label), the labels and the fusion's settings."""
    h = hashlib.blake2b(digest_size=20)
    config = {k: v for k, v in state.config.to_dict().items() if k not in _NOT_FUSION}
    h.update(json.dumps([sid, len(state.rounds), state.label_log, config], sort_keys=True, default=str).encode())
    if state.rounds:
        h.update(state.rounds[-1].gamma.tobytes())
        h.update(state.rounds[-1].nu.tobytes())
    return h.hexdigest()


class PosteriorCache:
    """An LRU of fused posteriors by :func:`posterior_key` (thread-safe: Serve runs sync methods in threads)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[str, NIG] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_fuse(self, key: str | None, fuse: Callable[[], NIG]) -> NIG:
        """The posterior under ``key``, or ``fuse()`` kept under it (``key`` None: not kept)."""
        if key is not None:
            with self._lock:
                found = self._entries.get(key)
                if found is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return found
                self.misses += 1
        fused = fuse()
        if key is None:
            return fused
        size = sum(a.nbytes for a in fused)
        with self._lock:
            if key not in self._entries and size <= self.max_bytes:
                self._entries[key] = fused
                self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= sum(a.nbytes for a in old)
        return fused
