"""Benchmark: training ingestion before vs after, Ray Data over 1 vs 2 nodes, stage 1 with 1 vs 2 workers.

The code and its flags live in ``jobs/benchmarks/cluster.py`` (``python jobs/bench_cluster.py --help``).
"""

import sys

from benchmarks.cluster import main

if __name__ == "__main__":
    sys.exit(main())
