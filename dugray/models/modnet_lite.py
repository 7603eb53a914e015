"""MODNet-style lightweight matting network with the NIG head (``create_model("modnet_lite")``).

MODNet (Ke et al., 2022) splits matting into three branches over one shared encoder:

- low-resolution **semantic** branch: the deepest encoder features (1/32) with channel
  attention (squeeze-excite), upsampled to 1/8: "where is the object";
- high-resolution **detail** branch: works at 1/4 and 1/2 from the image and the early
  encoder features, guided by the semantic features: "where are the fine edges";
- **fusion** branch: merges both at 1/2, goes to full resolution with the image and
  predicts the matte - here the shared features of the :class:`NIGHead`.

"Lite": a MobileNetV2-style encoder (inverted residuals, depthwise convs) with small
widths, and depthwise-separable convs in the detail and fusion branches. As in the
U-Net, the user-map planes enter at the input and again at every branch scale.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import MattingNet
from .layers import ConvNormAct, DWSeparable, InvertedResidual, SqueezeExcite, upsample
from .nig_head import NIGHead
from .registry import register_model


def _stage(cin, cout, n, norm, expand=4):
    """n inverted residuals; the first halves the resolution."""
    blocks = [InvertedResidual(cin, cout, 2, expand, norm)]
    blocks += [InvertedResidual(cout, cout, 1, expand, norm) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


def _resize(x, ref):
    return upsample(x, ref.shape[-2:])


def _pool(x, factor):
    return F.avg_pool2d(x, factor) if factor > 1 else x


@register_model("modnet_lite")
class MODNetLite(MattingNet):
    """MODNet-lite F(image | user map) -> NIG. ``width`` scales every branch (default 20)."""

    def __init__(self, width=20, head_mid=8, alpha_min=1.0, norm="bn"):
        super().__init__()
        self.config = {
            "name": "modnet_lite",
            "width": width,
            "head_mid": head_mid,
            "alpha_min": alpha_min,
            "norm": norm,
        }
        self.stride = 32
        w = width
        e2, e4, e8, e16, e32 = w, w * 3 // 2, 2 * w, 4 * w, 8 * w  # 20, 30, 40, 80, 160 by default
        hr, lr = w, 2 * w  # detail / semantic branch widths
        P = 3  # user planes

        # shared encoder (input: normalised RGB + user planes)
        self.enc2 = ConvNormAct(3 + P, e2, 3, stride=2, norm=norm)
        self.enc4 = _stage(e2, e4, 2, norm)
        self.enc8 = _stage(e4, e8, 3, norm)
        self.enc16 = _stage(e8, e16, 3, norm)
        self.enc32 = _stage(e16, e32, 2, norm)

        # low-resolution semantic branch: 1/32 -> 1/16 -> 1/8
        self.se = SqueezeExcite(e32)
        self.lr16 = ConvNormAct(e32 + e16 + P, 2 * lr, 3, norm=norm)
        self.lr8 = ConvNormAct(2 * lr + P, lr, 3, norm=norm)

        # high-resolution detail branch: 1/2 -> 1/4 -> 1/2
        self.hr_in = DWSeparable(e2 + 3 + P, hr, stride=2, norm=norm)  # -> 1/4
        self.hr_enc4 = DWSeparable(hr + e4, 2 * hr, norm=norm)
        self.hr4 = nn.Sequential(
            DWSeparable(2 * hr + lr + 3 + P, 2 * hr, norm=norm), DWSeparable(2 * hr, hr, norm=norm)
        )
        self.hr2 = nn.Sequential(DWSeparable(hr + e2, hr, norm=norm), DWSeparable(hr, hr, norm=norm))

        # fusion branch: semantic (1/8 -> 1/4 -> 1/2) + detail at 1/2, then full resolution
        self.f_lr4 = ConvNormAct(lr, hr, 3, norm=norm)
        self.f2 = DWSeparable(2 * hr, hr, norm=norm)
        self.f1 = ConvNormAct(hr + 3 + P, hr, 3, norm=norm)
        self.head = NIGHead(hr, head_mid, alpha_min=alpha_min, norm=norm)

    def features(self, x, planes):
        """Semantic, detail and fusion branches -> full-resolution (padded) features for the NIG head;
        the user planes enter at the input and at every branch scale.
        """
        img = {1: x, 2: _pool(x, 2), 4: _pool(x, 4)}
        pl = {s: _pool(planes, s) for s in (1, 2, 4, 8, 16)}

        enc2 = self.enc2(torch.cat([x, planes], dim=1))
        enc4 = self.enc4(enc2)
        enc16 = self.enc16(self.enc8(enc4))
        enc32 = self.se(self.enc32(enc16))

        # semantic
        lr16 = self.lr16(torch.cat([_resize(enc32, enc16), enc16, pl[16]], dim=1))
        lr8 = self.lr8(torch.cat([upsample(lr16, pl[8].shape[-2:]), pl[8]], dim=1))

        # detail
        hr4 = self.hr_in(torch.cat([enc2, img[2], pl[2]], dim=1))
        hr4 = self.hr_enc4(torch.cat([hr4, enc4], dim=1))
        lr4 = _resize(lr8, hr4)
        hr4 = self.hr4(torch.cat([hr4, lr4, img[4], pl[4]], dim=1))
        hr2 = self.hr2(torch.cat([_resize(hr4, enc2), enc2], dim=1))

        # fusion
        f2 = self.f2(torch.cat([_resize(self.f_lr4(lr4), hr2), hr2], dim=1))
        return self.f1(torch.cat([_resize(f2, x), x, planes], dim=1))
