"""A bounded table of sessions: count, bytes, idle time and each owner's share are capped.

Lives in the ``SessionStore`` deployment, so every ingress and model replica sees the
same sessions and a model replica's death loses nothing. The bytes of each session
(``SessionState.to_bytes()``) live in a blob store (:mod:`serve.blobs`): a folder or a
bucket by default, so a restarted store replica (or a second one) serves every session
that was live; this table keeps only the small metadata and the JSON view the API
returns, so ``GET /v1/sessions/{id}`` never deserialises anything. Each entry has a
version: a write names the version it read, and a write over a newer one is refused (two
concurrent label requests on one session cannot silently lose one of them).

Ownership: a session created with an API key's owner id (``key:...``) is invisible to
every other owner (None / 404). Quota: one owner (a key, or a client address when the
server has no keys) holds at most ``max_per_owner`` live sessions, so one client cannot
evict everyone else's. Eviction: least recently used first, when the count or the byte
total would pass its bound; entries idle longer than ``ttl_s`` expire (checked on access
and on every write). Evicted, expired and deleted sessions are removed from storage too.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from serve.blobs import MemoryBlobs


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class Entry:
    """One stored session's metadata (its bytes are in the blob store).

    ``view``: the JSON the API returns for it; ``version``: 0 when created, +1 per write (a write
    must name the stored one); ``touched``: the table clock at the last get or put, for the LRU
    order and the TTL; ``size``: bytes of its state; ``owner``: who created it.
    """

    view: dict
    version: int
    touched: float
    size: int
    owner: str | None = None


def owns(entry_owner: str | None, owner: str | None) -> bool:
    """Whether ``owner`` may see a session created by ``entry_owner``: sessions made with an API
    key belong to that key; sessions made without one (a server without keys) to everyone."""
    return not (entry_owner or "").startswith("key:") or entry_owner == owner


class SessionTable:
    """LRU + TTL + byte- and owner-bounded map from session id to (blob, view, version)."""

    def __init__(self, max_sessions: int, ttl_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic,
                 blobs=None, max_per_owner: int | None = None, wall: Callable[[], float] = time.time):
        self.max_sessions, self.ttl_s, self.max_bytes, self.clock = max_sessions, ttl_s, max_bytes, clock
        self.max_per_owner, self.wall = max_per_owner, wall
        self.blobs = blobs if blobs is not None else MemoryBlobs()
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self.evicted = 0
        self.expired = 0
        self._lock = threading.RLock()  # Serve may run sync methods in a thread pool
        self._recover()

    @_locked
    def get(self, sid: str, owner: str | None = None) -> tuple[bytes, dict, int] | None:
        """(blob, view, version) of a live session of ``owner``, marking it used; None if unknown,
        expired or someone else's."""
        e = self._current(sid)
        if e is None or not owns(e.owner, owner):
            return None
        blob = self.blobs.read(sid, e.version)
        if blob is None:  # deleted by another replica between the meta and the state
            self._forget(sid)
            return None
        e.touched = self.clock()
        self._entries.move_to_end(sid)
        return blob, e.view, e.version

    def view(self, sid: str, owner: str | None = None) -> dict | None:
        """The stored JSON view of a live session (marking it used); None if unknown, expired or not ``owner``'s."""
        with self._lock:
            e = self._current(sid)
            if e is None or not owns(e.owner, owner):
                return None
            e.touched = self.clock()
            self._entries.move_to_end(sid)
            return e.view

    @_locked
    def put(self, sid: str, blob: bytes, view: dict, expect_version: int | None = None, owner: str | None = None) -> dict:
        """Store a session. ``expect_version`` None creates it (for ``owner``); else it must match the stored one.

        Returns ``{"ok": True, "version": v}`` or ``{"ok": False, "error": "missing" | "conflict" |
        "too_large" | "quota"}`` (plain values, not exceptions, so they cross Ray as is).
        """
        self._expire()
        if len(blob) > self.max_bytes:
            return {"ok": False, "error": "too_large"}
        old = self._current(sid)
        if expect_version is not None:
            if old is None or not owns(old.owner, owner):
                return {"ok": False, "error": "missing"}
            if old.version != expect_version:
                return {"ok": False, "error": "conflict"}
        elif old is not None:
            return {"ok": False, "error": "conflict"}
        elif self.max_per_owner is not None and owner is not None and self.owned(owner) >= self.max_per_owner:
            return {"ok": False, "error": "quota"}
        version = 0 if old is None else old.version + 1
        entry_owner = owner if old is None else old.owner
        self.blobs.write(sid, version, blob, {"sid": sid, "owner": entry_owner, "written": self.wall(),
                                              "size": len(blob), "view": view})
        if old is not None:
            self._bytes -= old.size
        self._entries[sid] = Entry(view, version, self.clock(), len(blob), entry_owner)
        self._entries.move_to_end(sid)
        self._bytes += len(blob)
        while len(self._entries) > self.max_sessions or self._bytes > self.max_bytes:
            victim = next(iter(self._entries))
            self._forget(victim, remove=True)
            self.evicted += 1
        return {"ok": True, "version": version}

    @_locked
    def delete(self, sid: str, owner: str | None = None) -> bool:
        """Remove a session (and its stored bytes); False if there was none of ``owner``'s."""
        e = self._current(sid)
        if e is None or not owns(e.owner, owner):
            return False
        self._forget(sid, remove=True)
        return True

    @_locked
    def owned(self, owner: str) -> int:
        """Live sessions created by ``owner``."""
        return sum(1 for e in self._entries.values() if e.owner == owner)

    @_locked
    def stats(self) -> dict:
        """Counters for /v1/health, after dropping expired entries: sessions, bytes, their bounds,
        ttl_s, the storage kind (never its path), and how many were evicted and expired so far.
        """
        self._expire()
        return {
            "sessions": len(self._entries),
            "bytes": self._bytes,
            "max_sessions": self.max_sessions,
            "max_bytes": self.max_bytes,
            "max_per_owner": self.max_per_owner,
            "ttl_s": self.ttl_s,
            "storage": self.blobs.kind,
            "evicted": self.evicted,
            "expired": self.expired,
        }

    # ---- internals

    def _current(self, sid: str) -> Entry | None:
        """The live entry of ``sid``: refreshed from persistent storage (another replica may have
        written or deleted it), expired when idle past the TTL."""
        if self.blobs.persistent:
            meta = self.blobs.meta(sid)
            e = self._entries.get(sid)
            if meta is None:
                if e is not None:
                    self._forget(sid)
                return None
            if e is None or e.version != meta["version"]:
                e = self._adopt(meta)
        e = self._entries.get(sid)
        if e is not None and self.clock() - e.touched > self.ttl_s:
            self._forget(sid, remove=True)
            self.expired += 1
            return None
        return e

    def _adopt(self, meta: dict) -> Entry:
        """An entry for metadata found in storage (written by this replica before a restart, or another)."""
        sid = meta["sid"]
        old = self._entries.pop(sid, None)
        if old is not None:
            self._bytes -= old.size
        age = max(0.0, self.wall() - float(meta.get("written", self.wall())))
        e = Entry(meta.get("view") or {}, int(meta["version"]), self.clock() - age, int(meta.get("size", 0)), meta.get("owner"))
        self._entries[sid] = e
        self._bytes += e.size
        return e

    def _recover(self) -> None:
        """Adopt every session the blob store holds, oldest first; expire those idle past the TTL."""
        for meta in sorted(self.blobs.all_meta(), key=lambda m: float(m.get("written", 0))):
            if "sid" in meta:
                self._adopt(meta)
        self._expire()

    def _expire(self) -> None:
        now = self.clock()
        for sid in [sid for sid, e in self._entries.items() if now - e.touched > self.ttl_s]:
            self._forget(sid, remove=True)
            self.expired += 1

    def _forget(self, sid: str, remove: bool = False) -> None:
        e = self._entries.pop(sid, None)
        if e is not None:
            self._bytes -= e.size
        if remove:
            self.blobs.delete(sid)
