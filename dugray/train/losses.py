"""Training losses of both stages (paper section 3.5), plain torch.

Stage 1: L = L_NIG(gamma, nu, alpha, beta) + L_M(gamma), where L_M is the backbone's
own matte loss. The paper leaves L_M to the backbone ("e.g. Laplacian loss"); ours is
the Laplacian-pyramid L1 loss used by GCA / MG Matting, which weighs fine detail at
every scale, with weight ``matte_weight``.

Stage 2: L = ||y - gamma_r||_1 + ||grad y - grad gamma_r||_1 on refinement patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dugray.nig import NIG, nig_loss


def _gauss_kernel(device, dtype) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    k = torch.outer(k, k)
    return (k / k.sum()).view(1, 1, 5, 5)


def laplacian_pyramid(x: torch.Tensor, levels: int = 5) -> list[torch.Tensor]:
    """Band-pass levels of x (B,1,H,W); stops early when the image gets too small."""
    kernel = _gauss_kernel(x.device, x.dtype)
    bands, current = [], x
    for _ in range(levels - 1):
        if min(current.shape[-2:]) < 4:
            break
        blurred = F.conv2d(F.pad(current, (2, 2, 2, 2), mode="reflect"), kernel)
        down = blurred[..., ::2, ::2]
        up = F.interpolate(down, size=current.shape[-2:], mode="bilinear", align_corners=False)
        bands.append(current - up)
        current = down
    bands.append(current)
    return bands


def laplacian_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Sum over pyramid levels of the L1 distance, each level weighted 2**i (coarser = heavier)."""
    total = pred.new_zeros(())
    for i, (p, t) in enumerate(zip(laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels))):
        total = total + (2**i) * F.l1_loss(p, t)
    return total


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along y and x (B,C,H-1,W) and (B,C,H,W-1)."""
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def stage1_loss(nig: NIG | tuple, alpha_gt: torch.Tensor, lam: float = 0.01, matte_weight: float = 1.0) -> dict:
    """Stage-1 loss terms; ``total`` is what to backpropagate."""
    l_nig = nig_loss(alpha_gt, nig, lam=lam)
    l_matte = laplacian_loss(nig[0], alpha_gt)
    return {"total": l_nig + matte_weight * l_matte, "nig": l_nig.detach(), "matte": l_matte.detach()}


def stage2_loss(refined: torch.Tensor, alpha_gt: torch.Tensor) -> dict:
    """||y - gamma_r||_1 + ||grad y - grad gamma_r||_1 (means over pixels)."""
    l1 = F.l1_loss(refined, alpha_gt)
    (gy_p, gx_p), (gy_t, gx_t) = image_gradients(refined), image_gradients(alpha_gt)
    grad = F.l1_loss(gy_p, gy_t) + F.l1_loss(gx_p, gx_t)
    return {"total": l1 + grad, "l1": l1.detach(), "grad": grad.detach()}
