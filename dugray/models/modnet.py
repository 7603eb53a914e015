"""MODNet (Ke et al., AAAI 2022) as dugMatting used it: the real architecture with the NIG head
on its fusion branch (``create_model("modnet")``).

The module tree and parameter names follow the official code (github.com/ZHKKKe/MODNet,
``src/models/modnet.py`` and ``src/models/backbones``), so the official pretrained state dict
maps onto it key for key (:mod:`dugray.models.modnet_official` does the mapping):

- ``backbone.model.features.{0..18}``: MobileNetV2 (width multiplier ``width``, expansion 6,
  ReLU6, BatchNorm); its stages give the encoder features at 1/2, 1/4, 1/8, 1/16, 1/32
  (1/32 after the final 1x1 conv to ``last_channels`` = 1280);
- ``lr_branch`` (low-resolution semantic branch): ``se_block`` (channel attention on the 1/32
  features) -> ``conv_lr16x`` (5x5 at 1/16) -> ``conv_lr8x`` (5x5 at 1/8); ``conv_lr`` (3x3,
  stride 2) gives the semantic prediction at 1/16;
- ``hr_branch`` (high-resolution detail branch): ``tohr_enc2x``, ``conv_enc2x``, ``tohr_enc4x``,
  ``conv_enc4x``, ``conv_hr4x``, ``conv_hr2x`` (1/4 -> 1/2, image and encoder features plus the
  upsampled semantic features); ``conv_hr`` gives the detail prediction at full resolution;
- ``f_branch`` (fusion branch): ``conv_lr4x``, ``conv_f2x``, ``conv_f``.
Every conv of the three branches is a ``Conv2dIBNormRelu`` (conv with bias -> IBNorm: half
BatchNorm, half InstanceNorm -> ReLU), as in the official code.

What differs from official MODNet, for dugMatting:

(a) **The user map.** The three 0/1 user planes (fg, bg, transition; :func:`user_planes`) are
    concatenated to the image everywhere MODNet feeds the image: at the MobileNetV2 input
    (first conv: 3 + 3 input channels), into ``hr_branch.conv_enc2x`` (image at 1/2),
    ``hr_branch.conv_hr4x`` (1/4), ``hr_branch.conv_hr`` (full) and ``f_branch.conv_f`` (full).
    The image is downsampled bilinearly as in the official code; the planes are
    average-pooled (the fraction of each cell labelled fg/bg/transition, so a click smaller
    than the downsampling factor is not lost). The RGB channels come first, the planes right
    after them. The official loader copies the RGB weights into the RGB channels and zero-fills
    the plane channels, so a freshly loaded network ignores the user map and computes what
    official MODNet computes (to float precision) until fine-tuning teaches it the labels.
    ``user_inputs=False`` builds the official, image-only layout (the user map is then
    ignored): the reference the loader and its tests map from.
(b) **The NIG head.** The fusion branch's last layer (official ``f_branch.conv_f.1``, a 1x1
    conv to one channel + sigmoid) is replaced by a :class:`NIGHead` on the fusion branch's
    last hidden features (``f_branch.conv_f.0``'s output: ``hr_channels // 2`` channels at full
    resolution). The official ``conv_f.1`` weights are dropped by the loader; everything else
    loads.
(c) **Normalisation.** Official MODNet standardises the image with mean 0.5 and std 0.5 (to
    [-1, 1]), not with the ImageNet statistics the other dugray networks use: this class
    overrides :meth:`MattingNet.normalize` accordingly, so official weights see what they were
    trained on.
(d) **Side outputs.** ``forward(image, user_map, return_aux=True)`` also returns MODNet's
    semantic (1/16) and detail (full resolution) predictions for its own losses
    (:mod:`dugray.train.modnet_losses`); without it they are not computed (as the official
    ``inference=True``), so those two small heads get gradients only from those losses.
(e) ``IBNorm`` splits odd channel counts correctly (the official slice is only right for even
    counts, which all official sizes are; for even counts it is the same computation).
(f) The input is padded (reflect) to a multiple of 32 and the outputs cropped back, like every
    dugray network; official MODNet's demo resizes to a multiple of 32 instead.

Default sizes are the official ones (``hr_channels=32``, ``width=1.0``, ``last_channels=1280``):
about 6.5M parameters, so the official weights fit. Tests and CPU smoke runs pass smaller ones.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dugray.nig import NIG

from .base import MattingNet
from .layers import PointwiseConv2d, conv2d, crop
from .nig_head import NIGHead
from .registry import register_model

USER_PLANES = 3
"""fg / bg / transition planes concatenated to the image (see :func:`dugray.models.layers.user_planes`)."""


def make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding: nearest multiple of ``divisor``, never more than 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


# ---------------------------------------------------------------- MobileNetV2 encoder


def _conv_bn_relu6(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """conv (no bias) -> BN -> ReLU6; indices 0/1/2 as the official ``conv_bn`` / ``conv_1x1_bn``."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block in the official layout (``conv.0`` ... ``conv.7``; no expansion conv when t = 1)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = round(cin * expansion)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:  # pointwise expansion
            layers += [PointwiseConv2d(cin, hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [  # depthwise, then linear projection
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            PointwiseConv2d(hidden, cout, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        """The block, plus ``x`` when the stride is 1 and the channel counts match."""
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expansion t, channels c, blocks n, first stride s) per stage, as MobileNetV2 (t = 6 unless 1)
_MBV2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# features[a:b] per encoder scale 1/2, 1/4, 1/8, 1/16, 1/32 (the official wrapper's ranges)
_ENC_RANGES = ((0, 2), (2, 4), (4, 7), (7, 14), (14, 19))


class MobileNetV2(nn.Module):
    """The encoder body: ``features`` holds the 19 official layers (first conv, 17 blocks, final 1x1)."""

    def __init__(self, in_channels: int, width: float = 1.0, last_channels: int = 1280):
        super().__init__()
        c = make_divisible(32 * width)
        layers: list[nn.Module] = [_conv_bn_relu6(in_channels, c, 3, 2)]
        out = [c]
        for t, ch, n, s in _MBV2_SETTING:
            cout = make_divisible(int(ch * width))
            for i in range(n):
                layers.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
                c = cout
                out.append(c)
        layers.append(_conv_bn_relu6(c, last_channels, 1))
        out.append(last_channels)
        self.features = nn.Sequential(*layers)
        self.channels = out  # output channels of each entry of ``features``


class MobileNetV2Backbone(nn.Module):
    """The official wrapper: ``model`` is the MobileNetV2; ``forward`` gives the five encoder scales."""

    def __init__(self, in_channels: int, width: float = 1.0, last_channels: int = 1280):
        super().__init__()
        self.model = MobileNetV2(in_channels, width, last_channels)
        self.enc_channels = [self.model.channels[b - 1] for _, b in _ENC_RANGES]  # 16, 24, 32, 96, 1280 at width 1

    def forward(self, x) -> list[torch.Tensor]:
        """(enc2x, enc4x, enc8x, enc16x, enc32x)."""
        feats = []
        for a, b in _ENC_RANGES:
            for i in range(a, b):
                x = self.model.features[i](x)
            feats.append(x)
        return feats


# ---------------------------------------------------------------- MODNet's modules


class IBNorm(nn.Module):
    """MODNet's norm: BatchNorm (affine) on the first half of the channels, InstanceNorm
    (no affine, no running stats) on the rest."""

    def __init__(self, channels: int):
        super().__init__()
        self.bnorm_channels = channels // 2
        self.inorm_channels = channels - self.bnorm_channels
        self.bnorm = nn.BatchNorm2d(self.bnorm_channels, affine=True)
        self.inorm = nn.InstanceNorm2d(self.inorm_channels, affine=False)

    def forward(self, x):
        """BatchNorm of channels [0, C/2), InstanceNorm of [C/2, C), concatenated back."""
        c = self.bnorm_channels
        return torch.cat([self.bnorm(x[:, :c]), self.inorm(x[:, c:])], dim=1)


class Conv2dIBNormRelu(nn.Module):
    """conv (with bias) -> IBNorm -> ReLU, each optional after the conv; ``layers.{0,1,2}`` as official."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0, with_ibn=True, with_relu=True):
        super().__init__()
        layers: list[nn.Module] = [conv2d(cin, cout, kernel_size, stride, padding, bias=True)]
        if with_ibn:
            layers.append(IBNorm(cout))
        if with_relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        """conv -> IBNorm -> ReLU."""
        return self.layers(x)


class SEBlock(nn.Module):
    """Squeeze-and-excitation as MODNet's: ``fc.0`` / ``fc.2`` are bias-free linears."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        """``x`` with each channel scaled by a gate computed from the global channel means."""
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


def _up2(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class LRBranch(nn.Module):
    """Low-resolution semantic branch (the backbone is MODNet's, not registered here a second time)."""

    def __init__(self, enc_channels):
        super().__init__()
        self.se_block = SEBlock(enc_channels[4], reduction=4)
        self.conv_lr16x = Conv2dIBNormRelu(enc_channels[4], enc_channels[3], 5, padding=2)
        self.conv_lr8x = Conv2dIBNormRelu(enc_channels[3], enc_channels[2], 5, padding=2)
        self.conv_lr = Conv2dIBNormRelu(enc_channels[2], 1, 3, stride=2, padding=1, with_ibn=False, with_relu=False)

    def forward(self, enc32x, semantic: bool):
        """enc32x -> (pred_semantic at 1/16 or None, lr8x features)."""
        lr8x = self.conv_lr8x(_up2(self.conv_lr16x(_up2(self.se_block(enc32x)))))
        return (torch.sigmoid(self.conv_lr(lr8x)) if semantic else None), lr8x


class HRBranch(nn.Module):
    """High-resolution detail branch; ``cin`` is the image input's channels (3, or 3 + user planes)."""

    def __init__(self, hr: int, enc_channels, cin: int):
        super().__init__()
        self.tohr_enc2x = Conv2dIBNormRelu(enc_channels[0], hr, 1)
        self.conv_enc2x = Conv2dIBNormRelu(hr + cin, hr, 3, stride=2, padding=1)
        self.tohr_enc4x = Conv2dIBNormRelu(enc_channels[1], hr, 1)
        self.conv_enc4x = Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1)
        self.conv_hr4x = nn.Sequential(
            Conv2dIBNormRelu(3 * hr + cin, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, hr, 3, padding=1),
        )
        self.conv_hr2x = nn.Sequential(
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, hr, 3, padding=1),
        )
        self.conv_hr = nn.Sequential(
            Conv2dIBNormRelu(hr + cin, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, 1, 1, with_ibn=False, with_relu=False),
        )

    def forward(self, img, img2x, img4x, enc2x, enc4x, lr8x, detail: bool):
        """-> (pred_detail at full resolution or None, hr2x features)."""
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat([img2x, enc2x], dim=1))
        hr4x = self.conv_enc4x(torch.cat([hr4x, self.tohr_enc4x(enc4x)], dim=1))
        hr4x = self.conv_hr4x(torch.cat([hr4x, _up2(lr8x), img4x], dim=1))
        hr2x = self.conv_hr2x(torch.cat([_up2(hr4x), enc2x], dim=1))
        pred = torch.sigmoid(self.conv_hr(torch.cat([_up2(hr2x), img], dim=1))) if detail else None
        return pred, hr2x


class FusionBranch(nn.Module):
    """Fusion branch up to its last hidden layer (``conv_f.0``): the NIG head takes it from there."""

    def __init__(self, hr: int, enc_channels, cin: int):
        super().__init__()
        self.conv_lr4x = Conv2dIBNormRelu(enc_channels[2], hr, 5, padding=2)
        self.conv_f2x = Conv2dIBNormRelu(2 * hr, hr, 3, padding=1)
        self.conv_f = nn.Sequential(Conv2dIBNormRelu(hr + cin, hr // 2, 3, padding=1))

    def forward(self, img, lr8x, hr2x):
        """-> full-resolution features (hr // 2 channels)."""
        lr2x = _up2(self.conv_lr4x(_up2(lr8x)))
        f2x = self.conv_f2x(torch.cat([lr2x, hr2x], dim=1))
        return self.conv_f(torch.cat([_up2(f2x), img], dim=1))


# ---------------------------------------------------------------- the network


@register_model("modnet")
class MODNet(MattingNet):
    """MODNet F(image | user map) -> NIG, official architecture (see the module docstring).

    ``hr_channels`` (32) and ``width`` (MobileNetV2 multiplier, 1.0) and ``last_channels``
    (the encoder's final 1x1 conv, 1280) size it; ``head_mid`` is the NIG head's channels per
    branch; ``norm`` the NIG head's norm ('bn' or 'gn'; MODNet's own layers keep BN / IBNorm);
    ``user_inputs=False`` gives the official image-only input layout.
    """

    aux_outputs = True
    """``forward`` accepts ``return_aux=True`` (stage 1 then adds MODNet's own losses)."""

    # the conv weights that take the image, and where its 3 RGB input channels sit in the
    # official layout: "first" (image concatenated first) or "last"; the user planes follow them
    IMAGE_INPUTS = {
        "backbone.model.features.0.0.weight": "first",
        "hr_branch.conv_enc2x.layers.0.weight": "first",
        "hr_branch.conv_hr4x.0.layers.0.weight": "last",
        "hr_branch.conv_hr.0.layers.0.weight": "last",
        "f_branch.conv_f.0.layers.0.weight": "last",
    }

    def __init__(
        self, hr_channels=32, width=1.0, last_channels=1280, head_mid=16, alpha_min=1.0, norm="bn", user_inputs=True
    ):
        super().__init__()
        self.config = {
            "name": "modnet",
            "hr_channels": hr_channels,
            "width": width,
            "last_channels": last_channels,
            "head_mid": head_mid,
            "alpha_min": alpha_min,
            "norm": norm,
            "user_inputs": user_inputs,
        }
        if hr_channels < 2:
            raise ValueError(f"hr_channels must be >= 2, got {hr_channels}")
        self.stride = 32
        self.user_inputs = bool(user_inputs)
        cin = 3 + (USER_PLANES if self.user_inputs else 0)
        self.backbone = MobileNetV2Backbone(cin, width, last_channels)
        enc = self.backbone.enc_channels
        self.lr_branch = LRBranch(enc)
        self.hr_branch = HRBranch(hr_channels, enc, cin)
        self.f_branch = FusionBranch(hr_channels, enc, cin)
        self._init_body()  # before the head: the NIG head keeps its own initialisation
        self.head = NIGHead(hr_channels // 2, head_mid, alpha_min=alpha_min, norm=norm)

    def _init_body(self):
        """The official initialisation: Kaiming-uniform convs (zero bias), norms weight 1 bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """MODNet's own standardisation: mean 0.5, std 0.5 per channel ([0, 1] -> [-1, 1])."""
        return image * 2 - 1

    def branches(self, x, planes, aux: bool = False):
        """Normalised image and user planes (padded to the stride) -> (fusion features,
        pred_semantic at 1/16 or None, pred_detail at full resolution or None)."""
        if self.user_inputs:
            img = torch.cat([x, planes], dim=1)
            img2x = torch.cat(
                [F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False), F.avg_pool2d(planes, 2)],
                dim=1,
            )
            img4x = torch.cat(
                [F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False), F.avg_pool2d(planes, 4)],
                dim=1,
            )
        else:
            img = x
            img2x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
            img4x = F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)
        enc2x, enc4x, _, _, enc32x = self.backbone(img)
        pred_semantic, lr8x = self.lr_branch(enc32x, aux)
        pred_detail, hr2x = self.hr_branch(img, img2x, img4x, enc2x, enc4x, lr8x, aux)
        return self.f_branch(img, lr8x, hr2x), pred_semantic, pred_detail

    def features(self, x, planes):
        """The fusion branch's last hidden features (full resolution) for the NIG head."""
        return self.branches(x, planes)[0]

    def forward(self, image: torch.Tensor, user_map: torch.Tensor, return_aux: bool = False):
        """image (B,3,H,W) in [0,1], user map (B,1,H,W) -> NIG maps (B,1,H,W); with ``return_aux``
        ``(nig, {"semantic": (B,1,h,w), "detail": (B,1,H,W)})``, both in [0, 1].

        The semantic map is MODNet's 1/16 prediction over the padded input, cropped to the
        1/16 cells that overlap the image: exactly (H/16, W/16) when H and W are multiples of
        32 (no padding, as for training crops), else up to one cell more per side."""
        if not return_aux:
            return super().forward(image, user_map)
        x, planes, box = self.prepare(image, user_map)
        feats, semantic, detail = self.branches(x, planes, aux=True)
        nig = NIG(*(crop(t, box).contiguous() for t in self.head(feats)))
        top, left, h, w = box
        t16, l16 = top // 16, left // 16
        semantic = semantic[..., t16 : -(-(top + h) // 16), l16 : -(-(left + w) // 16)]
        return nig, {"semantic": semantic.contiguous(), "detail": crop(detail, box).contiguous()}
