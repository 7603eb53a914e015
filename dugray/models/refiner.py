"""The refinement network R: an HRNet-lite over 32x32 patches (``create_refiner("hrnet_lite")``).

The paper uses Naive Lite-HRNet-18 (0.7M parameters) "and bilinear interpolation". We
keep its structure - parallel branches at 1, 1/2 and 1/4 of the patch resolution,
depthwise-separable residual blocks, repeated exchange units (bilinear upsample from coarser
branches, strided depthwise-separable convs from finer ones) - but do NOT downsample
the input first: the patches are only 32x32 and R exists to restore fine detail, so
the top branch stays at full patch resolution. Coarser branches are merged back into
it with bilinear upsampling at the end.

Input: the sampled coarse matte gamma_s (1 ch) and the image patch (3 ch, [0,1]).
Output: coarse + residual, clamped to [0,1]. The last conv is zero-initialised, so an
untrained R is exactly the identity (R(coarse, img) == coarse) and training starts from
"do no harm". The clamp passes gradients straight through (its forward value is the
clamp, its gradient the identity), so pixels pushed past 0 or 1 still get pulled back.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dugray.detail_patches import NOISES

from .layers import ConvNormAct, DWSeparable, crop, normalize_image, pad_to_multiple, upsample
from .registry import register_refiner


class LiteBlock(nn.Module):
    """Residual depthwise-separable unit: dw 3x3 -> norm -> 1x1 -> norm -> (+x) -> ReLU.

    Same role as Lite-HRNet's shuffle block (cheap spatial mixing + cheap channel
    mixing), without the channel split/shuffle copies that dominate CPU time on small
    32x32 maps.
    """

    def __init__(self, channels: int, norm: str = "bn"):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, groups=channels, norm=norm, act=False),
            ConvNormAct(channels, channels, 1, norm=norm, act=False),
        )

    def forward(self, x):
        """ReLU(x + body(x)); same shape as ``x``."""
        return torch.relu(x + self.body(x))


class Exchange(nn.Module):
    """HRNet fusion: every output branch sums all input branches brought to its scale.

    Coarser -> finer: 1x1 conv + norm, then bilinear upsampling.
    Finer -> coarser: a chain of strided depthwise-separable convs (one per halving).
    """

    def __init__(self, widths, norm="bn"):
        super().__init__()
        n = len(widths)
        self.paths = nn.ModuleList()
        for j in range(n):  # output branch
            row = nn.ModuleList()
            for i in range(n):  # input branch
                if i == j:
                    row.append(nn.Identity())
                elif i > j:
                    row.append(ConvNormAct(widths[i], widths[j], 1, norm=norm, act=False))
                else:
                    steps = [DWSeparable(widths[i], widths[i], stride=2, norm=norm) for _ in range(j - i - 1)]
                    steps.append(
                        nn.Sequential(
                            ConvNormAct(widths[i], widths[i], 3, 2, groups=widths[i], norm=norm),
                            ConvNormAct(widths[i], widths[j], 1, norm=norm, act=False),
                        )
                    )
                    row.append(nn.Sequential(*steps))
            self.paths.append(row)

    def forward(self, xs):
        """Branch maps (finest first) -> as many maps, each the ReLU of the sum of all branches at its scale."""
        out = []
        for j, row in enumerate(self.paths):
            y = 0
            for i, path in enumerate(row):
                z = path(xs[i])
                y = y + (upsample(z, xs[j].shape[-2:]) if i > j else z)
            out.append(torch.relu(y))
        return out


class HRModule(nn.Module):
    """``blocks`` lite blocks on every branch, then one exchange unit."""

    def __init__(self, widths, blocks=2, norm="bn"):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[LiteBlock(w, norm) for _ in range(blocks)]) for w in widths)
        self.exchange = Exchange(widths, norm)

    def forward(self, xs):
        """Every branch through its lite blocks, then one exchange across branches (list in, list out)."""
        return self.exchange([b(x) for b, x in zip(self.branches, xs)])


@register_refiner("hrnet_lite")
class HRNetLiteRefiner(nn.Module):
    """HRNet-lite R(coarse | image) -> refined patch.

    ``widths``: channels of the branches (full, 1/2, 1/4 of the patch resolution);
    ``modules``: HR modules per stage (stage k runs the first k+1 branches).
    ``noise``: how its input gamma_s was drawn in training (:data:`dugray.detail_patches.NOISES`,
    Table 4); kept in the checkpoint so inference samples the same way.
    """

    def __init__(self, widths=(24, 64, 160), modules=(1, 3, 3), blocks=2, norm="bn", noise="aleatoric"):
        super().__init__()
        widths, modules = tuple(int(w) for w in widths), tuple(int(m) for m in modules)
        if len(modules) != len(widths):
            raise ValueError("need one module count per branch (stage k adds branch k)")
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
        self.config = {
            "name": "hrnet_lite",
            "widths": widths,
            "modules": modules,
            "blocks": blocks,
            "norm": norm,
            "noise": noise,
        }
        self.stride = 2 ** (len(widths) - 1)
        self.stem = nn.Sequential(
            ConvNormAct(4, widths[0], 3, norm=norm), ConvNormAct(widths[0], widths[0], 3, norm=norm)
        )
        self.new_branch = nn.ModuleList(
            DWSeparable(widths[k - 1], widths[k], stride=2, norm=norm) for k in range(1, len(widths))
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*[HRModule(widths[: k + 1], blocks, norm) for _ in range(m)]) for k, m in enumerate(modules)
        )
        # final merge into the top branch: 1x1 conv at the coarse scale, bilinear up, sum
        self.fuse = nn.ModuleList(ConvNormAct(w, widths[0], 1, norm=norm, act=False) for w in widths[1:])
        self.out = nn.Conv2d(widths[0], 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # zero residual at init: R starts as the identity
        nn.init.zeros_(self.out.bias)

    def forward(self, coarse: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """coarse (P,1,h,w) in [0,1], image (P,3,h,w) in [0,1] -> refined (P,1,h,w) in [0,1]."""
        if coarse.ndim != 4 or coarse.shape[1] != 1 or image.shape != (coarse.shape[0], 3, *coarse.shape[2:]):
            raise ValueError(
                f"expected coarse (P,1,h,w) and image (P,3,h,w), got {tuple(coarse.shape)}, {tuple(image.shape)}"
            )
        x = torch.cat([2 * coarse - 1, normalize_image(image)], dim=1)
        x, box = pad_to_multiple(x, self.stride)
        xs = [self.stem(x.contiguous(memory_format=torch.channels_last))]  # NHWC: faster on CPU
        for k, stage in enumerate(self.stages):
            if k > 0:
                xs.append(self.new_branch[k - 1](xs[-1]))
            xs = stage(xs)
        feats = xs[0]
        for fuse, t in zip(self.fuse, xs[1:]):
            feats = feats + upsample(fuse(t), feats.shape[-2:])
        feats = torch.relu(feats)
        refined = coarse + crop(self.out(feats), box)
        # straight-through clamp: forward value in [0,1], gradient of the identity
        return refined + (refined.clamp(0, 1) - refined).detach()
