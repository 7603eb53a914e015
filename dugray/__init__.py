"""dugray: uncertainty-guided interactive image matting (dugMatting) on Ray.

The core (``nig``, ``usermap``, ``proposal``, ``refine``, ``metrics``, ``models``) is
plain numpy/torch and imports no Ray; Ray lives at the edges (``pipeline``, ``train``,
``serve``).
"""

__version__ = "0.1.0"
