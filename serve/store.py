"""A bounded table of sessions: count, bytes, idle time and each owner's share are capped.

Lives in the ``SessionStore`` deployment (exactly one replica), so every ingress and model
replica sees the same sessions and a model replica's death loses nothing. The bytes of
each session (``SessionState.to_bytes()``) live in a blob store (:mod:`serve.blobs`): a
folder or a bucket by default, written through, so a restarted store replica serves every
session that was live; this table keeps only the small metadata and the JSON view the
API returns, so ``GET /v1/sessions/{id}`` never deserialises anything. Each entry has a
version: a write names the version it read, and a write over a newer one is refused (two
concurrent label requests on one session cannot silently lose one of them).

The table in memory is the truth while the replica lives (last-access times are only
here, which is why there is one replica); the lock guards it and nothing else: reading
and writing blobs happens outside it, so a slow disk or bucket holds up only the request
that waits for it. A write in flight reserves its session (a second one gets "conflict"),
and a write whose session was deleted or evicted meanwhile removes what it wrote.

Ownership: a session created with an API key's owner id (``key:...``) is invisible to
every other owner (None / 404). Quotas: one owner (a key, or a client address when the
server has no keys) holds at most ``max_per_owner`` live sessions and ``max_bytes_per_owner``
bytes of them, so one client cannot fill the store and evict everyone else's. Eviction:
least recently used first, when the count or the byte total would pass its bound; entries
idle longer than ``ttl_s`` expire (checked on access and on every write). Evicted, expired
and deleted sessions are removed from storage too. A state that cannot be read (missing,
or not the size its write recorded) is quarantined and its session is gone
(``{"gone": ...}`` once, then 404); a storage error that is not "missing" keeps the session
(``{"unavailable": ...}``, a 503 the client retries).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from serve.blobs import MemoryBlobs, log


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
    image_size: int = 0

    @property
    def total(self) -> int:
        """Bytes the session holds in storage: its state and its image."""
        return self.size + self.image_size


def _unavailable(exc: OSError) -> dict:
    """What a read that failed in the storage (not "missing") answers: the session is kept, the caller retries."""
    return {"unavailable": f"{type(exc).__name__}: {str(exc)[:200]}"}


def owns(entry_owner: str | None, owner: str | None) -> bool:
    """Whether ``owner`` may see a session created by ``entry_owner``: sessions made with an API
    key belong to that key; sessions made without one (a server without keys) to everyone."""
    return not (entry_owner or "").startswith("key:") or entry_owner == owner


class SessionTable:
    """LRU + TTL + byte- and owner-bounded map from session id to (blob, view, version)."""

    def __init__(
        self,
        max_sessions: int,
        ttl_s: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        blobs=None,
        max_per_owner: int | None = None,
        wall: Callable[[], float] = time.time,
        max_bytes_per_owner: int | None = None,
    ):
        self.max_sessions, self.ttl_s, self.max_bytes, self.clock = max_sessions, ttl_s, max_bytes, clock
        self.max_per_owner, self.max_bytes_per_owner, self.wall = max_per_owner, max_bytes_per_owner, wall
        self.blobs = blobs if blobs is not None else MemoryBlobs()
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._pending: set[str] = set()  # sessions with a write in flight
        self._doomed: list[str] = []  # sessions whose files must go, removed outside the lock
        self._bytes = 0
        self.evicted = 0
        self.expired = 0
        self.lost = 0
        self._lock = threading.RLock()  # Serve runs sync methods in a thread pool
        self._recover()

    def get(self, sid: str, owner: str | None = None) -> tuple[bytes, dict, int] | dict | None:
        """(blob, view, version) of a live session of ``owner``, marking it used; None if unknown,
        expired or someone else's; ``{"gone": reason}`` when its state is missing or corrupt (it is
        quarantined, and unknown from then on); ``{"unavailable": reason}`` when the storage failed
        to read it (any other OSError: the session is kept)."""
        try:
            for _ in range(3):  # a write may replace the version between the lookup and the read
                with self._lock:
                    e = self._current(sid)
                    if e is None or not owns(e.owner, owner):
                        return None
                    version, size = e.version, e.size
                try:
                    blob = self.blobs.read(sid, version)
                except OSError as exc:  # the storage failed: the session is kept, the caller retries
                    return _unavailable(exc)
                with self._lock:
                    e = self._entries.get(sid)
                    if e is None:
                        return None
                    if e.version != version:
                        continue
                    if blob is None or len(blob) != size:
                        self._lose(sid)
                        reason = "state missing" if blob is None else f"state of {len(blob)} bytes, not {size}"
                        break
                    e.touched = self.clock()
                    self._entries.move_to_end(sid)
                    return blob, e.view, e.version
            else:
                return None
            self._quarantine_files(sid, reason)
            return {"gone": reason}
        finally:
            self._flush()

    def view(self, sid: str, owner: str | None = None) -> dict | None:
        """The stored JSON view of a live session (marking it used); None if unknown, expired or not ``owner``'s."""
        try:
            with self._lock:
                e = self._current(sid)
                if e is None or not owns(e.owner, owner):
                    return None
                e.touched = self.clock()
                self._entries.move_to_end(sid)
                return e.view
        finally:
            self._flush()

    def image(self, sid: str, owner: str | None = None) -> bytes | dict | None:
        """The full-size image of a live session of ``owner`` (the outputs read it; no round does):
        bytes, None, ``{"gone": reason}`` or ``{"unavailable": reason}`` as :meth:`get`."""
        try:
            with self._lock:
                e = self._current(sid)
                if e is None or not owns(e.owner, owner):
                    return None
                size = e.image_size
            if not size:
                return None  # created without one (a caller that keeps the image in its state)
            try:
                data = self.blobs.read_image(sid)
            except OSError as exc:
                return _unavailable(exc)
            if data is not None and len(data) == size:
                return data
            with self._lock:
                if self._entries.get(sid) is not e:
                    return None  # deleted or rewritten meanwhile: as if unknown
                self._lose(sid)
            reason = "image missing" if data is None else f"image of {len(data)} bytes, not {size}"
            self._quarantine_files(sid, reason)
            return {"gone": reason}
        finally:
            self._flush()

    def put(
        self,
        sid: str,
        blob: bytes,
        view: dict,
        expect_version: int | None = None,
        owner: str | None = None,
        image: bytes | None = None,
    ) -> dict:
        """Store a session. ``expect_version`` None creates it (for ``owner``), with its full-size
        ``image`` (written once, read by :meth:`image`); else it must match the stored one.

        Returns ``{"ok": True, "version": v}`` or ``{"ok": False, "error": "missing" | "conflict" |
        "too_large" | "quota" | "share" | "storage"}`` (plain values, not exceptions, so they
        cross Ray as is).
        """
        try:
            with self._lock:
                if image is not None and expect_version is not None:
                    raise ValueError("a session's image is stored when it is created, and only then")
                old = self._entries.get(sid)
                image_size = old.image_size if old is not None and expect_version is not None else len(image or b"")
                refused = self._admit(sid, len(blob) + image_size, expect_version, owner)
                if refused is not None:
                    return {"ok": False, "error": refused}
                version = 0 if old is None else old.version + 1
                entry_owner = owner if old is None else old.owner
                self._pending.add(sid)
            try:
                if image is not None:
                    self.blobs.write_image(sid, image)
                self.blobs.write(
                    sid,
                    version,
                    blob,
                    {
                        "sid": sid,
                        "owner": entry_owner,
                        "written": self.wall(),
                        "size": len(blob),
                        "image_size": image_size,
                        "view": view,
                    },
                    replaces=None if old is None else old.version,
                )
            except OSError:
                with self._lock:
                    self._pending.discard(sid)
                    if old is None:
                        self._doomed.append(sid)  # a half-made session leaves no image behind
                return {"ok": False, "error": "storage"}
            with self._lock:
                self._pending.discard(sid)
                now = self._entries.get(sid)
                if (now.version if now is not None else None) != (old.version if old is not None else None):
                    self._doomed.append(sid)  # deleted, expired or evicted while we wrote: what we wrote goes too
                    return {"ok": False, "error": "missing"}
                if now is not None:
                    self._bytes -= now.total
                self._entries[sid] = Entry(view, version, self.clock(), len(blob), entry_owner, image_size)
                self._entries.move_to_end(sid)
                self._bytes += len(blob) + image_size
                while len(self._entries) > self.max_sessions or self._bytes > self.max_bytes:
                    self._forget(next(iter(self._entries)))
                    self.evicted += 1
                return {"ok": True, "version": version}
        finally:
            self._flush()

    def delete(self, sid: str, owner: str | None = None) -> bool:
        """Remove a session (and its stored bytes); False if there was none of ``owner``'s."""
        try:
            with self._lock:
                e = self._current(sid)
                if e is None or not owns(e.owner, owner):
                    return False
                self._forget(sid)
                return True
        finally:
            self._flush()

    def quarantine(self, sid: str, reason: str) -> None:
        """Drop a session whose state the caller could not read (its files go to quarantine, logged)."""
        with self._lock:
            if sid not in self._entries:
                return
            self._lose(sid)
        self._quarantine_files(sid, reason)

    def _lose(self, sid: str) -> None:
        """Drop a live session whose stored bytes cannot be read (the caller holds the lock and
        quarantines its files): it no longer counts, and it counts as lost."""
        e = self._entries.pop(sid)
        self._bytes -= e.total
        self.lost += 1

    def _quarantine_files(self, sid: str, reason: str) -> None:
        """Move a lost session's files aside; a storage error doing so is logged (the session is gone anyway)."""
        try:
            self.blobs.quarantine(sid, reason)
        except OSError as exc:
            log.warning("session %s: its files could not be quarantined (%s)", sid[:80], type(exc).__name__)

    def owned(self, owner: str) -> int:
        """Live sessions created by ``owner``."""
        with self._lock:
            return sum(1 for e in self._entries.values() if e.owner == owner)

    def owned_bytes(self, owner: str) -> int:
        """Bytes of the live sessions created by ``owner``."""
        with self._lock:
            return sum(e.total for e in self._entries.values() if e.owner == owner)

    def stats(self) -> dict:
        """Counters for /v1/health, after dropping expired entries: sessions, bytes, their bounds,
        ttl_s, the storage kind (never its path), and how many were evicted, expired and lost
        (unreadable) so far.
        """
        try:
            with self._lock:
                self._expire()
                return {
                    "sessions": len(self._entries),
                    "bytes": self._bytes,
                    "max_sessions": self.max_sessions,
                    "max_bytes": self.max_bytes,
                    "max_per_owner": self.max_per_owner,
                    "max_bytes_per_owner": self.max_bytes_per_owner,
                    "ttl_s": self.ttl_s,
                    "storage": self.blobs.kind,
                    "evicted": self.evicted,
                    "expired": self.expired,
                    "lost": self.lost,
                }
        finally:
            self._flush()

    # ---- internals (callers hold the lock, except _flush and _recover)

    def _admit(self, sid: str, size: int, expect_version: int | None, owner: str | None) -> str | None:
        """Why a write of ``size`` bytes may not happen now (an error of :meth:`put`), or None."""
        self._expire()
        if size > self.max_bytes:
            return "too_large"
        if sid in self._pending:
            return "conflict"
        old = self._current(sid)
        if expect_version is not None:
            if old is None or not owns(old.owner, owner):
                return "missing"
            if old.version != expect_version:
                return "conflict"
        elif old is not None:
            return "conflict"
        elif self.max_per_owner is not None and owner is not None and self.owned(owner) >= self.max_per_owner:
            return "quota"
        holder = owner if old is None else old.owner
        if self.max_bytes_per_owner is not None and holder is not None:
            held = self.owned_bytes(holder) - (old.total if old is not None else 0)
            if held + size > self.max_bytes_per_owner:
                return "share"
        return None

    def _current(self, sid: str) -> Entry | None:
        """The live entry of ``sid``; expired (and forgotten) when idle past the TTL."""
        e = self._entries.get(sid)
        if e is not None and self.clock() - e.touched > self.ttl_s:
            self._forget(sid)
            self.expired += 1
            return None
        return e

    def _recover(self) -> None:
        """Adopt every session the blob store holds (it quarantines what it cannot read), oldest first."""
        now_wall, now = self.wall(), self.clock()
        for meta in sorted(self.blobs.all_meta(), key=lambda m: float(m["written"])):
            age = max(0.0, now_wall - float(meta["written"]))
            e = Entry(
                meta.get("view") or {},
                int(meta["version"]),
                now - age,
                int(meta["size"]),
                meta.get("owner"),
                int(meta.get("image_size", 0)),
            )
            old = self._entries.pop(meta["sid"], None)
            self._bytes += e.total - (old.total if old is not None else 0)
            self._entries[meta["sid"]] = e
        with self._lock:
            self._expire()
        self._flush()

    def _expire(self) -> None:
        now = self.clock()
        for sid in [sid for sid, e in self._entries.items() if now - e.touched > self.ttl_s]:
            self._forget(sid)
            self.expired += 1

    def _forget(self, sid: str) -> None:
        """Drop ``sid`` from the table; its files are removed by the next :meth:`_flush`."""
        e = self._entries.pop(sid, None)
        if e is not None:
            self._bytes -= e.total
        self._doomed.append(sid)

    def _flush(self) -> None:
        """Remove the files of forgotten sessions, outside the lock (a session written again
        meanwhile keeps its files: its write will see it was forgotten and remove them)."""
        with self._lock:
            doomed, self._doomed = self._doomed, []
            doomed = [sid for sid in doomed if sid not in self._entries and sid not in self._pending]
        for sid in doomed:
            self.blobs.delete(sid)
