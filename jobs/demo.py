"""The whole method on the shipped default model, in one process (no Ray).

The code and its flags live in ``dugray.evaluation.demo`` (``python jobs/demo.py --help``); this file
is what ``python jobs/demo.py ...`` and ``ray job submit --working-dir . -- python
jobs/demo.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from dugray.evaluation.demo import main

if __name__ == "__main__":
    sys.exit(main())
