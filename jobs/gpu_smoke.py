"""GPU smoke test: a few training steps of each stage and one matting request on the GPU(s) found.

The code and its flags live in ``jobs/benchmarks/gpu_smoke.py`` (``python jobs/gpu_smoke.py --help``);
exits 2, saying so, on a machine without a CUDA GPU (``--cpu`` runs the same steps on the CPU).
"""

import sys

from benchmarks.gpu_smoke import main

if __name__ == "__main__":
    sys.exit(main())
