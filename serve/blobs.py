"""Where the session store keeps each session's bytes: in memory, or in a folder / bucket.

:class:`FileBlobs` writes through ``pyarrow.fs`` (a local folder by default, any URI
pyarrow opens on a cluster: ``s3://``, ``gs://``, ``hdfs://``), so a restarted store
replica, or a second one, finds every session that was live. Per session two objects:
``<sid>.<version>.npz`` (the state) and ``<sid>.meta.json`` (version, owner, last
write, size, the JSON view), each written atomically (a temporary name and a rename on
local disks; object stores make a single PUT atomic themselves). The state is written
before the meta that names it, so a crash between the two leaves the previous version
readable; the superseded state is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pyarrow.fs as pafs

SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Session ids the store accepts (they become file names)."""


class MemoryBlobs:
    """Session bytes in this process only: lost with the replica (``session_storage: none``)."""

    persistent = False
    kind = "memory"

    def __init__(self):
        self._data: dict[str, tuple[int, bytes]] = {}
        self._meta: dict[str, dict] = {}

    def write(self, sid: str, version: int, blob: bytes, meta: dict) -> None:
        """Store ``blob`` as ``version`` of ``sid`` with its metadata."""
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

    def all_meta(self) -> list[dict]:
        """Every stored session's metadata (for a store that starts)."""
        return list(self._meta.values())


class FileBlobs:
    """Session bytes as files under ``root`` on any pyarrow filesystem."""

    persistent = True

    def __init__(self, location: str):
        if "://" in location:
            self.fs, self.root = pafs.FileSystem.from_uri(location)
            self.local = isinstance(self.fs, pafs.LocalFileSystem)
        else:
            self.fs, self.root, self.local = pafs.LocalFileSystem(), str(Path(location).expanduser().resolve()), True
        self.kind = "local folder" if self.local else type(self.fs).__name__
        self.fs.create_dir(self.root, recursive=True)

    def write(self, sid: str, version: int, blob: bytes, meta: dict) -> None:
        """Write the state, then the meta that names it (both atomic); drop the superseded state."""
        old = self.meta(sid)
        self._put(self._blob_path(sid, version), blob)
        self._put(self._meta_path(sid), json.dumps({**meta, "version": version}).encode())
        if old is not None and old.get("version") != version:
            self._delete(self._blob_path(sid, old["version"]))

    def read(self, sid: str, version: int) -> bytes | None:
        """The bytes of ``version`` of ``sid``, or None when they are not there (deleted meanwhile)."""
        try:
            with self.fs.open_input_stream(self._blob_path(sid, version)) as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def meta(self, sid: str) -> dict | None:
        """The metadata of ``sid`` as last written by any replica, or None."""
        try:
            with self.fs.open_input_stream(self._meta_path(sid)) as f:
                meta = json.loads(f.read())
        except (FileNotFoundError, OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and isinstance(meta.get("version"), int) else None

    def delete(self, sid: str) -> None:
        """Remove the meta first (the session is gone at once), then its state files."""
        meta = self.meta(sid)
        self._delete(self._meta_path(sid))
        if meta is not None:
            self._delete(self._blob_path(sid, meta["version"]))

    def all_meta(self) -> list[dict]:
        """Every stored session's metadata; stray state files of unfinished writes are removed."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        metas, states = [], []
        for info in infos:
            name = info.base_name
            if name.endswith(".meta.json"):
                meta = self.meta(name[: -len(".meta.json")])
                if meta is not None:
                    metas.append(meta)
            elif name.endswith(".npz"):
                states.append(name)
            elif ".part-" in name:
                self._delete(info.path)
        live = {f"{m['sid']}.{m['version']}.npz" for m in metas if "sid" in m}
        for name in states:
            if name not in live:
                self._delete(f"{self.root}/{name}")
        return metas

    def _blob_path(self, sid: str, version: int) -> str:
        return f"{self.root}/{_checked(sid)}.{int(version)}.npz"

    def _meta_path(self, sid: str) -> str:
        return f"{self.root}/{_checked(sid)}.meta.json"

    def _put(self, path: str, data: bytes) -> None:
        target = path if not self.local else f"{path}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(target) as f:
            f.write(data)
        if target != path:
            self.fs.move(target, path)  # a rename: readers see the old file or the new one, never half

    def _delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except (FileNotFoundError, OSError):
            pass


def open_blobs(location: str | None):
    """:class:`FileBlobs` at ``location``, or :class:`MemoryBlobs` for None / 'none'."""
    if location is None or str(location).strip().lower() in ("", "none"):
        return MemoryBlobs()
    return FileBlobs(str(location))


def _checked(sid: str) -> str:
    if not SID.fullmatch(sid):
        raise ValueError(f"invalid session id {sid!r}")
    return sid
