"""Sample visualisations logged during training: image, matte, GT, epistemic, aleatoric."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from dugray.nig import aleatoric, epistemic
from dugray.visualize import grey, heat


def sample_grid(sample: dict, name: str, folder: str | None = None) -> Path:
    """One row per example: image | prediction | ground truth | epistemic | aleatoric."""
    g, nu, a, b = (t.detach().float().cpu() for t in sample["nig"])
    epi, ale = epistemic(nu, a, b), aleatoric(a, b)
    rows = []
    for i in range(g.shape[0]):
        img = (sample["image"][i].detach().cpu().permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
        rows.append(
            np.concatenate(
                [
                    img,
                    grey(g[i, 0].numpy()),
                    grey(sample["alpha"][i, 0].detach().cpu().numpy()),
                    heat(epi[i, 0].numpy()),
                    heat(ale[i, 0].numpy()),
                ],
                axis=1,
            )
        )
    path = Path(folder or tempfile.mkdtemp(prefix="dugray-vis-")) / name
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path
