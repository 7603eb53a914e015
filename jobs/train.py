"""Train dugray: both stages on Ray Train, tracked in MLflow (``dugray train`` runs the same).

The code and its flags live in ``dugray.train.train_job`` (``python jobs/train.py --help``); this file
is what ``python jobs/train.py ...`` and ``ray job submit --working-dir . -- python
jobs/train.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from dugray.train.train_job import main

if __name__ == "__main__":
    sys.exit(main())
