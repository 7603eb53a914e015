"""Benchmark: batch cut-outs on Ray Data against a plain loop.

The code and its flags live in ``jobs/benchmarks/batch.py`` (``python jobs/bench_batch.py --help``); this file
is what ``python jobs/bench_batch.py ...`` and ``ray job submit --working-dir . -- python
jobs/bench_batch.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from benchmarks.batch import main

if __name__ == "__main__":
    sys.exit(main())
