"""The matting network's step: image and user map in, one NIG per pixel out (torch here only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dugray.models.layers import user_planes
from dugray.nig import NIG


def predict_round(model, image_w: np.ndarray, user_map_w: np.ndarray) -> NIG:
    """Run the matting network once: float (h, w, 3) image in [0, 1] + U -> NIG of float32 (h, w).

    Runs under ``torch.inference_mode`` on the model's device; the caller puts the model
    in eval mode (batch-norm statistics of a batch of one are meaningless).
    """
    return _forward(model, [image_w], [user_map_w])[0]


def predict_rounds(model, images_w: Sequence[np.ndarray], user_maps_w: Sequence[np.ndarray]) -> list[NIG]:
    """``[predict_round(model, x, u) for x, u in zip(...)]`` with same-shape inputs in one pass.

    Why grouping and not padding (a server batches concurrent requests): at the working
    resolution images differ in aspect ratio, and padding them to one shape would let
    every image see the padding through the convolutions and change its matte near the
    border; grouping keeps every result equal to :func:`predict_round` on its own input
    (batch norm is in eval mode, so samples do not interact).
    """
    if len(images_w) != len(user_maps_w):
        raise ValueError("need one user map per image")
    groups: dict[tuple, list[int]] = {}
    for i, (x, u) in enumerate(zip(images_w, user_maps_w)):
        groups.setdefault((np.shape(x), np.shape(u)), []).append(i)
    out: list[NIG | None] = [None] * len(images_w)
    for idx in groups.values():
        for i, nig in zip(idx, _forward(model, [images_w[i] for i in idx], [user_maps_w[i] for i in idx])):
            out[i] = nig
    return out


def _forward(model, images_w: Sequence[np.ndarray], user_maps_w: Sequence[np.ndarray]) -> list[NIG]:
    """One forward pass over same-shape inputs (checked here, once for every caller)."""
    images = [np.asarray(x, np.float32) for x in images_w]
    maps = [np.asarray(u, np.float32) for u in user_maps_w]
    for x, u in zip(images, maps):
        if x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"image_w must be HxWx3 float, got shape {x.shape}")
        if u.shape != x.shape[:2]:
            raise ValueError(f"user_map_w {u.shape} must match the image {x.shape[:2]}")
    device = device_of(model)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(np.stack([a.transpose(2, 0, 1) for a in images]))).to(device)
        u = torch.from_numpy(np.ascontiguousarray(np.stack(maps)[:, None])).to(device)
        out = [t[:, 0].float().cpu().numpy() for t in capped_forward(model, x, u)]
    return [NIG(*(m[j] for m in out)) for j in range(len(images))]


def capped_forward(model, x: torch.Tensor, u: torch.Tensor) -> NIG:
    """``model(x, u)``, at most at the network's inference resolution: a model whose
    ``infer_max_side`` is set runs on the image shrunk to that long side (antialiased), with
    every labelled pixel kept (:func:`shrink_user_map`), and its four NIG maps come back at
    (H, W), bilinear (a convex mix of positive values stays positive). The working size
    still sets the solve's and the labels' resolution; the cap only spares the network work
    it does not repay (u2netp: docs/evaluation.md, 'Network resolution')."""
    cap = getattr(model, "infer_max_side", None)
    h, w = x.shape[-2:]
    if not cap or max(h, w) <= cap:
        return model(x, u)
    scale = cap / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    out = model(small.clamp(0, 1), shrink_user_map(u, size))
    return NIG(*(torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False) for t in out))


PAINT_ORDER = ((1, -1.0), (2, 0.5), (0, 1.0))
"""(plane of :func:`dugray.models.layers.user_planes`, the user map's value): bg, transition, fg, later
ones winning where a shrunk pixel holds several."""


def shrink_user_map(u: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,1,H,W) user map -> (B,1,*size): a shrunk pixel carries a label when any pixel it covers
    does (a click of one pixel survives any shrink; nearest-neighbour sampling would drop it). The
    labels are read as the network reads them (:func:`user_planes`)."""
    covered = torch.nn.functional.interpolate(user_planes(u.float()), size=size, mode="area") > 0
    small = torch.zeros((u.shape[0], 1, *size), dtype=u.dtype, device=u.device)
    for plane, value in PAINT_ORDER:
        small[covered[:, plane : plane + 1]] = value
    return small


def device_of(net) -> torch.device:
    """Device of a module's first parameter or buffer; CPU for parameter-free callables."""
    if isinstance(net, torch.nn.Module):
        for t in net.parameters():
            return t.device
        for t in net.buffers():
            return t.device
    return torch.device("cpu")
