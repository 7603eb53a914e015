"""Small building blocks shared by the matting networks and the refiner.

Also the input plumbing every network needs: image normalisation, the user map as
one-hot planes, and padding to the network's stride (then cropping back).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# Images arrive in [0, 1]; networks see them standardised with the ImageNet statistics
# (the usual convention, so a pretrained encoder could be dropped in later).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> ImageNet-standardised."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def user_planes(user_map: torch.Tensor) -> torch.Tensor:
    """User map (B,1,H,W) with fg 1, bg -1, transition 0.5, unknown 0 -> (B,3,H,W) planes.

    One 0/1 plane per label (fg, bg, transition); unknown is all zeros. A single scalar
    channel would make "transition" (0.5) look like half a foreground label to the first
    conv; separate planes keep the three labels independent, and their average-pooled
    versions at coarser scales read as "fraction of this cell labelled fg/bg/transition".
    Values are snapped to the nearest label, so a slightly blurred map still works.
    """
    u = user_map.float()
    planes = torch.cat([u > 0.75, u < -0.5, (u > 0.25) & (u <= 0.75)], dim=1)
    return planes.to(user_map.dtype if user_map.is_floating_point() else torch.float32)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad H and W up to a multiple of ``multiple``; returns the padded tensor and the crop box.

    Reflect padding (no artificial edges for the convs to react to); replicate where the
    pad is too large for reflect (tiny inputs). The pad is split evenly on both sides so
    border pixels sit as far from the padding as possible.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (0, 0, h, w)
    top, left = ph // 2, pw // 2
    pad = (left, pw - left, top, ph - top)
    mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
    return F.pad(x, pad, mode=mode), (top, left, h, w)


def crop(x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: the (h, w) region at ``box`` = (top, left, h, w) of the last two dims."""
    top, left, h, w = box
    return x[..., top : top + h, left : left + w]


def num_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def norm_layer(kind: str, channels: int) -> nn.Module:
    """ "bn" (default; fast, fuses at inference) or "gn" (batch-size independent)."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; expected 'bn' or 'gn'")


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution whose inference result on the CPU is the same whatever the thread count.

    oneDNN's 1x1 kernels sum the input channels in an order that depends on the number of
    threads (a few ulp apart at 1 and 2 threads), and one such layer was enough for the same
    photo's matte to differ by one grey level between ``dugray cutout`` (every core) and a
    one-thread server replica. At inference on the CPU this layer is a matrix product over the
    channels (``F.linear``, measured the same at 1 to 4 threads and as fast); in training, or on
    a GPU, it is the ordinary convolution. The parameters are nn.Conv2d's (same checkpoints).
    """

    def __init__(self, cin, cout, groups=1, bias=True):
        super().__init__(cin, cout, 1, groups=groups, bias=bias)

    def _conv_forward(self, x, weight, bias):
        if self.training or x.device.type != "cpu":
            return super()._conv_forward(x, weight, bias)
        w = weight.flatten(1)
        if self.groups > 1:  # block-diagonal: each output reads only its group's inputs
            w = torch.block_diag(*w.view(self.groups, -1, w.shape[1]))
        return F.linear(x.permute(0, 2, 3, 1), w, bias).permute(0, 3, 1, 2)


def conv2d(cin, cout, k, stride=1, padding=0, groups=1, bias=True) -> nn.Conv2d:
    """``nn.Conv2d``, or :class:`PointwiseConv2d` for a 1x1 of stride 1 (the same parameters)."""
    if k == 1 and stride == 1 and padding == 0:
        return PointwiseConv2d(cin, cout, groups, bias)
    return nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias)


class ConvNormAct(nn.Sequential):
    """conv k x k (same padding) -> norm -> ReLU (``act=False`` drops the ReLU)."""

    def __init__(self, cin, cout, k=3, stride=1, groups=1, norm="bn", act=True):
        layers = [conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), norm_layer(norm, cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DWSeparable(nn.Sequential):
    """Depthwise 3x3 (optionally strided) + pointwise 1x1, each with norm + ReLU.

    About k^2 fewer multiply-adds than a full conv with the same receptive field.
    """

    def __init__(self, cin, cout, stride=1, norm="bn"):
        super().__init__(
            ConvNormAct(cin, cin, 3, stride, groups=cin, norm=norm),
            ConvNormAct(cin, cout, 1, norm=norm),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> depthwise 3x3 -> 1x1 project (+ identity skip)."""

    def __init__(self, cin, cout, stride=1, expand=4, norm="bn"):
        super().__init__()
        mid = cin * expand
        self.skip = stride == 1 and cin == cout
        self.body = nn.Sequential(
            ConvNormAct(cin, mid, 1, norm=norm),
            ConvNormAct(mid, mid, 3, stride, groups=mid, norm=norm),
            ConvNormAct(mid, cout, 1, norm=norm, act=False),
        )

    def forward(self, x):
        """Expand, depthwise, project; plus ``x`` when the stride is 1 and the channels match."""
        y = self.body(x)
        return x + y if self.skip else y


class SqueezeExcite(nn.Module):
    """Channel attention from global context (MODNet's semantic branch uses one)."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x):
        """``x`` with each channel scaled by a sigmoid gate computed from all channels' global means."""
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


def upsample(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize to ``size`` (H, W)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
