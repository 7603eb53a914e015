"""What the NIG head learned (parameter histograms, the aleatoric map against the GT band).

The code and its flags live in ``dugray.evaluation.nig_stats`` (``python jobs/nig_stats.py --help``).
"""

import sys

from dugray.evaluation.nig_stats import main

if __name__ == "__main__":
    sys.exit(main())
