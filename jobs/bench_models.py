"""Benchmark: forward time and size of every registered network.

The code and its flags live in ``jobs/benchmarks/models.py`` (``python jobs/bench_models.py --help``); this file
is what ``python jobs/bench_models.py ...`` and ``ray job submit --working-dir . -- python
jobs/bench_models.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from benchmarks.models import main

if __name__ == "__main__":
    sys.exit(main())
