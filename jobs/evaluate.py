"""Evaluate dugray with a simulated user: the paper's tables (``dugray eval`` runs the same).

The code and its flags live in ``dugray.evaluation.evaluate_job`` (``python jobs/evaluate.py --help``); this file
is what ``python jobs/evaluate.py ...`` and ``ray job submit --working-dir . -- python
jobs/evaluate.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from dugray.evaluation.evaluate_job import main

if __name__ == "__main__":
    sys.exit(main())
