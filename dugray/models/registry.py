"""Build networks by name, timm style: ``create_model("unet", widths=...)``.

Two registries: matting networks F (image + user map -> NIG) and refiners R
(coarse patch + image patch -> refined patch). The decorators also tag the class with
its ``kind`` so a checkpoint knows which registry rebuilds it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_REFINERS: dict[str, Callable[..., nn.Module]] = {}


def _register(table: dict, kind: str, name: str):
    def deco(cls):
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered")
        cls.kind = kind
        table[name] = cls
        return cls

    return deco


def register_model(name: str):
    """Class decorator: make a matting network buildable as ``create_model(name)``."""
    return _register(_MODELS, "model", name)


def register_refiner(name: str):
    """Class decorator: make a refiner buildable as ``create_refiner(name)``."""
    return _register(_REFINERS, "refiner", name)


def _create(table: dict, kind: str, name: str, kw: dict) -> nn.Module:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; available: {', '.join(sorted(table))}")
    return table[name](**kw)


def create_model(name: str, **kw) -> nn.Module:
    """Instantiate the matting network registered as ``name`` with constructor kwargs."""
    return _create(_MODELS, "model", name, kw)


def create_refiner(name: str = "hrnet_lite", **kw) -> nn.Module:
    """Instantiate the refiner registered as ``name`` with constructor kwargs."""
    return _create(_REFINERS, "refiner", name, kw)


def available_models() -> list[str]:
    """Names of the registered matting networks (``create_model``'s choices), sorted."""
    return sorted(_MODELS)


def available_refiners() -> list[str]:
    """Names of the registered refiners (``create_refiner``'s choices), sorted."""
    return sorted(_REFINERS)


def create(kind: str, name: str, **kw) -> nn.Module:
    """Build from either registry; used by checkpoints (``kind`` is "model" or "refiner")."""
    if kind == "model":
        return create_model(name, **kw)
    if kind == "refiner":
        return create_refiner(name, **kw)
    raise ValueError(f"unknown network kind {kind!r}; expected 'model' or 'refiner'")
