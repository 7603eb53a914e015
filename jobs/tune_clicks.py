"""Choose how labels carry and how proposals rank, on train/ and synthetic data (never on val/).

The code and its flags live in ``dugray.evaluation.click_tuning`` (``python jobs/tune_clicks.py --help``).
"""

import sys

from dugray.evaluation.click_tuning import main

if __name__ == "__main__":
    sys.exit(main())
