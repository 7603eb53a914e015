"""``python -m dugray.session`` (``setup.sh`` runs it): compile every numba kernel a session uses
into numba's on-disk cache (:func:`dugray.session.warmup.warm_up_kernels`)."""

import sys

from .warmup import main

sys.exit(main())
