"""Benchmark: Serve label rounds/s with the Matting replicas on one node vs two, and bytes per round by hop.

The code and its flags live in ``jobs/benchmarks/cluster_serving.py`` (``python jobs/bench_cluster_serve.py --help``).
"""

import sys

from benchmarks.cluster_serving import main

if __name__ == "__main__":
    sys.exit(main())
