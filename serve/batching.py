"""``predict_round`` over a batch of requests: one forward pass per group of equal shapes.

Why grouping and not padding: at the working resolution (long side 512) images differ
in aspect ratio, so they cannot be stacked as they are. Padding to a common shape would
let every image see the padding through the convolutions and change its matte near the
border; grouping keeps every result equal to :func:`dugray.session.predict_round` on its
own input (batch norm is in eval mode, so samples do not interact). Same-shape requests
(square photos, a client's fixed camera size) share a pass; a group of one goes straight
through ``predict_round``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from dugray.nig import NIG
from dugray.session import predict_round


def predict_rounds(model, images_w: Sequence[np.ndarray], user_maps_w: Sequence[np.ndarray]) -> list[NIG]:
    """``[predict_round(model, x, u) for x, u in zip(...)]`` with same-shape inputs stacked."""
    if len(images_w) != len(user_maps_w):
        raise ValueError("need one user map per image")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (x, u) in enumerate(zip(images_w, user_maps_w)):
        groups[(np.shape(x), np.shape(u))].append(i)
    out: list[NIG | None] = [None] * len(images_w)
    for idx in groups.values():
        if len(idx) == 1:
            out[idx[0]] = predict_round(model, images_w[idx[0]], user_maps_w[idx[0]])
            continue
        for i, nig in zip(idx, _stacked_forward(model, [images_w[i] for i in idx], [user_maps_w[i] for i in idx])):
            out[i] = nig
    return out


def _stacked_forward(model, images, user_maps) -> list[NIG]:
    for x, u in zip(images, user_maps):
        _check_inputs(x, u)
    device = next(iter(model.parameters()), torch.empty(0)).device if isinstance(model, torch.nn.Module) else "cpu"
    x = np.stack([np.asarray(a, np.float32).transpose(2, 0, 1) for a in images])
    u = np.stack([np.asarray(a, np.float32) for a in user_maps])[:, None]
    with torch.inference_mode():
        out = model(torch.from_numpy(x).to(device), torch.from_numpy(u).to(device))
        maps = [t[:, 0].float().cpu().numpy() for t in out]
    return [NIG(*(m[j] for m in maps)) for j in range(len(images))]


def _check_inputs(image_w: np.ndarray, user_map_w: np.ndarray) -> None:
    """The same input checks as ``predict_round`` (ValueError with the same meaning)."""
    if np.ndim(image_w) != 3 or np.shape(image_w)[2] != 3:
        raise ValueError(f"image_w must be HxWx3 float, got shape {np.shape(image_w)}")
    if np.shape(user_map_w) != np.shape(image_w)[:2]:
        raise ValueError(f"user_map_w {np.shape(user_map_w)} must match the image {np.shape(image_w)[:2]}")
