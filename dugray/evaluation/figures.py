"""The evaluation's pictures: the Figure-5 step strip and the Figure-7 plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dugray.visualize import draw_boxes, grey, heat, save_rgb, strip, usermap_rgb

from .methods import Trace

STEP_TITLES = (
    "input + proposals",
    "initial",
    "epistemic",
    "user map",
    "after interaction",
    "after refinement",
    "ground truth",
)


def save_steps(path: Path, image: np.ndarray, gt_u8: np.ndarray, trace: Trace) -> None:
    """Figure 5: input + first proposals, initial matte, its epistemic map, the final user
    map, the matte after interaction, after refinement, GT."""

    def u8(a):
        return grey(np.asarray(a, np.float32) / 255.0)

    refined = trace.refined if trace.refined is not None else trace.interacted
    panels = [
        draw_boxes(image, trace.proposals),
        u8(trace.initial),
        heat(trace.epistemic),
        usermap_rgb(trace.user_map, image),
        u8(trace.interacted),
        u8(refined),
        u8(gt_u8),
    ]
    save_rgb(path, strip(panels, STEP_TITLES))


def save_figure7(path: Path, curves: dict) -> None:
    """SAD (both protocols) and mean epistemic uncertainty vs number of selections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for model, c in curves.items():
        x = c["selections"]
        ax1.plot(x, _nan(c["whole_sad"]), "o-", label=f"{model}: whole image")
        ax1.plot(x, _nan(c["comp1k_sad"]), "s--", label=f"{model}: Composition-1k")
        ax2.plot(x, _nan(c["mean_epistemic"]), "o-", label=model)
    ax1.set(xlabel="number of selections", ylabel="SAD (/1000)", title="SAD")
    ax2.set(xlabel="number of selections", ylabel="mean Var[mu]", title="epistemic uncertainty")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _nan(values):
    return [np.nan if v is None else v for v in values]
