"""Which engine ``dugray batch`` uses when told ``auto`` (the default): a plain loop or a Ray Data pool.

The rule (:func:`choose_engine`), in this order:

1. a cluster is named (``--address`` / ``RAY_ADDRESS``), Ray already runs in this process,
   or ``--concurrency`` asks for a pool: **ray**;
2. fewer than :data:`RAY_MIN_CPUS` CPUs here: **loop**. Measured on the 2-CPU machine, the
   pool (2 actors x 1 thread) was slower than one process at every size tried: 0.57x the
   loop's speed for 24 images, 0.80x for 96 (``jobs/bench_batch.py``), 18.5 s vs 10.7 s for
   8 photos (issue 31); with the one-shot matte the loop's lead is larger (docs/evaluation.md);
3. fewer than :data:`RAY_MIN_IMAGES_PER_CPU` images per CPU to do: **loop**: the pool's start
   (a local Ray, then an actor per CPU importing torch and loading the model: about
   :data:`RAY_START_S` s here) is not repaid;
4. otherwise **ray**: one single-threaded actor per CPU scales with the CPUs, while one
   process speeds up only its network pass with more threads (the solve, the colour
   estimation and the PNG encoding run on one core).

Rules 3 and 4 come from a cost model fitted to the 2-CPU measurements (fixed start, per-image
seconds at 1 and 2 threads: ``jobs/bench_batch.py --engines``), not from a machine with more
CPUs; the one line ``dugray batch`` prints says which rule chose, and ``--engine`` overrides it.
"""

from __future__ import annotations

import os

RAY_MIN_CPUS = 4
"""Below this many CPUs (and without a cluster) the loop is chosen whatever the job's size."""
RAY_MIN_IMAGES_PER_CPU = 8
"""With RAY_MIN_CPUS or more, the pool is chosen from this many images per CPU on."""
RAY_START_S = 8
"""What the pool's start cost on the 2-CPU machine, in seconds (a local Ray + the actors' start)."""


def local_cpus() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_engine(
    todo: int, cpus: int, address: str | None = None, ray_running: bool = False, concurrency: int | None = None
) -> tuple[str, str]:
    """("loop" or "ray", why) for ``todo`` images on ``cpus`` local CPUs (the rule above)."""
    if address:
        return "ray", f"a Ray cluster was given ({address})"
    if ray_running:
        return "ray", "Ray already runs in this process"
    if concurrency:
        return "ray", f"--concurrency {concurrency} asks for a pool of actors"
    if cpus < RAY_MIN_CPUS:
        return "loop", (
            f"{cpus} CPU{'s' * (cpus != 1)} and no cluster: one process beats a local Ray pool below "
            f"{RAY_MIN_CPUS} CPUs (--engine ray to force it)"
        )
    if todo < RAY_MIN_IMAGES_PER_CPU * cpus:
        return "loop", (
            f"{todo} image{'s' * (todo != 1)} on {cpus} CPUs: too few to repay the pool's start "
            f"(ray from {RAY_MIN_IMAGES_PER_CPU * cpus} on; --engine ray to force it)"
        )
    return "ray", f"{todo} images on {cpus} CPUs: a pool of one actor per CPU"
