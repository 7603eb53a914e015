"""A small U-Net matting network with the NIG head (``create_model("unet")``).

Encoder: one level per entry of ``widths``, each a (strided) 3x3 conv + 3x3 conv; the
first level runs at full resolution, each next one at half the previous.
Decoder: at every scale, bilinear-upsample the coarser features, concatenate the
encoder skip AND the user-map planes average-pooled to that scale, two 3x3 convs.
Injecting the user map at each decoder scale (not only at the input) gives the labels
a short path to the output, so a label reliably changes the prediction around it.

Speed: everything at full resolution is kept at ``widths[0]`` channels (the upsampled
decoder features are projected down by a 1x1 conv *before* upsampling to full size);
wide tensors at 512x512 are what make a U-Net slow on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import MattingNet
from .layers import ConvNormAct, upsample
from .nig_head import NIGHead
from .registry import register_model


def _double_conv(cin, cout, stride, norm):
    return nn.Sequential(ConvNormAct(cin, cout, 3, stride, norm=norm), ConvNormAct(cout, cout, 3, norm=norm))


class _DecoderStage(nn.Module):
    """Upsample deep features x to the skip's size, concat skip + user planes, 2 convs."""

    def __init__(self, c_deep, c_skip, norm, project_first=False, planes=3):
        super().__init__()
        # At full resolution, squeeze the deep features to c_skip channels before upsampling.
        self.project = ConvNormAct(c_deep, c_skip, 1, norm=norm) if project_first else nn.Identity()
        c_up = c_skip if project_first else c_deep
        self.convs = _double_conv(c_up + c_skip + planes, c_skip, 1, norm)

    def forward(self, x, skip, planes):
        x = upsample(self.project(x), skip.shape[-2:])
        return self.convs(torch.cat([x, skip, planes], dim=1))


@register_model("unet")
class UNetMatting(MattingNet):
    """U-Net F(image | user map) -> NIG. ``widths``: channels per level, full res first.

    ``extra_planes``: guidance planes (e.g. a saliency prior) that enter beside the user
    planes, at the input and at every decoder stage; the network that owns them passes
    them in ``planes`` after the three user planes."""

    def __init__(self, widths=(16, 32, 64, 96, 160), head_mid=8, alpha_min=1.0, norm="bn", extra_planes=0):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError("unet needs at least two levels")
        self.config = {"name": "unet", "widths": widths, "head_mid": head_mid, "alpha_min": alpha_min, "norm": norm}
        if extra_planes:
            self.config["extra_planes"] = int(extra_planes)
        self.stride = 2 ** (len(widths) - 1)
        planes = 3 + int(extra_planes)
        cin = 3 + planes  # normalised RGB + fg/bg/transition planes (+ guidance)
        self.encoder = nn.ModuleList(
            _double_conv(cin if i == 0 else widths[i - 1], w, 1 if i == 0 else 2, norm) for i, w in enumerate(widths)
        )
        self.decoder = nn.ModuleList(
            _DecoderStage(widths[i + 1], widths[i], norm, project_first=(i == 0), planes=planes)
            for i in range(len(widths) - 1)
        )
        self.head = NIGHead(widths[0], head_mid, alpha_min=alpha_min, norm=norm)

    def features(self, x, planes):
        """Encoder, then decoder with skips -> full-resolution (padded) features for the NIG head;
        the user planes enter at the input and, pooled, at every decoder stage.
        """
        skips, pyramid = [], [planes]
        x = torch.cat([x, planes], dim=1)
        for i, stage in enumerate(self.encoder):
            x = stage(x)
            skips.append(x)
            if i > 0:
                pyramid.append(F.avg_pool2d(pyramid[-1], 2))
        x = skips.pop()
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](x, skips[i], pyramid[i])
        return x
