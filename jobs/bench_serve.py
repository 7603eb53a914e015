"""Benchmark: what serving costs over the bare network (in process, HTTP, replicas, one shot).

The code and its flags live in ``jobs/benchmarks/serving.py`` (``python jobs/bench_serve.py --help``); this file
is what ``python jobs/bench_serve.py ...`` and ``ray job submit --working-dir . -- python
jobs/bench_serve.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from benchmarks.serving import main

if __name__ == "__main__":
    sys.exit(main())
