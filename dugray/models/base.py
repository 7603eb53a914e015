"""What every matting network shares: the input plumbing around its body and NIG head.

A subclass sets ``stride`` (its total downsampling factor) and implements
``features(x, planes)`` -> shared features at full resolution, and owns ``self.head``
(a :class:`NIGHead`). ``forward(image, user_map)`` then:

1. checks shapes;
2. pads image and user map together to a multiple of ``stride`` (reflect);
3. standardises the image (:meth:`normalize`: ImageNet mean/std unless a network
   overrides it) and turns the user map into
   fg/bg/transition planes (:func:`user_planes`);
4. runs body + head on channels-last activations;
5. crops every NIG map back to (H, W).

Steps 1-3 are :meth:`prepare`, for a subclass whose ``forward`` returns more than the NIG.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dugray.nig import NIG

from .layers import crop, normalize_image, pad_to_multiple, user_planes


class MattingNet(nn.Module):
    """Base class: F(image | user map) -> NIG(gamma, nu, alpha, beta), each (B,1,H,W)."""

    stride: int = 1
    # NHWC activations: ~25% faster convs on CPU (oneDNN), fine on GPU; numerics unchanged.
    channels_last: bool = True
    config: dict

    def features(self, x: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        """The backbone's feature map for the NIG head; each registered network defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define features()")

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Standardise the (padded) image in [0,1]: ImageNet statistics unless a network overrides it."""
        return normalize_image(image)

    def prepare(self, image: torch.Tensor, user_map: torch.Tensor):
        """Steps 1-3 of ``forward``: -> (normalised image, user planes, crop box), padded to ``stride``."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B,3,H,W), got {tuple(image.shape)}")
        if user_map.shape != (image.shape[0], 1, *image.shape[2:]):
            raise ValueError(
                f"user_map must be (B,1,H,W) = {(image.shape[0], 1, *image.shape[2:])}, got {tuple(user_map.shape)}"
            )
        user_map = user_map.to(image.dtype)
        both, box = pad_to_multiple(torch.cat([image, user_map], dim=1), self.stride)
        x, planes = self.normalize(both[:, :3]), user_planes(both[:, 3:])
        if self.channels_last:
            x, planes = (t.contiguous(memory_format=torch.channels_last) for t in (x, planes))
        return x, planes, box

    def forward(self, image: torch.Tensor, user_map: torch.Tensor) -> NIG:
        """image (B,3,H,W) in [0,1], user_map (B,1,H,W) in {-1,0,0.5,1} -> NIG maps (B,1,H,W)."""
        x, planes, box = self.prepare(image, user_map)
        nig = self.head(self.features(x, planes))
        return NIG(*(crop(t, box).contiguous() for t in nig))
