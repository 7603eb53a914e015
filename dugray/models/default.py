"""The shipped default model: the weights inside the package (``dugray/weights/``).

They are produced by this project's own training job (the README gives the command).
Loading any other model goes through :mod:`dugray.models.loading`.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEFAULT = "default"


def default_paths() -> dict[str, Path]:
    """Where the shipped matting network and refiner lie."""
    return {"matting": WEIGHTS / "matting.pt", "refiner": WEIGHTS / "refiner.pt"}


def load_default(refiner: bool = True) -> tuple[nn.Module, nn.Module | None]:
    """(matting network, refiner or None) from the weights shipped in the package."""
    from .loading import load_networks  # the one loader (it imports this module)

    if not default_paths()["matting"].is_file():
        raise FileNotFoundError(f"no default model at {default_paths()['matting']}: reinstall dugray or pass a checkpoint")
    return load_networks(DEFAULT, None if refiner else "none")
