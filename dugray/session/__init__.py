"""One interactive matting session (paper section 3): predict, propose, label, fuse, refine.

This package is the single implementation of the interaction loop; the evaluation job
and the Ray Serve deployments both call it. It imports no Ray. Its parts: :mod:`.config`
(SessionConfig), :mod:`.state` (SessionState, input checks, box geometry), :mod:`.labels`
(answers painted into the user map), :mod:`.network` (the matting network's step),
:mod:`.posterior` (fusion, carried evidence, enforced labels), :mod:`.steps` (proposals,
the solve), :mod:`.refinement`, :mod:`.outputs` (full resolution), :mod:`.plans` (the
round, refinement and solve switch, and their two runners), :mod:`.warmup`, :mod:`.history` (undo) and
:mod:`.facade` (MattingSession). Import from ``dugray.session``; what only the package itself and the
tests use is imported from its module (``dugray.session.posterior.fuse_rounds``).

Flow
----
::

    image (any size) --resize_to_working--> working image (long side <= work_size)
    round 1:  predict_round(F, image_w, U)            -> NIG_1      (U from trimap / empty)
              propose_patches(state)                  -> N boxes    (Algorithm 1, full-res)
    user:     apply_user_labels(state, [(i, "fg"), (box, "bg"), ...])   paints U
    round m:  predict_round(F, image_w, U)            -> NIG_m
              fused_nig(state)                        -> NIG        (eq. 2 over the rounds, carried evidence,
                                                                     labels enforced)
              propose_patches(state)                  -> next boxes (labelled cells skipped)
              solve_step(state, NIG)                  -> matte      (posterior + labels + Laplacian)
    refine:   refine_step(state, R, NIG)              -> matte      (section 3.4, then the solve again)
    output:   full_resolution_alpha(matte, image)     -> alpha HxW  (guided upsampling)
              rgba_cutout(image, alpha)               -> RGBA       (dugray.foreground)

Each step is a plain function of arrays and a :class:`SessionConfig` (the typed config the
state holds), so a server can run them in different deployments and keep the
:class:`SessionState` (a dataclass of numpy arrays that serialises with
:meth:`SessionState.to_bytes`) outside any replica.
:class:`MattingSession` composes them for in-process use.

Working resolution
------------------
The network, proposals, fusion and refinement all run at a working resolution whose
long side is at most ``work_size`` (512 by default: the size the model is trained at,
and under 1 s per round for the default 1.1M-parameter U-Net on a 2-core CPU). Images smaller than that are
processed as they are, never enlarged. The working image is an INTER_AREA reduction;
the matte comes back to full resolution with a colour fast guided filter
(:func:`dugray.upsample.guided_upsample`), which keeps matte edges that follow image
edges sharp; when no resize happened the matte is returned as is. Uncertainty maps are
enlarged bilinearly (they are for display and proposals, not for compositing). Proposal
boxes are computed on the working grid and scaled to full-resolution pixels; a box the
user gives in full-resolution pixels is scaled back with the inverse rounding, so a
proposal's box maps back exactly onto its working-grid cell.

Label enforcement (``SessionConfig.enforce_labels``, default True)
----------------------------------------------------------------
The paper feeds labels to the network only through the user map and fuses rounds with
eq. 2, so a labelled pixel's alpha is whatever the fused NIG says: an earlier,
confident-but-wrong round can keep pulling it away from the label. We treat the user as
the oracle: in the fused matte (and after refinement) pixels labelled foreground are
exactly 1 and background exactly 0. Transition labels only mean "mixed here" and are
not enforced. Only gamma is overwritten; nu, alpha and beta remain the model's, so the
uncertainty maps stay honest, and labelled cells are excluded from later proposals
instead. ``enforce_labels=False`` gives the paper's behaviour for ablations.

Images and errors
-----------------
Input images are RGB ``HxWx3`` uint8; grey ``HxW`` (or ``HxWx1``) is replicated to
three channels, RGBA drops its alpha channel, uint16 is scaled to uint8, float images
must lie in [0, 1]. Both sides must be at least ``MIN_SIDE`` (8) pixels: below that
there is no image structure to matte and the proposal grid degenerates, so a ValueError
says so rather than returning a meaningless matte (the same holds for the working
image's short side, which rules out extreme aspect ratios at a given ``work_size``). Bad inputs and bad labels raise
ValueError with a one-line reason; calling steps out of order raises RuntimeError.
"""

from .config import SessionConfig
from .facade import MattingSession
from .history import NothingToUndo, undo_plan
from .labels import apply_user_labels
from .network import predict_round, predict_rounds
from .outputs import OUTPUTS, deliver, full_resolution_alpha
from .plans import (
    FUSE,
    PREDICT,
    PROPOSE,
    REFINE,
    SOLVE,
    one_shot_plan,
    refine_plan,
    round_plan,
    run_plan_async,
    solve_switch_plan,
)
from .posterior import enforce_user_labels, fused_nig, uncertainty_maps
from .refinement import refine_matte, refine_step
from .state import SessionState, WorkingState, image_from_bytes, image_to_bytes, label_boxes, new_state, working_float
from .steps import propose_patches, solve_step
from .warmup import warm_up_network, warm_up_outputs, warm_up_posterior

__all__ = [
    "FUSE",
    "OUTPUTS",
    "PREDICT",
    "PROPOSE",
    "REFINE",
    "SOLVE",
    "MattingSession",
    "NothingToUndo",
    "SessionConfig",
    "SessionState",
    "WorkingState",
    "apply_user_labels",
    "deliver",
    "enforce_user_labels",
    "full_resolution_alpha",
    "fused_nig",
    "image_from_bytes",
    "image_to_bytes",
    "label_boxes",
    "new_state",
    "one_shot_plan",
    "predict_round",
    "predict_rounds",
    "propose_patches",
    "refine_matte",
    "refine_plan",
    "refine_step",
    "round_plan",
    "run_plan_async",
    "solve_step",
    "solve_switch_plan",
    "uncertainty_maps",
    "undo_plan",
    "warm_up_network",
    "warm_up_outputs",
    "warm_up_posterior",
    "working_float",
]
