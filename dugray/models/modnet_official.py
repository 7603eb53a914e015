"""Load the official MODNet weights (github.com/ZHKKKe/MODNet) into dugray's ``modnet``.

Nothing is downloaded: a user who has the official checkpoint (e.g.
``modnet_photographic_portrait_matting.ckpt``) points at it, and stage-1 training
fine-tunes dugMatting from it::

    python jobs/train.py --data DATA --out runs/x --stage 1 --arch modnet --init-from modnet-official:/path/modnet.ckpt

The official file is a plain state dict saved from ``nn.DataParallel(MODNet())``. The mapping:

- the ``module.`` prefix of DataParallel checkpoints is stripped;
- ``lr_branch.backbone.*``: the official LR branch holds a second reference to the backbone,
  so every backbone tensor is saved twice; the copies under ``backbone.*`` are used and
  ``lr_branch.backbone.*`` is read only where ``backbone.*`` is absent;
- the convs that take the image (:attr:`MODNet.IMAGE_INPUTS`) get 3 zero input channels for
  the user planes, right after the RGB channels, so the loaded network ignores the user map
  at first and computes what official MODNet computes;
- ``f_branch.conv_f.1.*`` (the final 1-channel matte conv) is dropped: dugMatting's NIG head
  takes its place and starts from its own initialisation (:class:`NIGHead`);
- every other official key maps 1:1 (same name, same shape).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .modnet import USER_PLANES, MODNet

log = logging.getLogger(__name__)

PREFIX = "modnet-official:"
"""``init_from`` / model-URI prefix that names an official MODNet checkpoint file."""
OFFICIAL_SIZES = {"hr_channels": 32, "width": 1.0, "last_channels": 1280}
"""The sizes of the released MODNet (also :class:`MODNet`'s defaults)."""
DROPPED = {"f_branch.conv_f.1.": "official 1-channel matte output; replaced by the NIG head"}
"""Official key prefixes that have no counterpart here, and why."""
ALIAS = ("lr_branch.backbone.", "backbone.")
"""The official LR branch's second reference to the backbone (same tensors)."""


class MappedState(dict):
    """A state dict in dugray's layout, plus what the mapping did with the rest:
    ``dropped`` (official keys with no counterpart, by design), ``aliased`` (duplicate
    backbone keys read under their primary name) and ``unmapped`` (unexpected keys)."""

    dropped: list
    aliased: list
    unmapped: list


def is_official_uri(uri) -> bool:
    """True for ``'modnet-official:PATH'``."""
    return isinstance(uri, str) and uri.startswith(PREFIX)


def official_path(uri: str) -> Path:
    """The file of a ``'modnet-official:PATH'`` URI (``~`` expanded)."""
    if not is_official_uri(uri):
        raise ValueError(f"not a {PREFIX}PATH URI: {uri!r}")
    path = uri[len(PREFIX) :].strip()
    if not path:
        raise ValueError(f"{PREFIX} needs a path to the official MODNet checkpoint, e.g. {PREFIX}/data/modnet.ckpt")
    return Path(path).expanduser()


def _strip_module(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


def _with_user_channels(weight: torch.Tensor, where: str, key: str) -> torch.Tensor:
    """Insert USER_PLANES zero input channels after the 3 RGB channels of a conv weight."""
    if weight.ndim != 4 or weight.shape[1] < 3:
        raise ValueError(
            f"{key}: expected a conv weight with the 3 image input channels, got shape {tuple(weight.shape)}"
        )
    at = 3 if where == "first" else weight.shape[1]
    zeros = weight.new_zeros(weight.shape[0], USER_PLANES, *weight.shape[2:])
    return torch.cat([weight[:, :at], zeros, weight[:, at:]], dim=1)


def official_to_dugray(state_dict: dict, model: MODNet | None = None, user_inputs: bool = True) -> MappedState:
    """Map an official MODNet state dict onto dugray's ``modnet`` layout.

    ``user_inputs`` (or ``model.user_inputs`` when ``model`` is given): expand the image
    convs with zero user-plane channels. With ``model``, keys it does not have are set
    aside as ``unmapped`` (and logged) and every shape is checked against it: a mismatch
    raises ValueError naming the key. Never modifies ``state_dict``.
    """
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in state_dict.items()
    ):
        raise ValueError("not a state dict (a mapping of parameter names to tensors)")
    if model is not None:
        user_inputs = model.user_inputs
    stripped = {}
    for k, v in state_dict.items():
        stripped.setdefault(_strip_module(k), v)
    out = MappedState()
    out.dropped, out.aliased, out.unmapped = [], [], []
    for key, value in stripped.items():
        if any(key.startswith(p) for p in DROPPED):
            out.dropped.append(key)
            continue
        if key.startswith(ALIAS[0]):
            primary = ALIAS[1] + key[len(ALIAS[0]) :]
            out.aliased.append(key)
            if primary in stripped:
                continue
            key = primary
        if user_inputs and key in MODNet.IMAGE_INPUTS:
            value = _with_user_channels(value, MODNet.IMAGE_INPUTS[key], key)
        out[key] = value
    if model is not None:
        target = model.state_dict()
        for key in list(out):
            if key not in target:
                out.unmapped.append(key)
                del out[key]
            elif out[key].shape != target[key].shape:
                raise ValueError(
                    f"official key {key!r} has shape {tuple(out[key].shape)} (after mapping), "
                    f"the network expects {tuple(target[key].shape)}: the checkpoint was built with "
                    f"other sizes (hr_channels / width / last_channels; official: {OFFICIAL_SIZES})"
                )
        if out.unmapped:
            log.warning("official MODNet keys with no counterpart, ignored: %s", ", ".join(out.unmapped))
    return out


def read_official_state(path) -> dict:
    """The state dict in an official MODNet checkpoint file (read with ``weights_only=True``).

    Accepts a plain state dict (the released files) or a dict holding one under
    ``'state_dict'`` / ``'model'``. FileNotFoundError when the file is missing, ValueError
    when it is unreadable or holds no state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"official MODNet checkpoint not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file (pickle, zip, EOF ...)
        raise ValueError(f"cannot read official MODNet checkpoint {path}: {type(e).__name__}: {e}") from e
    if isinstance(sd, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(sd.get(wrapper), dict):
                sd = sd[wrapper]
                break
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return sd


def load_official_modnet(path, **model_kwargs) -> MODNet:
    """A dugray ``modnet`` with the official MODNet weights at ``path`` (a fresh NIG head).

    ``model_kwargs`` go to :class:`MODNet` (defaults: the official sizes). Returned in train
    mode, on the CPU. The mapping's bookkeeping is attached as ``model.official_mapping``
    (``dropped``, ``aliased``, ``unmapped`` key lists). Raises FileNotFoundError (no file) or
    ValueError (unreadable, not a state dict, a shape mismatch, or official keys missing).
    """
    sd = read_official_state(path)
    model = MODNet(**model_kwargs)
    mapped = official_to_dugray(sd, model)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert not unexpected, unexpected  # official_to_dugray set them aside
    missing = [k for k in missing if not k.startswith("head.")]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{path} is not a complete official MODNet state dict: {len(missing)} keys missing ({shown})")
    model.official_mapping = {"dropped": mapped.dropped, "aliased": mapped.aliased, "unmapped": mapped.unmapped}
    log.info("loaded official MODNet weights from %s (%d tensors; dropped %s)", path, len(mapped), mapped.dropped)
    return model
