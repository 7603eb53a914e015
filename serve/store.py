"""A bounded table of serialised sessions: count, bytes and idle time are all capped.

Lives in the ``SessionStore`` deployment (one replica), so every ingress and model
replica sees the same sessions and a model replica's death loses nothing. Entries are
``SessionState.to_bytes()`` blobs plus the small JSON view the API returns, so
``GET /v1/sessions/{id}`` never deserialises anything. Each entry has a version: a write
names the version it read, and a write over a newer one is refused (two concurrent
label requests on one session cannot silently lose one of them).

Eviction: least recently used first, when the count or the byte total would pass its
bound; entries idle longer than ``ttl_s`` expire (checked on access and on every write).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class Entry:
    """One stored session.

    ``blob``: its ``SessionState.to_bytes()``; ``view``: the JSON the API returns for it; ``version``: 0 when
    created, +1 per write (a write must name the stored one); ``touched``: the table clock at the
    last get or put, for the LRU order and the TTL.
    """
    blob: bytes
    view: dict
    version: int
    touched: float


class SessionTable:
    """LRU + TTL + byte-bounded map from session id to (blob, view, version)."""

    def __init__(self, max_sessions: int, ttl_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic):
        self.max_sessions, self.ttl_s, self.max_bytes, self.clock = max_sessions, ttl_s, max_bytes, clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self.evicted = 0
        self.expired = 0
        self._lock = threading.RLock()  # Serve may run sync methods in a thread pool

    @_locked
    def get(self, sid: str) -> tuple[bytes, dict, int] | None:
        """(blob, view, version) of a live session, marking it used; None if unknown/expired."""
        e = self._live(sid)
        if e is None:
            return None
        e.touched = self.clock()
        self._entries.move_to_end(sid)
        return e.blob, e.view, e.version

    def view(self, sid: str) -> dict | None:
        """The stored JSON view of a live session (marking it used); None if unknown or expired."""
        got = self.get(sid)
        return None if got is None else got[1]

    @_locked
    def put(self, sid: str, blob: bytes, view: dict, expect_version: int | None = None) -> dict:
        """Store a session. ``expect_version`` None creates it; else it must match the stored one.

        Returns ``{"ok": True, "version": v}`` or ``{"ok": False, "error": "missing" |
        "conflict" | "too_large"}`` (plain values, not exceptions, so they cross Ray as is).
        """
        self._expire()
        if len(blob) > self.max_bytes:
            return {"ok": False, "error": "too_large"}
        old = self._entries.get(sid)
        if expect_version is not None:
            if old is None:
                return {"ok": False, "error": "missing"}
            if old.version != expect_version:
                return {"ok": False, "error": "conflict"}
        elif old is not None:
            return {"ok": False, "error": "conflict"}
        version = 0 if old is None else old.version + 1
        if old is not None:
            self._bytes -= len(old.blob)
        self._entries[sid] = Entry(blob, view, version, self.clock())
        self._entries.move_to_end(sid)
        self._bytes += len(blob)
        while len(self._entries) > self.max_sessions or self._bytes > self.max_bytes:
            _, e = self._entries.popitem(last=False)
            self._bytes -= len(e.blob)
            self.evicted += 1
        return {"ok": True, "version": version}

    @_locked
    def delete(self, sid: str) -> bool:
        """Remove a session; False if there was none."""
        e = self._entries.pop(sid, None)
        if e is None:
            return False
        self._bytes -= len(e.blob)
        return True

    @_locked
    def stats(self) -> dict:
        """Counters for /v1/health, after dropping expired entries: sessions, bytes, their bounds,
        ttl_s, and how many were evicted and expired so far.
        """
        self._expire()
        return {
            "sessions": len(self._entries),
            "bytes": self._bytes,
            "max_sessions": self.max_sessions,
            "max_bytes": self.max_bytes,
            "ttl_s": self.ttl_s,
            "evicted": self.evicted,
            "expired": self.expired,
        }

    def _live(self, sid: str) -> Entry | None:
        e = self._entries.get(sid)
        if e is not None and self.clock() - e.touched > self.ttl_s:
            self._drop_expired(sid)
            return None
        return e

    def _expire(self) -> None:
        now = self.clock()
        while self._entries:
            sid, e = next(iter(self._entries.items()))  # oldest use first: stop at the first fresh one
            if now - e.touched <= self.ttl_s:
                break
            self._drop_expired(sid)

    def _drop_expired(self, sid: str) -> None:
        e = self._entries.pop(sid)
        self._bytes -= len(e.blob)
        self.expired += 1
