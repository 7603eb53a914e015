"""dugray: uncertainty-guided interactive image matting (dugMatting) on Ray.

The front door, for use in Python (the ``dugray`` command, the Serve app and the jobs
are built on the same names):

    >>> import numpy as np
    >>> from dugray import MattingSession, SessionConfig, load_networks
    >>> net, refiner = load_networks("default")          # the shipped model, on the CPU
    >>> image = np.full((60, 80, 3), 30, np.uint8)
    >>> image[15:45, 20:60] = (230, 190, 40)              # a yellow card on a dark table
    >>> session = MattingSession(image, net, refiner, SessionConfig(n=4)).start()
    >>> session.alpha.shape, len(session.proposals) <= 4
    ((60, 80), True)
    >>> session = session.label([((20, 30, 40, 50), "fg"), ((0, 0, 10, 80), "bg")])
    >>> session.rounds, float(session.alpha[30, 40]), float(session.alpha[5, 5])
    (2, 1.0, 0.0)
    >>> session.refine().cutout().shape                   # RGBA, colours re-estimated
    (60, 80, 4)

One shot, nobody to ask (the bytes ``dugray cutout`` and ``POST /v1/matte`` give)::

    >>> from dugray import matte_image
    >>> matte_image(image, net).render("alpha")[:4]       # PNG bytes of the alpha matte
    b'\x89PNG'

The core (``nig``, ``usermap``, ``proposal``, ``solve``, ``propagate``, ``detail_patches``,
``upsample``, ``sym3``) never imports the session, the models or the Serve app
(``tests/test_layers.py``); the models, the metrics and the session above it are plain
numpy/torch too and import no Ray; Ray lives at the edges (``pipeline``, ``train``,
``batch`` and the ``serve`` package). The names below are imported on first use, so
``import dugray`` stays cheap.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "MattingSession": "dugray.session",
    "SessionConfig": "dugray.session",
    "matte_image": "dugray.oneshot",
    "load_networks": "dugray.models",
    "load_model": "dugray.models",
    "create_model": "dugray.models",
    "available_models": "dugray.models",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module 'dugray' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
