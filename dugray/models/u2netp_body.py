"""U^2-Netp (Qin et al., Pattern Recognition 2020) in torch, as rembg's ``u2netp.onnx`` has it.

The released file folds every batch norm into its convolution, so each REBNCONV here is
a 3x3 (dilated) conv with a bias followed by ReLU: the network of the file, not of the
training code. Nested U-blocks (RSU-L: an L-level U-Net inside each stage; RSU-4F: the
same with dilations instead of pooling) make a 6-stage encoder and a 5-stage decoder; six
side outputs (3x3 convs on each decoder stage and the last encoder stage) are upsampled
to full size and fused by a 1x1 conv. All outputs are logits here (the file applies the
sigmoid): the NIG head and the deep-supervision losses want them.

119 convolutions in forward order; :mod:`dugray.models.u2netp_onnx` maps the file's Conv
nodes onto them in that order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import PointwiseConv2d

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 320
"""U^2-Netp was trained on 320x320 inputs; rembg resizes every image to it."""


class REBNConv(nn.Module):
    """3x3 conv (dilation ``d``, bias: the batch norm folded in) + ReLU."""

    def __init__(self, cin: int, cout: int, d: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=d, dilation=d)

    def forward(self, x):
        return F.relu(self.conv(x))


def _up_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """Residual U-block with ``levels`` levels (RSU-7 .. RSU-4), or the dilated RSU-4F (``dilated=True``)."""

    def __init__(self, levels: int, cin: int, mid: int, cout: int, dilated: bool = False):
        super().__init__()
        self.dilated = dilated
        self.conv_in = REBNConv(cin, cout)
        if dilated:  # RSU-4F: dilations 1, 2, 4, 8 at one resolution
            dils = [1, 2, 4]
            bottom = 8
        else:
            dils = [1] * (levels - 1)
            bottom = 2
        self.down = nn.ModuleList(REBNConv(cout if i == 0 else mid, mid, d) for i, d in enumerate(dils))
        self.bottom = REBNConv(mid, mid, bottom)
        # decoder: from the deepest level up; the last one gives cout channels
        self.up = nn.ModuleList(
            REBNConv(2 * mid, cout if i == len(dils) - 1 else mid, d) for i, d in enumerate(reversed(dils))
        )

    def forward(self, x):
        hin = self.conv_in(x)
        skips, h = [], hin
        for i, conv in enumerate(self.down):
            h = conv(h)
            skips.append(h)
            if not self.dilated and i < len(self.down) - 1:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        h = self.bottom(h)
        for conv, skip in zip(self.up, reversed(skips)):
            if h.shape[-2:] != skip.shape[-2:]:
                h = _up_like(h, skip)
            h = conv(torch.cat([h, skip], dim=1))
        return h + hin


class U2NetP(nn.Module):
    """U^2-Netp: image (B, 3, H, W), ImageNet-standardised, -> 7 logit maps (fused, side1..side6).

    ``extra_in`` input channels after the RGB ones (dugMatting's user planes) start at zero,
    so with them the network computes exactly what the file does.
    """

    def __init__(self, extra_in: int = 0):
        super().__init__()
        mid, ch = 16, 64
        self.extra_in = extra_in
        self.encoder = nn.ModuleList(
            [
                RSU(7, 3 + extra_in, mid, ch),
                RSU(6, ch, mid, ch),
                RSU(5, ch, mid, ch),
                RSU(4, ch, mid, ch),
                RSU(4, ch, mid, ch, dilated=True),
                RSU(4, ch, mid, ch, dilated=True),
            ]
        )
        self.decoder = nn.ModuleList(
            [  # stage5d, 4d, 3d, 2d, 1d
                RSU(4, 2 * ch, mid, ch, dilated=True),
                RSU(4, 2 * ch, mid, ch),
                RSU(5, 2 * ch, mid, ch),
                RSU(6, 2 * ch, mid, ch),
                RSU(7, 2 * ch, mid, ch),
            ]
        )
        self.side = nn.ModuleList(nn.Conv2d(ch, 1, 3, padding=1) for _ in range(6))  # side1 .. side6
        self.fuse = PointwiseConv2d(6, 1)

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> (the last decoder stage's 64 features at full size, the 6 side logits at full size)."""
        enc, h = [], x
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            h = stage(h)
            enc.append(h)
        dec = [enc[-1]]  # hx6, then hx5d .. hx1d
        for stage, skip in zip(self.decoder, reversed(enc[:-1])):
            dec.append(stage(torch.cat([_up_like(dec[-1], skip), skip], dim=1)))
        feats = dec[-1]
        # side1 from hx1d, side2 from hx2d, ..., side6 from hx6 (the file's order)
        sides = [self.side[i](dec[5 - i]) for i in range(6)]
        sides = [sides[0]] + [_up_like(s, sides[0]) for s in sides[1:]]
        return feats, sides

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """-> [fused, side1, ..., side6] logits (B, 1, H, W); sigmoid gives the file's outputs."""
        _, sides = self.decode(x)
        return [self.fuse(torch.cat(sides, dim=1))] + sides


def rembg_input(image_rgb: np.ndarray) -> torch.Tensor:
    """rembg's preprocessing of an RGB uint8 image: 320x320 Lanczos (PIL), / max, ImageNet mean/std."""
    from PIL import Image

    im = np.asarray(Image.fromarray(np.ascontiguousarray(image_rgb)).resize((SIZE, SIZE), Image.LANCZOS), np.float64)
    im = im / max(float(im.max()), 1e-12)
    im = (im - np.array(MEAN)) / np.array(STD)
    return torch.from_numpy(im.transpose(2, 0, 1)[None].astype(np.float32))


def rembg_mask(net: U2NetP, image_rgb: np.ndarray) -> np.ndarray:
    """rembg's ``remove(..., only_mask=True)`` with U^2-Netp: min-max normalised sigmoid, uint8,
    Lanczos back to the image's size. -> uint8 (H, W)."""
    from PIL import Image

    with torch.inference_mode():
        pred = torch.sigmoid(net(rembg_input(image_rgb))[0])[0, 0].double().numpy()
    pred = (pred - pred.min()) / max(pred.max() - pred.min(), 1e-12)
    mask = Image.fromarray((pred * 255).astype(np.uint8))  # 2-D uint8: mode L
    h, w = image_rgb.shape[:2]
    return np.asarray(mask.resize((w, h), Image.LANCZOS))
