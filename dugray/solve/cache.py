"""Compile every numba kernel a session uses into numba's on-disk cache, once, at install time.

The kernels (the solve's, the label propagation's, and pymatting's, which the RGBA cut-out
uses and which compiles about 20 of them when it is first imported) are
``@njit(cache=True)``: the first process that runs one compiles it and writes it to
numba's cache (``__pycache__`` beside the module when that is writable, else numba's user
cache, or ``NUMBA_CACHE_DIR``); every later process loads it in milliseconds. Without
this, the first start of a fresh install compiles them in three replicas at once (a
minute and more on 2 cores) while health waits. ``setup.sh`` runs
``python -m dugray.solve.cache``. The cache is keyed by each module's time stamp, so an
edited module is compiled again, once, by its first user.

It runs a tiny session through every step that reaches a kernel, by the public API
(a round, proposal, box and click labels, the solve, the cut-out), so no kernel is named
here.
"""

from __future__ import annotations

import sys
import time


def compile_kernels() -> float:
    """Run the steps that use numba kernels once (compiling or loading them); the seconds it took."""
    t0 = time.perf_counter()
    import numpy as np

    from dugray.models import create_model
    from dugray.session import MattingSession, SessionConfig
    from dugray.solve import warm_up

    warm_up()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 90, (72, 96, 3), dtype=np.uint8)
    image[18:54, 24:72] = (230, 200, 40)
    model = create_model("unet", widths=(8, 16), head_mid=4).eval()
    session = MattingSession(image, model, config=SessionConfig(solve=True)).start()
    session.label([(0, "fg"), ((0, 0, 8, 8), "bg"), ((36, 48), "fg")])
    session.cutout()  # foreground colours: pymatting, whose import compiles its kernels
    return time.perf_counter() - t0


def main() -> int:
    """``python -m dugray.solve.cache``: compile (or load) every kernel; prints the time it took."""
    print(f"numba kernels compiled and cached in {compile_kernels():.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
