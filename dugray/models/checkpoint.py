"""Save a network with the recipe to rebuild it; load it back by name.

A checkpoint is ``torch.save`` of a plain dict::

    {"format": 1, "kind": "model" | "refiner", "name": str, "config": dict,
     "state_dict": ..., "extra": anything plain (epoch, metrics, optimiser state ...)}

``config`` is the network's ``.config`` (its constructor kwargs + name), so loading
needs no code beyond the registry. Files are read with ``weights_only=True`` (no
arbitrary unpickling), so ``extra`` should hold plain Python values and tensors.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from .registry import create

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint file exists but is unreadable, incomplete or does not fit its network."""


def save_checkpoint(model: nn.Module, path, extra=None) -> Path:
    """Write ``model`` (weights + config) to ``path`` atomically; returns the path."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("model has no .config with a 'name'; build it with create_model/create_refiner")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {k: v for k, v in config.items() if k != "name"}
    payload = {
        "format": FORMAT,
        "kind": getattr(model, "kind", "model"),
        "name": config["name"],
        "config": kw,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half-written checkpoint
    return path


def read_checkpoint(path, map_location="cpu") -> dict:
    """The raw checkpoint dict, validated; raises FileNotFoundError or CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a bad file (pickle, zip, EOF ...)
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    missing = [k for k in ("name", "config", "state_dict") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a dugray checkpoint (missing {', '.join(missing)})")
    return ckpt


KIND_WORDS = {"model": "matting network", "refiner": "refiner"}
"""A checkpoint's recorded kind -> what a user calls that network (one vocabulary for every message)."""


def check_kind(found: str, wanted: str, source) -> None:
    """CheckpointError when ``source`` holds a network of kind ``found`` but ``wanted`` was asked for
    (checkpoint kinds: 'model', 'refiner')."""
    if found != wanted:
        raise CheckpointError(
            f"{source} holds a {KIND_WORDS.get(found, found)}, not a {KIND_WORDS.get(wanted, wanted)}"
        )


def load_checkpoint(path, map_location="cpu", kind: str | None = None) -> nn.Module:
    """Rebuild the network saved at ``path`` (via the registry) and load its weights.

    Returned in eval mode, ready for inference (call ``.train()`` to resume training);
    the checkpoint's ``extra`` is attached as ``model.checkpoint_extra``. ``kind``
    ('model' or 'refiner') is checked against the checkpoint's before anything is built.
    """
    ckpt = read_checkpoint(path, map_location)
    if kind is not None:
        check_kind(ckpt.get("kind", "model"), kind, path)
    try:
        model = create(ckpt.get("kind", "model"), ckpt["name"], **ckpt["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"cannot rebuild network from {path}: {e}") from e
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"weights in {path} do not fit {ckpt['name']!r}: {e}") from e
    model.checkpoint_extra = ckpt.get("extra")
    if isinstance(map_location, (str, torch.device)):
        model = model.to(map_location)
    return model.eval()
