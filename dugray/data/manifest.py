"""One parquet manifest per dataset: the list of training / evaluation examples.

Built once by walking the dataset (:mod:`dugray.data.layouts`), then read by everything
else (Ray Data streams it). Paths are absolute and resolved, so the manifest works from
any working directory on any node that mounts the dataset at the same path.

Schema (:data:`SCHEMA`, other code depends on it exactly): ``name, split, layout, alpha``
are strings; ``image, fg, bg, trimap, trimap2`` are nullable strings. A Composition-1k
foreground appears N times (once per background) with ``fg``/``bg`` set and ``image``
null; every other layout has ``image`` set and ``fg``/``bg`` null.

Default location: ``<root>/manifest.parquet``; if ``root`` is not writable (or has no
write permission bit, which root would ignore), the cache
folder ``$DUGRAY_CACHE_DIR`` (else ``$XDG_CACHE_HOME/dugray`` else ``~/.cache/dugray``)
``/manifests/<root-name>-<hash of root path>.parquet``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dugray.data.layouts import COLUMNS, DEFAULT_BG_PER_FG, read_layout

MANIFEST_NAME = "manifest.parquet"
SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("layout", pa.string(), nullable=False),
        pa.field("image", pa.string()),
        pa.field("fg", pa.string()),
        pa.field("bg", pa.string()),
        pa.field("alpha", pa.string(), nullable=False),
        pa.field("trimap", pa.string()),
        pa.field("trimap2", pa.string()),
    ]
)
assert tuple(SCHEMA.names) == COLUMNS


def cache_dir() -> Path:
    """Where manifests of read-only datasets go."""
    if os.environ.get("DUGRAY_CACHE_DIR"):
        return Path(os.environ["DUGRAY_CACHE_DIR"]).expanduser() / "manifests"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dugray" / "manifests"


def cached_manifest_path(root) -> Path:
    """The cache location of ``root``'s manifest, used when ``root`` is read-only: named after the
    folder plus a hash of its absolute path (two datasets never share one).
    """
    root = Path(root).expanduser().resolve()
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    return cache_dir() / f"{root.name or 'root'}-{digest}.parquet"


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write beside the target then rename: concurrent builders never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def manifest_table(root, backgrounds=None, n_bg_per_fg: int = DEFAULT_BG_PER_FG) -> pa.Table:
    """The manifest of ``root`` as a table (sorted by layout, split, name), not written."""
    root = Path(root).expanduser().resolve()
    rows = sorted(
        read_layout(root, backgrounds, n_bg_per_fg), key=lambda r: (r["layout"], r["split"], r["name"], r["bg"] or "")
    )
    meta = {"dugray.root": str(root), "dugray.n_bg_per_fg": str(n_bg_per_fg), "dugray.manifest_version": "1"}
    return pa.Table.from_pylist(rows, schema=SCHEMA.with_metadata(meta))


def build_manifest(root, out=None, backgrounds=None, n_bg_per_fg: int = DEFAULT_BG_PER_FG) -> Path:
    """Scan ``root``, write its manifest, return the path written.

    ``out`` defaults to ``<root>/manifest.parquet``, or the cache folder when ``root``
    is read-only. Raises :class:`~dugray.data.layouts.LayoutError` if ``root`` holds no
    known layout.
    """
    table = manifest_table(root, backgrounds, n_bg_per_fg)
    if out is not None:
        path = Path(out).expanduser().resolve()
        _write_atomic(table, path)
        return path
    root = Path(root).expanduser().resolve()
    path = root / MANIFEST_NAME
    if _writable(root):
        try:
            _write_atomic(table, path)
            return path
        except OSError:
            pass
    path = cached_manifest_path(root)
    _write_atomic(table, path)
    return path


def _writable(folder: Path) -> bool:
    """Writable for us *and* not marked read-only (no write bit), which root ignores."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def read_manifest(path) -> pa.Table:
    """Read a manifest and check it has exactly :data:`SCHEMA`'s columns and types."""
    table = pq.read_table(str(path))
    got = [(f.name, f.type) for f in table.schema]
    want = [(f.name, f.type) for f in SCHEMA]
    if got != want:
        raise ValueError(f"{path} is not a dugray manifest: columns {got}, expected {want}")
    return table


def find_manifest(root) -> Path | None:
    """The existing manifest of dataset ``root`` (default or cache location), if any."""
    for path in (Path(root).expanduser().resolve() / MANIFEST_NAME, cached_manifest_path(root)):
        if path.is_file():
            return path
    return None


def load_or_build(path_or_dir, rebuild: bool = False, **build_kwargs) -> pa.Table:
    """A manifest from a ``.parquet`` file, or from a dataset folder (its existing
    manifest, built first if there is none or ``rebuild``). ``build_kwargs`` go to
    :func:`build_manifest` (``backgrounds``, ``n_bg_per_fg``)."""
    p = Path(path_or_dir).expanduser()
    if p.suffix == ".parquet":
        if not p.is_file():
            raise FileNotFoundError(f"manifest {p} does not exist")
        return read_manifest(p)
    existing = None if rebuild else find_manifest(p)
    return read_manifest(existing or build_manifest(p, **build_kwargs))


def summary(table: pa.Table) -> dict[tuple[str, str], int]:
    """Row counts per (layout, split), sorted."""
    counts = table.group_by(["layout", "split"]).aggregate([("name", "count")])
    return dict(sorted(((r["layout"], r["split"]), r["name_count"]) for r in counts.to_pylist()))
