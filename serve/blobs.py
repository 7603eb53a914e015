"""Where the session store keeps each session's bytes: in memory, or in a folder / bucket.

:class:`FileBlobs` writes through ``pyarrow.fs`` (a local folder by default, any URI
pyarrow opens on a cluster: ``s3://``, ``gs://``, ``hdfs://``), so a restarted store
replica, or a second one, finds every session that was live. Per session three objects:
``<sid>.image.npy`` (the full-size image, written once when the session is made: no round
reads or rewrites it), ``<sid>.<version>.npz`` (the state without the image) and
``<sid>.meta.json`` (version, owner, last write, sizes, the JSON view), each written
atomically (a temporary name and a rename on local disks; object stores make a single PUT
atomic themselves). The state is written before the meta that names it, so a crash between
the two leaves the previous version readable; the superseded state is deleted afterwards.

What cannot be read is never fatal: a meta file that is not valid JSON, names another
session, or has an invalid id, version, time or size, and a state file whose size is not
the one its meta recorded, are moved to ``quarantine/`` under the root (and logged), and
the session is gone (404); the store replica starts and serves every other session. Only a
file that is NOT there (``FileNotFoundError``) or is corrupt counts as lost: any other
``OSError`` (a throttled bucket, out of file handles) is raised to the caller, and the session
is kept (the ingress answers 503, the client retries). ``quarantine/`` is pruned oldest first to
``quarantine_bytes``; a write that fails removes its temporary ``.part-`` file.

On a local disk the root is made private (0700) and every file is written 0600: sessions hold
uploaded photos, and other local users must not read them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import uuid
from pathlib import Path

import pyarrow.fs as pafs

SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Session ids the store accepts (they become file names)."""
QUARANTINE = "quarantine"
"""Folder under the root where unreadable files are moved (kept for a human to look at)."""
log = logging.getLogger("ray.serve")


def meta_problem(meta, sid: str | None = None) -> str | None:
    """Why ``meta`` (a parsed meta file) cannot describe a session (``sid``'s, if given), or None."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    if (
        not isinstance(meta.get("sid"), str)
        or not SID.fullmatch(meta["sid"])
        or (sid is not None and meta["sid"] != sid)
    ):
        return f"invalid session id {str(meta.get('sid'))[:80]!r}"
    for key in ("version", "size", "image_size"):
        if key == "image_size" and key not in meta:
            continue
        if not isinstance(meta.get(key), int) or isinstance(meta.get(key), bool) or meta[key] < 0:
            return f"invalid {key} {str(meta.get(key))[:40]!r}"
    written = meta.get("written")
    if not isinstance(written, (int, float)) or isinstance(written, bool) or not math.isfinite(written):
        return f"invalid time {str(written)[:40]!r}"
    if meta.get("owner") is not None and not (isinstance(meta["owner"], str) and len(meta["owner"]) <= 100):
        return "invalid owner"
    if not isinstance(meta.get("view", {}), dict):
        return "invalid view"
    return None


class MemoryBlobs:
    """Session bytes in this process only: lost with the replica (``session_storage: none``)."""

    persistent = False
    kind = "memory"

    def __init__(self):
        self._data: dict[str, tuple[int, bytes]] = {}
        self._meta: dict[str, dict] = {}
        self._images: dict[str, bytes] = {}

    def write_image(self, sid: str, data: bytes) -> None:
        """Store the session's full-size image (once, before its first state)."""
        self._images[sid] = data

    def read_image(self, sid: str) -> bytes | None:
        """The session's image bytes, or None."""
        return self._images.get(sid)

    def write(self, sid: str, version: int, blob: bytes, meta: dict, replaces: int | None = None) -> None:
        """Store ``blob`` as ``version`` of ``sid`` with its metadata (``replaces``: the version it supersedes)."""
        self._data[sid] = (version, blob)
        self._meta[sid] = meta

    def read(self, sid: str, version: int) -> bytes | None:
        """The bytes of ``version`` of ``sid``, or None."""
        got = self._data.get(sid)
        return got[1] if got is not None and got[0] == version else None

    def meta(self, sid: str) -> dict | None:
        """The metadata last written for ``sid``, or None."""
        return self._meta.get(sid)

    def delete(self, sid: str) -> None:
        """Forget ``sid`` (no error when it is unknown)."""
        self._data.pop(sid, None)
        self._meta.pop(sid, None)
        self._images.pop(sid, None)

    def all_meta(self) -> list[dict]:
        """Every stored session's metadata (for a store that starts)."""
        return list(self._meta.values())

    def quarantine(self, sid: str, reason: str) -> None:
        """Drop a session whose bytes cannot be read (nothing to keep in memory)."""
        log.warning("session %s dropped: %s", sid, reason)
        self.delete(sid)


class FileBlobs:
    """Session bytes as files under ``root`` on any pyarrow filesystem."""

    persistent = True

    def __init__(self, location: str, quarantine_bytes: int = 2**28):
        if "://" in location:
            self.fs, self.root = pafs.FileSystem.from_uri(location)
            self.local = isinstance(self.fs, pafs.LocalFileSystem)
        else:
            self.fs, self.root, self.local = pafs.LocalFileSystem(), str(Path(location).expanduser().resolve()), True
        self.kind = "local folder" if self.local else type(self.fs).__name__
        self.quarantine_bytes = quarantine_bytes
        self.fs.create_dir(self.root, recursive=True)
        self._private(self.root, 0o700)

    def write(self, sid: str, version: int, blob: bytes, meta: dict, replaces: int | None = None) -> None:
        """Write the state, then the meta that names it (both atomic); then drop ``replaces``, the
        version it supersedes (the store knows it: no second read of the meta)."""
        self._put(self._blob_path(sid, version), blob)
        self._put(self._meta_path(sid), json.dumps({**meta, "version": version}).encode())
        if replaces is not None and replaces != version:
            self._delete(self._blob_path(sid, replaces))

    def read(self, sid: str, version: int) -> bytes | None:
        """The bytes of ``version`` of ``sid``, or None when they are not there (deleted meanwhile);
        any other OSError is raised (the storage failed, the session is not lost)."""
        return self._read(self._blob_path(sid, version))

    def write_image(self, sid: str, data: bytes) -> None:
        """Write the session's full-size image (once, before its first state and meta)."""
        self._put(self._image_path(sid), data)

    def read_image(self, sid: str) -> bytes | None:
        """The session's image bytes, or None when not there (as :meth:`read`)."""
        return self._read(self._image_path(sid))

    def _read(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def meta(self, sid: str) -> dict | None:
        """The metadata of ``sid`` as last written by any replica, or None."""
        try:
            with self.fs.open_input_stream(self._meta_path(sid)) as f:
                meta = json.loads(f.read())
        except (FileNotFoundError, OSError, ValueError):
            return None
        return meta if meta_problem(meta, sid) is None else None

    def delete(self, sid: str) -> None:
        """Remove the meta first (the session is gone at once), then its state files."""
        meta = self.meta(sid)
        self._delete(self._meta_path(sid))
        if meta is not None:
            self._delete(self._blob_path(sid, meta["version"]))
        self._delete(self._image_path(sid))

    def all_meta(self) -> list[dict]:
        """Every readable session's metadata: unreadable metas and states are quarantined,
        stray state files of unfinished writes removed."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        metas, states = [], {}
        for info in infos:
            name = info.base_name
            if info.type != pafs.FileType.File:
                continue
            if name.endswith(".meta.json"):
                metas.append(name[: -len(".meta.json")])
            elif name.endswith((".npz", ".npy")):
                states[name] = info.size
            elif ".part-" in name:
                self._delete(info.path)
        good, kept = [], set()
        for sid in metas:
            try:
                meta, problem = self._read_meta(sid)
            except OSError as exc:  # the storage failed, the file is not bad: keep it all for the next start
                log.warning("session %s skipped: its meta could not be read (%s)", sid[:80], type(exc).__name__)
                kept.add(sid)
                continue
            state = f"{sid}.{meta['version']}.npz" if problem is None else None
            if problem is None and states.get(state) != meta["size"]:
                problem = (
                    "state missing" if state not in states else f"state of {states[state]} bytes, not {meta['size']}"
                )
            image = f"{sid}.image.npy"
            if problem is None and meta.get("image_size") and states.get(image) != meta["image_size"]:
                problem = (
                    "image missing"
                    if image not in states
                    else f"image of {states[image]} bytes, not {meta['image_size']}"
                )
            if problem is not None:
                self._quarantine_files(sid, [n for n in states if n.startswith(sid + ".")], problem)
                continue
            good.append(meta)
        live = {f"{m['sid']}.{m['version']}.npz" for m in good} | {f"{m['sid']}.image.npy" for m in good}
        for name in states:
            if name not in live and name.split(".")[0] not in kept:  # superseded, or its meta never written
                self._delete(f"{self.root}/{name}")
        self._prune_quarantine()
        return good

    def quarantine(self, sid: str, reason: str) -> None:
        """Move a session's files (meta and states) to ``quarantine/``, and log why."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        self._quarantine_files(
            sid,
            [
                i.base_name
                for i in infos
                if i.base_name.startswith(sid + ".") and i.base_name.endswith((".npz", ".npy"))
            ],
            reason,
        )

    def _read_meta(self, name: str) -> tuple[dict | None, str | None]:
        """(meta, problem); a meta that is gone or not JSON is a problem, any other OSError is raised."""
        try:
            with self.fs.open_input_stream(f"{self.root}/{name}.meta.json") as f:
                meta = json.loads(f.read())
        except (FileNotFoundError, ValueError) as exc:
            return None, f"unreadable meta ({type(exc).__name__})"
        return meta, meta_problem(meta, name)

    def _quarantine_files(self, sid: str, states: list[str], reason: str) -> None:
        folder = f"{self.root}/{QUARANTINE}"
        self.fs.create_dir(folder, recursive=True)
        self._private(folder, 0o700)
        for name in [f"{sid}.meta.json", *states]:
            try:
                self.fs.move(f"{self.root}/{name}", f"{folder}/{name}")
            except (FileNotFoundError, OSError):
                pass
        log.warning("session %s quarantined in %s: %s", sid[:80], folder, reason)
        self._prune_quarantine()

    def _prune_quarantine(self) -> None:
        """Delete the oldest quarantined files until they hold at most ``quarantine_bytes``."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{QUARANTINE}", allow_not_found=True))
        except OSError:
            return
        files = sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: (i.mtime_ns or 0, i.path))
        total = sum(i.size or 0 for i in files)
        for info in files:
            if total <= self.quarantine_bytes:
                break
            self._delete(info.path)
            total -= info.size or 0

    def _private(self, path: str, mode: int) -> None:
        """On a local disk, ``chmod path mode`` (sessions hold uploaded photos)."""
        if self.local:
            os.chmod(path, mode)

    def _blob_path(self, sid: str, version: int) -> str:
        return f"{self.root}/{_checked(sid)}.{int(version)}.npz"

    def _image_path(self, sid: str) -> str:
        return f"{self.root}/{_checked(sid)}.image.npy"

    def _meta_path(self, sid: str) -> str:
        return f"{self.root}/{_checked(sid)}.meta.json"

    def _put(self, path: str, data: bytes) -> None:
        target = path if not self.local else f"{path}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with self.fs.open_output_stream(target) as f:
                self._private(target, 0o600)  # before any byte of the photo is in it
                f.write(data)
            if target != path:
                self.fs.move(target, path)  # a rename: readers see the old file or the new one, never half
        except OSError:
            if target != path:
                self._delete(target)  # no .part- file outlives a failed write
            raise

    def _delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except (FileNotFoundError, OSError):
            pass


def open_blobs(location: str | None, quarantine_bytes: int = 2**28):
    """:class:`FileBlobs` at ``location`` (``quarantine/`` kept under ``quarantine_bytes``), or
    :class:`MemoryBlobs` for None / 'none'."""
    if location is None or str(location).strip().lower() in ("", "none"):
        return MemoryBlobs()
    return FileBlobs(str(location), quarantine_bytes)


def _checked(sid: str) -> str:
    if not SID.fullmatch(sid):
        raise ValueError(f"invalid session id {sid!r}")
    return sid
