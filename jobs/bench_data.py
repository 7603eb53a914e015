"""Benchmark: the Ray Data training pipeline against a torch DataLoader.

The code and its flags live in ``jobs/benchmarks/data.py`` (``python jobs/bench_data.py --help``); this file
is what ``python jobs/bench_data.py ...`` and ``ray job submit --working-dir . -- python
jobs/bench_data.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from benchmarks.data import main

if __name__ == "__main__":
    sys.exit(main())
