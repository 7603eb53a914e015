"""Tune the uncertainty-guided solve on train/ and synthetic data (never on val/).

The code and its flags live in ``dugray.evaluation.solve_tuning`` (``python jobs/tune_solve.py --help``); this file
is what ``python jobs/tune_solve.py ...`` and ``ray job submit --working-dir . -- python
jobs/tune_solve.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from dugray.evaluation.solve_tuning import main

if __name__ == "__main__":
    sys.exit(main())
