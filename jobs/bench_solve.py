"""Benchmark: the uncertainty-guided solve against one forward pass.

The code and its flags live in ``jobs/benchmarks/solve.py`` (``python jobs/bench_solve.py --help``); this file
is what ``python jobs/bench_solve.py ...`` and ``ray job submit --working-dir . -- python
jobs/bench_solve.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from benchmarks.solve import main

if __name__ == "__main__":
    sys.exit(main())
