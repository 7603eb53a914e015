"""A progress bar with nothing printed over it: while a command runs, what the libraries under it
print goes to a log file, and the terminal keeps the bar (and, after the run, our own lines).

Why a file and not a Ray setting: Ray's driver writes the errors of its C++ core worker straight
to file descriptor 2, whatever ``ray.init``'s ``log_to_driver``, ``logging_level`` or
``configure_logging`` say. Ray Data's actor pools always give one such line in Ray 2.60
(``core_worker.cc: ... has constructor arguments in the object store and max_restarts > 0``):
Ray Data hands each actor its context and transform by reference and restarts lost actors,
which dugray batch relies on when a node dies; the references live as long as the run, so the
line warns of nothing that can happen here. ``RAY_BACKEND_LOG_LEVEL=fatal`` would hide it, but
it silences the whole local cluster's logs and prints a line of its own. Ray's Python loggers
(``ray._private.log.PlainRayHandler``) write to whatever ``sys.stderr`` is when they emit, and
``sys.stderr`` is descriptor 2 too. So for the run descriptor 2 is the log file, and the bar
writes to a copy of the terminal's descriptor: nothing is lost (the file has every line), and
nothing lands in the bar. ``-v/--verbose`` keeps the old behaviour: everything on the terminal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

LOG_NAME = "batch.log"
"""The file in OUT_DIR that keeps what Ray and the libraries printed during a batch (kept only if not empty)."""


def _stderr_fd() -> int | None:
    """sys.stderr's file descriptor, or None when it has none (a test's capture, a StringIO)."""
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


@contextlib.contextmanager
def libraries_to_a_file(out_dir, verbose: bool = False):
    """Yield the stream the progress bar is to write to (None: sys.stderr, as usual).

    Unless ``verbose`` (or when stderr is not descriptor 2, e.g. inside a test's capture), the
    process's descriptor 2 is a temporary file while the block runs, and the yielded stream a
    copy of the terminal. Afterwards the file, if anything was written, becomes
    ``OUT_DIR/batch.log``; when the block raised, one line on stderr says where it is. A local
    Ray started inside the block is shut down inside it too, so its goodbye lands in the file.
    """
    if verbose or _stderr_fd() != 2:
        yield None
        return
    ray_was_up = _ray_is_up()
    saved = os.dup(2)
    terminal = os.fdopen(
        os.dup(saved), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8", errors="replace"
    )
    fd, tmp = tempfile.mkstemp(prefix="dugray-", suffix=".log")
    os.dup2(fd, 2)
    os.close(fd)
    failed = True
    try:
        yield terminal
        failed = False
    finally:
        try:
            if not ray_was_up and _ray_is_up():
                sys.modules["ray"].shutdown()
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            terminal.close()
            kept = _keep(Path(tmp), Path(out_dir))
            if failed and kept is not None:
                print(f"dugray: what Ray and the libraries printed during the run: {kept}", file=sys.stderr)


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _keep(tmp: Path, out_dir: Path) -> Path | None:
    """The log's final place: OUT_DIR/batch.log (the temporary file when OUT_DIR is missing), or
    None when nothing was written (the file is removed)."""
    if tmp.stat().st_size == 0:
        tmp.unlink()
        return None
    if not out_dir.is_dir():
        return tmp
    final = out_dir / LOG_NAME
    shutil.move(tmp, final)
    return final
