"""Make or index matting data: synthetic sets, real foregrounds, manifests.

The code and its flags live in ``dugray.data.make_data`` (``python jobs/make_data.py --help``); this file
is what ``python jobs/make_data.py ...`` and ``ray job submit --working-dir . -- python
jobs/make_data.py ...`` run (Ray puts the working directory on the job's PYTHONPATH).
"""

import sys

from dugray.data.make_data import main

if __name__ == "__main__":
    sys.exit(main())
