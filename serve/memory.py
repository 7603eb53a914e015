"""Keep long-running replicas' resident memory flat.

glibc's malloc gives every thread its own arena and returns freed memory to the system
only from the top of the heap, so a server that allocates images of varying sizes from
many threads grows its resident size long after its live data stopped growing (the
classic complaint about Python image servers). Two remedies, both cheap:

- :data:`MALLOC_ENV` (``MALLOC_ARENA_MAX=2``, fixed mmap and trim thresholds) in the
  environment of every Ray worker:
  ``dugray serve`` and the soak job set it before Ray starts (workers, the HTTP proxy
  included, inherit it); ``serve run`` users export it first (docs/serving.md);
- :func:`trim` (``malloc_trim(0)``) after the requests that allocate the most (full-size
  renders, refinement, the network's batches).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
"""Environment for Ray workers: at most 2 malloc arenas per process, and every block of
128 KiB or more (image buffers, request and response bodies) in its own mapping, returned
to the system when freed: glibc otherwise raises that threshold after the first large
free, and large buffers then fragment the heap."""

_libc = None
if os.name == "posix":
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        _libc = None
    # glibc only (not musl, not macOS): a C library without malloc_trim is as good as none.
    # hasattr looks the symbol up (ctypes raises AttributeError for a missing one).
    if _libc is not None and not hasattr(_libc, "malloc_trim"):
        _libc = None


def trim() -> bool:
    """Return freed heap memory to the system now (glibc); False where there is no malloc_trim."""
    if _libc is None:
        return False
    _libc.malloc_trim(0)
    return True


def set_malloc_env(environ=os.environ) -> None:
    """Put :data:`MALLOC_ENV` into ``environ`` (keeping values the operator set) before Ray starts."""
    for key, value in MALLOC_ENV.items():
        environ.setdefault(key, value)
