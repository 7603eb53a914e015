"""MODNet's own training losses (Ke et al. 2022; official ``src/trainer.py``), plain torch.

dugMatting is plug-and-play: with the MODNet backbone, stage 1 trains the NIG head on the
fusion branch (L_NIG + the Laplacian matte loss, :func:`dugray.train.losses.stage1_loss`)
*plus* MODNet's supervised losses, with the official weights 10 / 10 / 1:

- semantic: MSE between the 1/16 semantic prediction and the GT alpha downsampled to 1/16
  (bilinear) and blurred with the official 3x3 Gaussian (sigma 0.8, reflect padding);
- detail: L1 between the detail prediction and the GT on the transition band only
  (elsewhere both sides are replaced by the trimap value, so the mean runs over all pixels);
- matte: on the matte estimate (here the NIG mean gamma): L1 + 4 x boundary L1, plus the
  compositional L1 of ``image * matte`` + 4 x its boundary term, with the image as MODNet
  sees it (standardised to [-1, 1]).

The official training reads a trimap from the dataset; here it is derived from the GT alpha:
foreground where the alpha is 1 in a whole window, background where it is 0 in a whole
window, transition elsewhere, with a window side of 5% of the mean image side (odd, at least
3), the band width the official SOC step uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SEMANTIC_SCALE, DETAIL_SCALE, MATTE_SCALE = 10.0, 10.0, 1.0
"""The official loss weights (``supervised_training_iter``)."""
BLUR_1D = (0.25022103, 0.49955794, 0.25022103)
"""The official 3x3 Gaussian is the outer product of this: ``scipy.ndimage.gaussian_filter``
of a 3x3 delta with sigma 0.3 * ((3 - 1) * 0.5 - 1) + 0.8 = 0.8 (its reflect mode folds the
tails back, hence not a plain sampled Gaussian)."""


def blur3(x: torch.Tensor) -> torch.Tensor:
    """The official GaussianBlurLayer(1, 3): reflect-pad 1, depthwise 3x3 Gaussian (B,C,H,W)."""
    k1 = x.new_tensor(BLUR_1D)
    k = torch.outer(k1, k1).expand(x.shape[1], 1, 3, 3)
    mode = "reflect" if min(x.shape[-2:]) > 1 else "replicate"
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), k, groups=x.shape[1])


def band_width(h: int, w: int) -> int:
    """Window side for the transition band: 5% of the mean side, odd, at least 3."""
    side = max(3, int((h + w) / 2 * 0.05))
    return side if side % 2 else side + 1


def transition_band(alpha: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """(B,1,H,W) float mask, 1 on the trimap's unknown region derived from the GT alpha:
    not all-foreground (alpha 1 in the whole window) and not all-background (0 in the whole window)."""
    k = width or band_width(*alpha.shape[-2:])
    if k % 2 == 0:
        raise ValueError(f"band width must be odd, got {k}")
    dilated = F.max_pool2d(alpha, k, 1, k // 2)
    eroded = -F.max_pool2d(-alpha, k, 1, k // 2)
    return ((eroded < 1) & (dilated > 0)).to(alpha.dtype)


def semantic_loss(pred_semantic: torch.Tensor, alpha_gt: torch.Tensor) -> torch.Tensor:
    """MSE(pred_semantic, blur(GT downsampled 1/16)) - unscaled."""
    size = pred_semantic.shape[-2:]
    if tuple(alpha_gt.shape[-2:]) == (size[0] * 16, size[1] * 16):
        gt = F.interpolate(alpha_gt, scale_factor=1 / 16, mode="bilinear", align_corners=False)
    else:  # an unpadded odd size: the same bilinear resize, to the prediction's grid
        gt = F.interpolate(alpha_gt, size=size, mode="bilinear", align_corners=False)
    return F.mse_loss(pred_semantic, blur3(gt))


def detail_loss(pred_detail: torch.Tensor, alpha_gt: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """L1 on the transition band, averaged over all pixels (the official masked form) - unscaled."""
    return ((pred_detail - alpha_gt).abs() * band).mean()


def matte_loss(matte: torch.Tensor, alpha_gt: torch.Tensor, image: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """L1 + 4 x band L1 + compositional L1 + 4 x band compositional L1 - unscaled.

    ``image`` (B,3,H,W) in [0,1] is standardised to [-1, 1] as MODNet's input (the official
    loss multiplies the normalised image)."""
    img = image * 2 - 1
    err = (matte - alpha_gt).abs()
    comp = (img * (matte - alpha_gt)).abs()
    return err.mean() + 4.0 * (err * band).mean() + comp.mean() + 4.0 * (comp * band).mean()


def modnet_losses(
    aux: dict,
    matte: torch.Tensor,
    alpha_gt: torch.Tensor,
    image: torch.Tensor,
    semantic_scale: float = SEMANTIC_SCALE,
    detail_scale: float = DETAIL_SCALE,
    matte_scale: float = MATTE_SCALE,
) -> dict:
    """MODNet's three weighted losses from ``forward(..., return_aux=True)``'s ``aux`` and the
    matte estimate; ``total`` is their sum (to add to the NIG loss), the rest detached."""
    band = transition_band(alpha_gt)
    sem = semantic_scale * semantic_loss(aux["semantic"], alpha_gt)
    det = detail_scale * detail_loss(aux["detail"], alpha_gt, band)
    mat = matte_scale * matte_loss(matte, alpha_gt, image, band)
    return {
        "total": sem + det + mat,
        "modnet_semantic": sem.detach(),
        "modnet_detail": det.detach(),
        "modnet_matte": mat.detach(),
    }
