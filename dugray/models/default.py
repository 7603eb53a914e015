"""The shipped default model: the weights inside the package (``dugray/weights/``).

They are produced by this project's own training job (docs/training.md gives the command).
Every model, this one included, is loaded by :mod:`dugray.models.loading` (which knows where
these weights lie); this module only names the shortcut.
"""

from __future__ import annotations

import torch.nn as nn

from .loading import DEFAULT, WEIGHTS, default_paths, load_networks

__all__ = ["DEFAULT", "WEIGHTS", "default_paths", "load_default"]


def load_default(refiner: bool = True) -> tuple[nn.Module, nn.Module | None]:
    """(matting network, refiner or None) from the weights shipped in the package."""
    if not default_paths()["matting"].is_file():
        raise FileNotFoundError(
            f"no default model at {default_paths()['matting']}: reinstall dugray or pass a checkpoint"
        )
    return load_networks(DEFAULT, None if refiner else "none")
