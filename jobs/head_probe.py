"""Diagnosis of the aleatoric head: fine-tune only its evidence branches and watch E[sigma^2].

The code and its flags live in ``dugray.evaluation.head_probe`` (``python jobs/head_probe.py --help``).
"""

import sys

from dugray.evaluation.head_probe import main

if __name__ == "__main__":
    sys.exit(main())
