"""Load the networks a replica serves, on the device Ray gave it."""

from __future__ import annotations

import logging

import torch

from dugray.models import load_model
from serve.settings import ServeSettings

log = logging.getLogger("ray.serve")


def replica_device(settings: ServeSettings) -> torch.device:
    """CUDA when asked for or when 'auto' and this replica was given a GPU; else CPU."""
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def load_matting(settings: ServeSettings) -> torch.nn.Module:
    """The matting network F in eval mode (FileNotFoundError/CheckpointError fail the replica)."""
    set_threads(settings)
    return load_model(settings.model, "matting").to(replica_device(settings)).eval()


def load_refiner(settings: ServeSettings) -> torch.nn.Module | None:
    """The refiner R, or None when none is configured (refinement then keeps the fused matte)."""
    set_threads(settings)
    uri = settings.refiner_uri
    if uri is None:
        return None
    try:
        net = load_model(uri, "refiner")
    except FileNotFoundError:
        if settings.refiner is not None:
            raise  # asked for explicitly: a missing file is an error
        log.warning("no refiner found beside model %r; refinement keeps the fused matte", settings.model)
        return None
    return net.to(replica_device(settings)).eval()


def set_threads(settings: ServeSettings) -> None:
    """Apply ``torch_threads`` to the calling thread. torch's intra-op thread count is
    per thread: a replica's methods do not run on the thread that ran ``__init__``, and
    without this two 1-thread replicas each used every core (oversubscribed, far slower)."""
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
