"""Benchmark: cold ``dugray cutout`` wall time beside ``import torch`` (and another checkout) in one run.

The code and its flags live in ``jobs/benchmarks/cutout.py`` (``python jobs/bench_cutout.py --help``).
"""

import sys

from benchmarks.cutout import main

if __name__ == "__main__":
    sys.exit(main())
