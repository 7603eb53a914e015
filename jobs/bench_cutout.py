"""Benchmark: cold ``dugray cutout`` wall time beside ``import torch`` (and another checkout) in one run.

The code and its flags live in ``dugray.benchmarks.cutout`` (``python jobs/bench_cutout.py --help``).
"""

import sys

from dugray.benchmarks.cutout import main

if __name__ == "__main__":
    sys.exit(main())
