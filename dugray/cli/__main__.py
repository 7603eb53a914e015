"""``python -m dugray.cli`` = the ``dugray`` console script."""

import sys

from dugray.cli import main

sys.exit(main())
