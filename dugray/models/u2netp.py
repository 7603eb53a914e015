"""dugMatting on the pretrained U^2-Netp, the two shapes of DESIGN 4d.

``u2netp`` (fine-tuned): U^2-Netp *is* the matting network F. The user planes enter its
first convolution as three more input channels starting at zero, and the NIG head reads
its last decoder features and its seven logits; the head's gamma starts from U^2-Netp's
fused saliency logit (its own gamma weights start at zero), so before training the matte
is exactly the file's mask. Every label round reruns the whole network, at the working
resolution or at most at ``infer_max_side`` (the labels and the solve stay at the working size).

``u2netp_guided`` (frozen prior, mask-guided matting as in Yu et al., CVPR 2021): U^2-Netp
stays frozen and computes a saliency map once per image at 320x320 (as rembg does); a light
U-Net reads it as a fourth guidance plane beside the user planes, at its input and every
decoder stage, and its gamma logit gets the prior's logit times a learned scale. A label
round reruns only the light network: at inference the prior is remembered per image (an
LRU keyed by the image's bytes), so the rounds of one session pay for it once.

Both load U^2-Netp's weights with :meth:`load_pretrained` (the ONNX file of
``dugray pretrained u2netp``); a trained checkpoint holds them, so serving needs no file.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from dugray.nig import NIG, nig_activation

from .base import MattingNet
from .layers import crop, pad_to_multiple
from .nig_head import NIGHead
from .registry import register_model
from .u2netp_body import MEAN, SIZE, STD, U2NetP
from .u2netp_onnx import load_u2netp
from .unet import UNetMatting

_CACHE_LOCK = threading.Lock()


def saliency_input(image: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> U^2-Netp's input: ``size`` x ``size`` (antialiased bicubic, the
    torch stand-in for rembg's Lanczos), divided by each image's max, ImageNet-standardised."""
    x = F.interpolate(image.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    mean = x.new_tensor(MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _logit(p: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


@register_model("u2netp_guided")
class U2NetpGuided(MattingNet):
    """Frozen U^2-Netp prior + light U-Net F(image | user map, prior) -> NIG."""

    def __init__(
        self,
        widths=(16, 32, 64, 96, 160),
        head_mid=8,
        alpha_min=1.0,
        norm="bn",
        prior_size: int = SIZE,
        cache_size: int = 8,
    ):
        super().__init__()
        self.config = {
            "name": "u2netp_guided",
            "widths": tuple(int(w) for w in widths),
            "head_mid": head_mid,
            "alpha_min": alpha_min,
            "norm": norm,
            "prior_size": int(prior_size),
        }
        self.prior_net = U2NetP().requires_grad_(False)
        self.body = UNetMatting(widths, head_mid, alpha_min, norm, extra_planes=1)
        self.stride = self.body.stride
        self.prior_scale = nn.Parameter(torch.tensor(1.0))
        self.prior_size = int(prior_size)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict = OrderedDict()

    def train(self, mode: bool = True):
        super().train(mode)
        self.prior_net.eval()  # frozen: never in training mode
        return self

    def load_pretrained(self, onnx_path) -> None:
        """U^2-Netp's weights from rembg's ONNX file into the frozen prior."""
        self.prior_net.load_state_dict(load_u2netp(onnx_path).state_dict())

    def warm_start(self, other: nn.Module) -> None:
        """The light network from a trained ``unet`` (same widths): its weights, with the new
        prior plane's input weights at zero, so it starts as that network plus the prior's skip."""
        if other.config.get("name") != "unet":
            raise ValueError(f"u2netp_guided warm-starts from a unet, not {other.config.get('name')}")
        mine = self.body.state_dict()
        for key, value in other.state_dict().items():
            if key not in mine:
                raise ValueError(f"warm start: {key} is not in u2netp_guided's light network")
            target = mine[key]
            if value.shape == target.shape:
                mine[key] = value
            elif value.ndim == 4 and value.shape[0] == target.shape[0] and value.shape[1] + 1 == target.shape[1]:
                mine[key] = torch.cat([value, value.new_zeros(value.shape[0], 1, *value.shape[2:])], dim=1)
            else:
                raise ValueError(f"warm start: {key} {tuple(value.shape)} does not fit {tuple(target.shape)}")
        self.body.load_state_dict(mine)

    @torch.no_grad()
    def saliency(self, image: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> U^2-Netp's saliency (B,1,H,W) in [0,1]; remembered per image at inference."""
        keys = None
        if not self.training and self.cache_size > 0:
            keys = [
                (
                    tuple(x.shape),
                    hashlib.blake2b(x.detach().float().cpu().numpy().tobytes(), digest_size=16).hexdigest(),
                )
                for x in image
            ]
            with _CACHE_LOCK:
                hits = [self._cache.get(k) for k in keys]
                for k, h in zip(keys, hits):
                    if h is not None:
                        self._cache.move_to_end(k)
            if all(h is not None for h in hits):
                return torch.stack(hits).to(image.device, image.dtype)
        x = saliency_input(image, self.prior_size)
        if self.channels_last:  # NHWC: 0.7x the CPU time of the prior's pass, the costliest step of a one-shot matte
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.prior_net(x)[0]
        prior = torch.sigmoid(F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False))
        if keys is not None:
            with _CACHE_LOCK:
                for k, p in zip(keys, prior):
                    self._cache[k] = p.detach().float().cpu()
                    self._cache.move_to_end(k)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return prior.to(image.dtype)

    def forward(self, image: torch.Tensor, user_map: torch.Tensor) -> NIG:
        """image (B,3,H,W) in [0,1], user_map (B,1,H,W) -> NIG maps (B,1,H,W)."""
        x, planes, box = self.prepare(image, user_map)
        prior, _ = pad_to_multiple(self.saliency(image), self.stride)
        prior = prior.to(planes.dtype)
        if self.channels_last:
            prior = prior.contiguous(memory_format=torch.channels_last)
        head = self.body.head
        raw = head.raw(self.body.features(x, torch.cat([planes, prior], dim=1)))
        raw = torch.cat([raw[:, :1] + self.prior_scale * _logit(prior.float()).to(raw.dtype), raw[:, 1:]], dim=1)
        nig = nig_activation(raw, alpha_min=head.alpha_min, evidence_min=head.evidence_min)
        return NIG(*(crop(t, box).contiguous() for t in nig))


@register_model("u2netp")
class U2NetpMatting(MattingNet):
    """U^2-Netp fine-tuned as F(image | user map) -> NIG; gamma starts as its saliency."""

    stride = 32

    def __init__(self, head_mid=8, alpha_min=1.0, norm="bn", infer_max_side: int | None = None):
        super().__init__()
        # the long side the network runs at in a session, at most (None: the working size; training
        # runs at its crops): dugray.session.network.capped_forward; docs/evaluation.md, "Network resolution"
        self.infer_max_side = None if infer_max_side is None else int(infer_max_side)
        if self.infer_max_side is not None and self.infer_max_side < self.stride:
            raise ValueError(f"infer_max_side must be >= {self.stride} or unset, got {infer_max_side}")
        self.config = {"name": "u2netp", "head_mid": head_mid, "alpha_min": alpha_min, "norm": norm}
        if self.infer_max_side is not None:
            self.config["infer_max_side"] = self.infer_max_side
        self.body = U2NetP(extra_in=3)
        self.head = NIGHead(64 + 7, head_mid, alpha_min=alpha_min, norm=norm)
        with torch.no_grad():
            self.head.out.weight[0].zero_()
            self.head.out.bias[0] = 0.0

    def load_pretrained(self, onnx_path) -> None:
        """U^2-Netp's weights from rembg's ONNX file; the user-plane input channels at zero."""
        self.body.load_state_dict(load_u2netp(onnx_path, extra_in=3).state_dict())

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """What came from the file (a lower learning rate protects it: ``pretrained_lr_scale``)."""
        return list(self.body.parameters())

    aux_outputs = True
    """``forward`` accepts ``return_aux=True``: U^2-Net's own seven logits for deep supervision."""

    def forward(self, image: torch.Tensor, user_map: torch.Tensor, return_aux: bool = False):
        """image (B,3,H,W) in [0,1], user_map (B,1,H,W) -> NIG maps (B,1,H,W); with ``return_aux``
        also ``{"sides": [fused, side1..side6]}``, U^2-Net's logits, cropped like the maps (stage 1
        supervises each with binary cross-entropy against alpha, as U^2-Net was trained)."""
        x, planes, box = self.prepare(image, user_map)
        feats, sides = self.body.decode(torch.cat([x, planes], dim=1))
        fused = self.body.fuse(torch.cat(sides, dim=1))
        raw = self.head.raw(torch.cat([feats, fused, *sides], dim=1))
        raw = torch.cat([raw[:, :1] + fused, raw[:, 1:]], dim=1)
        nig = nig_activation(raw, alpha_min=self.head.alpha_min, evidence_min=self.head.evidence_min)
        out = NIG(*(crop(t, box).contiguous() for t in nig))
        if not return_aux:
            return out
        return out, {"sides": [crop(t, box) for t in (fused, *sides)]}
