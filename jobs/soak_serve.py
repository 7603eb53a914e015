"""Soak test of the Serve app: mixed load for a bounded time, latency, errors and replica memory.

The code and its flags live in ``jobs/benchmarks/soak.py`` (``python jobs/soak_serve.py --help``); this file
is what ``python jobs/soak_serve.py ...`` runs.
"""

import sys

from benchmarks.soak import main

if __name__ == "__main__":
    sys.exit(main())
