"""Load the networks a replica serves, on the device Ray gave it (by :func:`dugray.models.load_networks`)."""

from __future__ import annotations

import torch

from dugray.models import load_networks
from serve.settings import ServeSettings


def replica_device(settings: ServeSettings) -> torch.device:
    """CUDA when asked for or when 'auto' and this replica was given a GPU; else CPU."""
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def load_matting(settings: ServeSettings) -> torch.nn.Module:
    """The matting network F in eval mode (FileNotFoundError/CheckpointError fail the replica)."""
    set_threads(settings)
    model = load_networks(settings.model, settings.refiner, replica_device(settings), parts=("matting",))[0]
    if settings.network_max_side is not None:  # dugray.session.network.capped_forward reads it
        model.infer_max_side = int(settings.network_max_side)
    return model


def load_refiner(settings: ServeSettings) -> torch.nn.Module | None:
    """The refiner R, or None when none goes with the model (refinement then keeps the matte)."""
    set_threads(settings)
    return load_networks(settings.model, settings.refiner, replica_device(settings), parts=("refiner",))[1]


def set_threads(settings: ServeSettings) -> None:
    """Apply ``torch_threads`` to the calling thread. torch's intra-op thread count is
    per thread: a replica's methods do not run on the thread that ran ``__init__``, and
    without this two 1-thread replicas each used every core (oversubscribed, far slower)."""
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
