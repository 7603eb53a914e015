"""One interactive matting session (paper section 3): predict, propose, label, fuse, refine.

This module is the single implementation of the interaction loop; the evaluation job
and the Ray Serve deployments both call it. It imports no Ray.

Flow
----
::

    image (any size) --resize_to_working--> working image (long side <= work_size)
    round 1:  predict_round(F, image_w, U)            -> NIG_1      (U from trimap / empty)
              propose_patches(state)                  -> N boxes    (Algorithm 1, full-res)
    user:     apply_user_labels(state, [(i, "fg"), (box, "bg"), ...])   paints U
    round m:  predict_round(F, image_w, U)            -> NIG_m
              fuse_rounds([NIG_1..NIG_m], "nig", U)   -> NIG        (eq. 2, labels enforced)
              propose_patches(state)                  -> next boxes (labelled cells skipped)
              solve_step(state, config, NIG)          -> matte      (posterior + labels + Laplacian)
    refine:   refine_step(state, R, config, NIG)      -> matte      (section 3.4, then the solve again)
    output:   full_resolution_alpha(matte, image)     -> alpha HxW  (guided upsampling)
              rgba_cutout(image, alpha)               -> RGBA       (dugray.foreground)

Each step is a plain function of arrays and a :class:`SessionConfig`, so a server can run
them in different deployments and keep the :class:`SessionState` (a dataclass of numpy
arrays that serialises with :meth:`SessionState.to_bytes`) outside any replica.
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

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import cv2
import numpy as np
import torch

from dugray import defaults
from dugray.foreground import rgba_cutout
from dugray.nig import NIG, aleatoric, aleatoric_variance, epistemic, nig_fold, nig_temper
from dugray.propagate import CarryParams, box_reach, carried_evidence, carry_labels, features, released_band
from dugray.propagate import warm_up as warm_up_propagate
from dugray.proposal import DEFAULT_K, DEFAULT_N, DEFAULT_T, Proposal, propose
from dugray.refine import NOISES, extract_patches, noise_variance, paste_patches, refinement_boxes, sample_coarse
from dugray.solve import SolveParams, SolveResult, solve_matte
from dugray.upsample import DEFAULT_EPS, DEFAULT_RADIUS, guided_upsample, resize_to_working
from dugray.usermap import (
    BACKGROUND,
    FOREGROUND,
    TRANSITION,
    UNKNOWN,
    Box,
    label_value,
    mask_to_trimap,
    point_box,
    trimap_to_usermap,
)

MIN_SIDE = 8
"""Smallest accepted image side in pixels."""

FUSION_MODES = ("nig", "last")
PROPOSAL_MODES = ("epistemic", "evidence", "spread")
_STATE_FORMAT = 1


# --------------------------------------------------------------------------- config


@dataclass
class SessionConfig:
    """Everything that decides a session's numbers; plain data, JSON-serialisable.

    work_size : long side of the working resolution (images are never enlarged).
    k, n, t : Algorithm 1 grid size, proposals per round, score threshold.
    fusion : "nig" fuses all rounds with eq. 2 (the paper); "last" uses only the latest
        round (ablation).
    enforce_labels : user fg/bg labels are hard constraints in the matte (see module doc).
    reliable_quantile, max_patches, seed : refinement pixel filter, patch budget and the
        seed of the gamma_s sample (refinement is deterministic given the state).
    upsample_radius, upsample_eps, upsample_guide : guided upsampling to full resolution
        ("color" or "gray" guide).
    foreground_max_side : resolution bound of the cutout's colour estimation.
    solve : run the uncertainty-guided solve (:mod:`dugray.solve`) after every round: the
        fused posterior, the user's labels and the image's matting Laplacian in one sparse
        solve; the matte a session returns is the solved one (refinement refines the
        network's matte, then solves again from it: :func:`refine_step`).
    solve_params : :class:`dugray.solve.SolveParams` overrides (weights, pins, Laplacian, guard).
    carry : the user's labels carry to the pixels that look like them and are connected to
        them (:mod:`dugray.propagate`), as NIG evidence fused into the posterior.
    carry_params : :class:`dugray.propagate.CarryParams` overrides.
    proposals : what Algorithm 1 ranks: "epistemic" (the paper: the network's fused rounds),
        "evidence" (the posterior with the labels' carried evidence: where it disagrees with
        the network, eq. 2's beta and so the epistemic uncertainty rise) or "spread" (the
        same, and each pick discounts the cells its answer would carry to, so one question
        is asked per region).
    temper_rounds : the posterior weighs the m fused network rounds as one round's evidence
        (:func:`dugray.nig.nig_temper`): the rounds are the same network on nearly the same
        input, not m independent observations, and eq. 2's summation alone would make every
        new round hold the solve m times tighter to the network's matte (the paper: False).
    """

    work_size: int = defaults.WORK_SIZE
    k: int = DEFAULT_K
    n: int = DEFAULT_N
    t: float = DEFAULT_T
    fusion: str = "nig"
    enforce_labels: bool = True
    reliable_quantile: float = 0.9
    max_patches: int = 64
    seed: int = 0
    upsample_radius: int = DEFAULT_RADIUS
    upsample_eps: float = DEFAULT_EPS
    upsample_guide: str = "color"
    foreground_max_side: int | None = 1024
    solve: bool = True
    solve_params: dict = field(default_factory=dict)
    carry: bool = True
    carry_params: dict = field(default_factory=dict)
    proposals: str = "evidence"
    temper_rounds: bool = True

    def __post_init__(self):
        if self.work_size < MIN_SIDE:
            raise ValueError(f"work_size must be >= {MIN_SIDE}, got {self.work_size}")
        if self.k < 1 or self.n < 0:
            raise ValueError(f"need k >= 1 and n >= 0, got k={self.k}, n={self.n}")
        if self.proposals not in PROPOSAL_MODES:
            raise ValueError(f"proposals must be one of {PROPOSAL_MODES}, got {self.proposals!r}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {self.fusion!r}")
        if self.upsample_guide not in ("color", "gray"):
            raise ValueError(f"upsample_guide must be 'color' or 'gray', got {self.upsample_guide!r}")
        if not 0 < self.reliable_quantile <= 1:
            raise ValueError(f"reliable_quantile must be in (0, 1], got {self.reliable_quantile}")
        self.solve_parameters, self.carry_parameters  # validated here: a typo fails when the config is made

    @property
    def solve_parameters(self) -> SolveParams:
        return SolveParams.from_dict(self.solve_params)

    @property
    def carry_parameters(self) -> CarryParams:
        return CarryParams.from_dict(self.carry_params)

    def to_dict(self) -> dict:
        """Every field as a plain dict (what SessionState.config holds; :meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SessionConfig":
        """Build from a dict; unknown keys are an error (a typo should not pass silently)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown SessionConfig fields: {unknown}")
        return cls(**d)


# --------------------------------------------------------------------------- state


@dataclass
class SessionState:
    """Everything a session knows, separable from the models (a server stores it anywhere).

    image : full-resolution RGB uint8 (H, W, 3).
    image_w : working-resolution RGB uint8 (h, w, 3) (the same array when no resize).
    user_map : working-resolution float32 user map U (h, w).
    labelled : working-resolution bool mask of pixels the user has answered for; cells
        mostly covered by it are not proposed again. Initial trimap pixels count only
        where they are fg or bg: the trimap's grey band means "not decided".
    rounds : one NIG per network run, each four float32 (h, w) arrays.
    proposals : the current proposals, boxes in full-resolution pixels.
    solved : the solve's working-resolution matte of the current round, or None (solve
        off, or not run yet); reset by new labels and every new round.
    solve_info : the last solve's numbers (band fraction, iterations, guard, seconds).
    refined : refined working-resolution matte, or None (reset by every new round).
    timings : per round a dict of seconds ("predict_s", "fuse_s", "propose_s", ...).
    label_log : every applied label as {"box": full-res box, "value": U value, "round": m}.
    config : the SessionConfig as a dict, so a restored session continues identically.
    """

    image: np.ndarray
    image_w: np.ndarray
    user_map: np.ndarray
    labelled: np.ndarray
    rounds: list[NIG] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    solved: np.ndarray | None = None
    solve_info: dict = field(default_factory=dict)
    refined: np.ndarray | None = None
    timings: list[dict] = field(default_factory=list)
    label_log: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=lambda: SessionConfig().to_dict())

    @property
    def full_shape(self) -> tuple[int, int]:
        return tuple(self.image.shape[:2])

    @property
    def work_shape(self) -> tuple[int, int]:
        return tuple(self.image_w.shape[:2])

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays (the serialised size is about this, plus a little JSON)."""
        arrays = [self.image, self.user_map, self.labelled] + [a for r in self.rounds for a in r]
        if self.image_w is not self.image:
            arrays.append(self.image_w)
        arrays += [a for a in (self.solved, self.refined) if a is not None]
        return int(sum(a.nbytes for a in arrays))

    def to_bytes(self, compress: bool = False) -> bytes:
        """Serialise to an in-memory .npz: arrays as arrays, small fields as one JSON entry.

        No pickle anywhere, so :meth:`from_bytes` is safe on untrusted input. ``compress``
        trades CPU (deflate) for size; image arrays compress well, NIG maps little.
        """
        arrays: dict[str, np.ndarray] = {"image": self.image, "user_map": self.user_map, "labelled": self.labelled}
        same_working = self.image_w is self.image or (
            self.image_w.shape == self.image.shape and np.array_equal(self.image_w, self.image)
        )
        if not same_working:
            arrays["image_w"] = self.image_w
        for m, r in enumerate(self.rounds):
            for name, a in zip(NIG._fields, r):
                arrays[f"round{m}_{name}"] = a
        for name in ("solved", "refined"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        meta = {
            "format": _STATE_FORMAT,
            "rounds": len(self.rounds),
            "same_working": same_working,
            "proposals": [p.to_dict() for p in self.proposals],
            "timings": self.timings,
            "label_log": self.label_log,
            "solve_info": self.solve_info,
            "config": self.config,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
        buf = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "SessionState":
        """Inverse of :meth:`to_bytes` (allow_pickle=False)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - any decoding failure means "not a state"
            raise ValueError(f"not a serialised SessionState: {exc}") from exc
        if meta.get("format") != _STATE_FORMAT:
            raise ValueError(f"unsupported SessionState format {meta.get('format')!r}")
        image = arrays["image"]
        rounds = [NIG(*(arrays[f"round{m}_{n}"] for n in NIG._fields)) for m in range(meta["rounds"])]
        proposals = [Proposal(tuple(p["box"]), float(p["score"]), tuple(p["cell"])) for p in meta["proposals"]]
        return cls(
            image=image,
            image_w=image if meta["same_working"] else arrays["image_w"],
            user_map=arrays["user_map"],
            labelled=arrays["labelled"],
            rounds=rounds,
            proposals=proposals,
            solved=arrays.get("solved"),
            solve_info=meta.get("solve_info", {}),
            refined=arrays.get("refined"),
            timings=meta["timings"],
            label_log=meta["label_log"],
            config=meta["config"],
        )


def new_state(
    image: np.ndarray,
    config: SessionConfig | None = None,
    user_map: np.ndarray | None = None,
    trimap: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> SessionState:
    """A fresh state for ``image``: validated, reduced to working size, initial U painted.

    ``user_map`` (U values, image-sized) or ``trimap`` (uint8 0/128/255, or a 0/1 mask,
    image-sized) is resized to the working grid with nearest neighbour. A binary mask
    has no grey band, so it labels every pixel fg or bg; erode/dilate it into a trimap
    first if the edges should be solved. ``mask`` is such a mask in any form
    :func:`dugray.usermap.mask_to_trimap` reads (0/1, 0/255, 16-bit, float). This is
    where every entry point's input is checked (ValueError with a one-line reason).
    """
    config = config or SessionConfig()
    img = as_rgb_uint8(image)
    image_w, _ = resize_to_working(img, config.work_size)
    if min(image_w.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"image {img.shape[0]}x{img.shape[1]} is too elongated: at work_size {config.work_size} its short "
            f"side would be {min(image_w.shape[:2])} < {MIN_SIDE} pixels"
        )
    if sum(x is not None for x in (user_map, trimap, mask)) > 1:
        raise ValueError("give at most one of user_map, trimap or mask")
    if mask is not None:
        trimap = mask_to_trimap(_check_plane(mask, img.shape[:2], "mask"))
    work_shape = image_w.shape[:2]
    if trimap is not None:
        u = trimap_to_usermap(_check_plane(trimap, img.shape[:2], "trimap"))
        u = _resize_nearest(u, work_shape)
        labelled = (u == FOREGROUND) | (u == BACKGROUND)
    elif user_map is not None:
        u = np.asarray(_check_plane(user_map, img.shape[:2], "user_map"), np.float32)
        if not np.all(np.isin(u, (FOREGROUND, BACKGROUND, 0.5, UNKNOWN))):
            raise ValueError("user_map values must be 1 (fg), -1 (bg), 0.5 (transition) or 0 (unknown)")
        u = _resize_nearest(u, work_shape)
        labelled = u != UNKNOWN
    else:
        u = np.zeros(work_shape, np.float32)
        labelled = np.zeros(work_shape, bool)
    return SessionState(image=img, image_w=image_w, user_map=u, labelled=labelled, config=config.to_dict())


# --------------------------------------------------------------------------- images


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Validate and normalise an input image to RGB uint8 (H, W, 3); ValueError otherwise.

    Accepts grey HxW / HxWx1 (replicated), RGB, RGBA (alpha dropped); uint8, uint16
    (divided by 257) or float in [0, 1]. Channel order is taken as RGB (OpenCV's
    ``imread`` gives BGR: convert before calling).
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be HxW, HxWx3 or HxWx4, got shape {a.shape}")
    if min(a.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image is {a.shape[0]}x{a.shape[1]}; both sides must be at least {MIN_SIDE} pixels")
    if a.shape[2] == 4:
        a = a[..., :3]
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    # 16-bit and float images are scaled by OpenCV straight into uint8 (rounded, saturated):
    # no full-size float copy of a large upload
    if a.dtype == np.uint16:
        return cv2.convertScaleAbs(np.ascontiguousarray(a), alpha=1 / 257.0)
    if a.dtype in (np.float32, np.float64):
        if not np.isfinite(a.min()) or not np.isfinite(a.max()) or a.min() < 0 or a.max() > 1:
            raise ValueError("a float image must be finite with values in [0, 1]")
        return cv2.convertScaleAbs(np.ascontiguousarray(a), alpha=255.0)
    raise ValueError(f"image dtype must be uint8, uint16 or float32/64 in [0, 1], got {a.dtype}")


def working_float(state: SessionState) -> np.ndarray:
    """The working image as float32 in [0, 1], the network's input range."""
    return state.image_w.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- steps


def predict_round(model, image_w: np.ndarray, user_map_w: np.ndarray) -> NIG:
    """Run the matting network once: float (h, w, 3) image in [0, 1] + U -> NIG of float32 (h, w).

    Runs under ``torch.inference_mode`` on the model's device; the caller puts the model
    in eval mode (batch-norm statistics of a batch of one are meaningless).
    """
    return _forward(model, [image_w], [user_map_w])[0]


def predict_rounds(model, images_w: Sequence[np.ndarray], user_maps_w: Sequence[np.ndarray]) -> list[NIG]:
    """``[predict_round(model, x, u) for x, u in zip(...)]`` with same-shape inputs in one pass.

    Why grouping and not padding (a server batches concurrent requests): at the working
    resolution images differ in aspect ratio, and padding them to one shape would let
    every image see the padding through the convolutions and change its matte near the
    border; grouping keeps every result equal to :func:`predict_round` on its own input
    (batch norm is in eval mode, so samples do not interact).
    """
    if len(images_w) != len(user_maps_w):
        raise ValueError("need one user map per image")
    groups: dict[tuple, list[int]] = {}
    for i, (x, u) in enumerate(zip(images_w, user_maps_w)):
        groups.setdefault((np.shape(x), np.shape(u)), []).append(i)
    out: list[NIG | None] = [None] * len(images_w)
    for idx in groups.values():
        for i, nig in zip(idx, _forward(model, [images_w[i] for i in idx], [user_maps_w[i] for i in idx])):
            out[i] = nig
    return out


def _forward(model, images_w: Sequence[np.ndarray], user_maps_w: Sequence[np.ndarray]) -> list[NIG]:
    """One forward pass over same-shape inputs (checked here, once for every caller)."""
    images = [np.asarray(x, np.float32) for x in images_w]
    maps = [np.asarray(u, np.float32) for u in user_maps_w]
    for x, u in zip(images, maps):
        if x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"image_w must be HxWx3 float, got shape {x.shape}")
        if u.shape != x.shape[:2]:
            raise ValueError(f"user_map_w {u.shape} must match the image {x.shape[:2]}")
    device = _device_of(model)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(np.stack([a.transpose(2, 0, 1) for a in images]))).to(device)
        u = torch.from_numpy(np.ascontiguousarray(np.stack(maps)[:, None])).to(device)
        out = [t[:, 0].float().cpu().numpy() for t in model(x, u)]
    return [NIG(*(m[j] for m in out)) for j in range(len(images))]


def enforce_user_labels(matte: np.ndarray, user_map: np.ndarray) -> np.ndarray:
    """Copy of ``matte`` with U == fg set to 1 and U == bg set to 0 (the user is the oracle)."""
    out = np.array(matte, np.float32, copy=True)
    out[user_map == FOREGROUND] = 1.0
    out[user_map == BACKGROUND] = 0.0
    return out


def fuse_rounds(rounds: Sequence[NIG], mode: str = "nig", user_map=None, enforce_labels: bool = True) -> NIG:
    """Fuse the rounds' NIGs: eq. 2 over all rounds ("nig") or only the last ("last").

    With ``user_map`` and ``enforce_labels``, gamma is then pinned to the user's fg/bg
    labels. Returns new float32 arrays (the rounds are never modified).
    """
    if not rounds:
        raise ValueError("fuse_rounds needs at least one round")
    if mode == "nig":
        fused = nig_fold(rounds) if len(rounds) > 1 else rounds[0]
    elif mode == "last":
        fused = rounds[-1]
    else:
        raise ValueError(f"fusion mode must be one of {FUSION_MODES}, got {mode!r}")
    fused = NIG(*(np.array(a, np.float32, copy=True) for a in fused))
    if enforce_labels and user_map is not None:
        fused = fused._replace(gamma=enforce_user_labels(fused.gamma, user_map))
    return fused


def uncertainty_maps(nig: NIG) -> dict[str, np.ndarray]:
    """The three uncertainty maps of a NIG (float32): epistemic, aleatoric, aleatoric_variance.

    aleatoric_variance is +inf where alpha <= 2 (undefined, i.e. unreliable).
    """
    _, nu, a, b = nig
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return {
            "epistemic": np.asarray(epistemic(nu, a, b), np.float32),
            "aleatoric": np.asarray(aleatoric(a, b), np.float32),
            "aleatoric_variance": np.asarray(aleatoric_variance(a, b), np.float32),
        }


def fused_nig(state: SessionState, config: SessionConfig | None = None) -> NIG:
    """The state's posterior: its rounds fused as its config says (eq. 2; tempered to one
    round's evidence with ``config.temper_rounds``), the labels' carried evidence summed in
    (``config.carry``), labels enforced when configured."""
    config = config or SessionConfig.from_dict(state.config)
    if not state.rounds:
        raise RuntimeError("no round has been predicted yet; call start() / predict_round first")
    fused = fuse_rounds(state.rounds, config.fusion, state.user_map, enforce_labels=False)
    if config.temper_rounds and config.fusion == "nig" and len(state.rounds) > 1:
        fused = NIG(*(np.asarray(a, np.float32) for a in nig_temper(fused, len(state.rounds))))
    if config.carry and state.label_log:
        evidence = carried_evidence(state.image_w, state.user_map, label_boxes(state), config.carry_parameters,
                                    nu=state.rounds[0].nu, gamma=fused.gamma)
        fused = carry_labels(fused, evidence)
    if config.enforce_labels:
        fused = fused._replace(gamma=enforce_user_labels(fused.gamma, state.user_map))
    return fused


def label_boxes(state: SessionState) -> list[tuple[Box, float]]:
    """The user's labels so far (``state.label_log``) as (working-grid box, U value), oldest first."""
    return [(working_box(state, entry["box"]), entry["value"]) for entry in state.label_log]


def working_box(state: SessionState, box: Sequence[int]) -> Box:
    """A full-resolution box on the working grid; a tiny box still covers one working pixel."""
    y0, x0, y1, x1 = scale_box(box, state.full_shape, state.work_shape)
    return (y0, x0, max(y1, y0 + 1), max(x1, x0 + 1))




def solve_step(state: SessionState, config: SessionConfig | None = None, nig: NIG | None = None) -> SolveResult | None:
    """The uncertainty-guided solve of the state's fused posterior and user map (None if off).

    Runs :func:`dugray.solve.solve_matte` at working resolution; the caller stores
    ``result.alpha`` in ``state.solved`` (see :func:`record_solve`). ``nig`` saves
    re-fusing when the caller already has the fused NIG.
    """
    config = config or SessionConfig.from_dict(state.config)
    if not config.solve:
        return None
    nig = nig if nig is not None else fused_nig(state, config)
    user_map, unpinned = solve_labels(state, config)
    return solve_matte(state.image_w, nig, user_map, config.solve_parameters, unpinned)


def solve_labels(state: SessionState, config: SessionConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """(user map, pixels never pinned) as the solve reads them: the state's user map, and the
    band the transition labels release (:func:`dugray.propagate.released_band`): marked
    transition (``transition="release"``) or only unpinned (``"unpin"``)."""
    mode = config.carry_parameters.transition if config.carry and state.label_log else "none"
    if mode == "none":
        return state.user_map, None
    band = released_band(state.image_w, state.user_map, label_boxes(state), config.carry_parameters)
    if mode == "unpin":
        return state.user_map, band
    u = state.user_map.copy()
    u[band] = TRANSITION
    return u, None


def record_solve(state: SessionState, result: SolveResult | None) -> float:
    """Store a solve's matte and numbers in the state; returns its seconds (0 when off)."""
    if result is None:
        state.solved, state.solve_info = None, {}
        return 0.0
    state.solved = result.alpha
    state.solve_info = {"band_fraction": round(float(result.stats["band_fraction"]), 4),
                        "iterations": result.iterations, "residual": float(result.residual),
                        "guard": result.guard, "seconds": float(result.stats.get("seconds", 0.0))}
    return state.solve_info["seconds"]


def set_solve(state: SessionState, enabled: bool) -> None:
    """Switch the solve on or off for this session (its config travels with the state).

    Drops the solved and the refined matte (both depend on it); the caller runs
    :func:`solve_step` again when switching on (a started session has a posterior to solve).
    """
    state.config = {**state.config, "solve": bool(enabled)}
    state.solved, state.solve_info, state.refined = None, {}, None


def refine_step(state: SessionState, refiner, config: SessionConfig | None = None, nig: NIG | None = None,
                noise: str | None = None) -> np.ndarray:
    """Refinement (section 3.4) of the fused posterior, then, when the config solves, the solve
    with the refined matte as the posterior's mean: the working matte ``state.refined`` holds.

    Refine-then-solve is the order that won on train/ and synthetic data (README, "Uncertainty-
    guided solve"): the refiner was trained on the network's own mattes, and the solve then
    settles what it leaves against the image's colour lines and the labels. Deterministic:
    the sample gamma_s is drawn from ``(config.seed, rounds)``. ``noise`` defaults to the
    refiner's own (Table 4's options: see :func:`refine_matte`).
    """
    config = config or SessionConfig.from_dict(state.config)
    nig = nig if nig is not None else fused_nig(state, config)
    rng = np.random.default_rng([config.seed, len(state.rounds)])
    matte = refine_matte(refiner, nig, working_float(state), config, rng, noise=noise)
    if config.enforce_labels:
        matte = enforce_user_labels(matte, state.user_map)
    if config.solve:
        user_map, unpinned = solve_labels(state, config)
        matte = solve_matte(state.image_w, nig._replace(gamma=matte), user_map, config.solve_parameters, unpinned).alpha
    return matte


def propose_patches(state: SessionState, config: SessionConfig | None = None, nig: NIG | None = None) -> list[Proposal]:
    """Algorithm 1 on the fused epistemic map; boxes returned in FULL-resolution pixels.

    Computed on the working grid (cells mostly labelled already are skipped), then each
    box is scaled to the full image and clipped to it. ``nig`` saves re-fusing when the
    caller already has the fused NIG.
    """
    config = config or SessionConfig.from_dict(state.config)
    if config.proposals == "epistemic" and config.carry and state.label_log:
        nig = fused_nig(state, replace(config, carry=False))  # Algorithm 1 on the network's rounds alone
    nig = nig if nig is not None else fused_nig(state, config)
    epi = uncertainty_maps(nig)["epistemic"]
    reach = None
    if config.proposals == "spread":
        params = config.carry_parameters
        lab = features(state.image_w, nig.gamma, params)
        reach = lambda box: box_reach(lab, box, params)  # noqa: E731
    found = propose(epi, config.k, config.n, config.t, labelled=state.labelled, reach=reach)
    return [Proposal(scale_box(p.box, state.work_shape, state.full_shape), p.score, p.cell) for p in found]


def apply_user_labels(state: SessionState, labels) -> list[tuple[Box, float]]:
    """Paint labels into the working-resolution user map (in place); return them resolved.

    ``labels`` is a list of ``(target, label)`` pairs (or a mapping target -> label):
    ``target`` is an index into ``state.proposals``, a full-resolution point ``(y, x)`` (a
    click: the box :func:`dugray.usermap.point_box` centred there) or an explicit
    full-resolution box ``(y0, x0, y1, x1)``; ``label`` is "fg" / "bg" / "transition" / "unknown" or its U
    value. Everything is validated before anything is painted, so a bad entry leaves
    the state untouched. "unknown" erases earlier labels in the box.
    """
    items = list(labels.items()) if isinstance(labels, Mapping) else list(labels)
    if not items:
        raise ValueError("no labels given")
    resolved: list[tuple[Box, float]] = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"label #{i} must be a (proposal index or box, label) pair, got {item!r}")
        target, label = item
        resolved.append((_resolve_target(state, target, i), _resolve_label(label, i)))
    for box, value in resolved:
        y0, x0, y1, x1 = working_box(state, box)
        state.user_map[y0:y1, x0:x1] = value
        state.labelled[y0:y1, x0:x1] = value != UNKNOWN
        state.label_log.append({"box": list(box), "value": value, "round": len(state.rounds)})
    state.solved = state.refined = None
    return resolved


def refiner_noise(refiner) -> str:
    """The noise option ``refiner`` was trained with (its config's ``noise``; "aleatoric" for older refiners)."""
    return (getattr(refiner, "config", None) or {}).get("noise", "aleatoric")


def refine_matte(refiner, nig: NIG, image_w: np.ndarray, config: SessionConfig | None = None, rng=None,
                 noise: str | None = None) -> np.ndarray:
    """Section 3.4: refine high-aleatoric detail with R in 32x32 patches; gamma if R is None.

    gamma_s ~ N(gamma, E[sigma^2]) (one sample), pixels above Otsu's aleatoric threshold
    with a reliable Var[sigma^2] are covered by at most ``config.max_patches`` patches of
    gamma_s (:func:`dugray.refine.refinement_boxes`: the rule and fallback stage 2 trained
    with), R refines them in one batch, and the results are pasted into gamma, not into
    gamma_s: outside the patches the sampling noise would only add error.

    ``noise`` (:data:`dugray.refine.NOISES`) defaults to the one the refiner was trained
    with (Table 4: "aleatoric", "fixed" = one image-wide variance, "none"); passing
    another is an evaluation-time swap. The refined boxes are the same for every noise.
    """
    noise = noise or refiner_noise(refiner)
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    config = config or SessionConfig()
    gamma = np.asarray(nig.gamma, np.float32)
    if refiner is None:
        return gamma.copy()
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    maps = uncertainty_maps(nig)
    boxes = refinement_boxes(maps["aleatoric"], maps["aleatoric_variance"], config.max_patches, config.reliable_quantile)
    if not boxes:
        return gamma.copy()
    gamma_s = sample_coarse(gamma, noise_variance(maps["aleatoric"], noise), rng)
    coarse = extract_patches(gamma_s, boxes)[:, None]  # (P, 1, 32, 32)
    image = extract_patches(np.asarray(image_w, np.float32), boxes).transpose(0, 3, 1, 2)  # (P, 3, 32, 32)
    device = _device_of(refiner)
    with torch.inference_mode():
        out = refiner(torch.from_numpy(np.ascontiguousarray(coarse)).to(device), torch.from_numpy(np.ascontiguousarray(image)).to(device))
        refined = out[:, 0].float().clamp(0, 1).cpu().numpy()
    return paste_patches(gamma, refined, boxes)


def full_resolution_alpha(matte_w: np.ndarray, image_full: np.ndarray, config: SessionConfig | None = None, image_w=None) -> np.ndarray:
    """The working matte at the image's full size: guided upsampling, identity if no resize.

    ``image_w`` (the working image) skips recomputing the low-res guide.
    """
    config = config or SessionConfig()
    m = np.asarray(matte_w, np.float32)
    full = np.asarray(image_full)
    if m.shape == full.shape[:2]:
        return np.clip(m, 0.0, 1.0)
    guide, small = full, image_w
    if config.upsample_guide == "gray":
        guide = cv2.cvtColor(full, cv2.COLOR_RGB2GRAY)
        small = None if image_w is None else cv2.cvtColor(np.asarray(image_w), cv2.COLOR_RGB2GRAY)
    return guided_upsample(m, guide, config.upsample_radius, config.upsample_eps, guide_lowres=small)


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (H, W), keeping +inf where the nearest pixel is inf."""
    v = np.asarray(values, np.float32)
    if v.shape == tuple(shape):
        return v.copy()
    h, w = shape
    inf = ~np.isfinite(v)
    if not inf.any():
        return cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR)
    finite_max = float(v[~inf].max()) if (~inf).any() else 0.0
    out = cv2.resize(np.where(inf, finite_max, v), (w, h), interpolation=cv2.INTER_LINEAR)
    out[cv2.resize(inf.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0] = np.inf
    return out


def scale_box(box: Sequence[int], src_shape: tuple[int, int], dst_shape: tuple[int, int]) -> Box:
    """Map a (y0, x0, y1, x1) box between two resolutions of the same image, clipped.

    Edges are rounded, so enlarging a box and shrinking it back gives the original box.
    """
    (sh, sw), (dh, dw) = src_shape, dst_shape
    y0, x0, y1, x1 = box
    fy, fx = dh / sh, dw / sw
    clip = lambda v, hi: int(min(max(round(v), 0), hi))  # noqa: E731
    return (clip(y0 * fy, dh), clip(x0 * fx, dw), clip(y1 * fy, dh), clip(x1 * fx, dw))


# --------------------------------------------------------------------------- plans

PREDICT, FUSE, PROPOSE, SOLVE, REFINE = "predict", "fuse", "propose", "solve", "refine"
"""The steps a plan asks its runner for, with their arguments:

- ``(PREDICT, state)`` -> the network's NIG for the state's working image and user map
  (:func:`predict_round`);
- ``(FUSE, state)`` -> the fused NIG of all rounds (:func:`fused_nig`); a runner may
  hand back a reference it resolves later (Serve passes it on without fetching it);
- ``(PROPOSE, state, fused)`` -> the proposals (:func:`propose_patches`);
- ``(SOLVE, state, fused)`` -> a :class:`SolveResult` or None (:func:`solve_step`);
- ``(REFINE, state, fused)`` -> the refined working matte (:func:`refine_step`).
"""


def round_plan(state: SessionState, timing: dict | None = None, propose: bool = True):
    """One round (predict, fuse, propose and solve), written once for every runner.

    A plan is a generator: it yields a tuple of step requests ``(name, *args)`` that may
    run concurrently and is sent the list of their results; it changes ``state`` as the
    results come in. :func:`run_plan` runs it in process (:class:`MattingSession`), and
    :func:`run_plan_async` with each step on its own Serve deployment (proposals and
    solve side by side); neither re-implements the round. ``propose=False`` is the
    one-shot path (no user, so nothing to ask). Timings go to ``timing`` and then to
    ``state.timings``: predict_s, fuse_s, propose_solve_s (proposals and solve, side by
    side where the runner can), solve_s (the solve alone), total_s (the round, and
    label_s if the caller put it there).
    """
    config = SessionConfig.from_dict(state.config)
    timing = {} if timing is None else timing
    t0 = time.perf_counter()
    (nig,) = yield ((PREDICT, state),)
    state.rounds.append(nig)
    t1 = time.perf_counter()
    (fused,) = yield ((FUSE, state),)
    t2 = time.perf_counter()
    steps = ((PROPOSE, state, fused),) if propose else ()
    steps += ((SOLVE, state, fused),) if config.solve else ()
    results = list((yield steps)) if steps else []
    state.proposals = results.pop(0) if propose else []
    state.refined = None
    solve_s = record_solve(state, results.pop(0) if config.solve else None)
    timing.update(predict_s=t1 - t0, fuse_s=t2 - t1, propose_solve_s=time.perf_counter() - t2)
    if config.solve:
        timing["solve_s"] = solve_s
    timing["total_s"] = timing.get("label_s", 0.0) + time.perf_counter() - t0
    state.timings.append(timing)


def refine_plan(state: SessionState):
    """Refinement of the current round (:func:`refine_step`), as a plan: ``state.refined`` and refine_s."""
    if not state.rounds:
        raise RuntimeError("session not started; call start() first")
    t0 = time.perf_counter()
    (fused,) = yield ((FUSE, state),)
    (state.refined,) = yield ((REFINE, state, fused),)
    if not state.timings:
        state.timings.append({})
    state.timings[-1]["refine_s"] = time.perf_counter() - t0


def solve_switch_plan(state: SessionState, enabled: bool):
    """Turn the solve on or off (:func:`set_solve`); switching on solves the current round at once."""
    set_solve(state, enabled)
    if not (enabled and state.rounds):
        return
    (fused,) = yield ((FUSE, state),)
    (result,) = yield ((SOLVE, state, fused),)
    solve_s = record_solve(state, result)
    if state.timings:
        state.timings[-1]["solve_s"] = solve_s


def run_plan(plan, steps: Mapping[str, Any]):
    """Run a plan in this process: each requested step by ``steps[name](*args)``, in order."""
    results = None
    try:
        while True:
            request = plan.send(results)
            results = [steps[name](*args) for name, *args in request]
    except StopIteration as done:
        return done.value


async def run_plan_async(plan, steps: Mapping[str, Any]):
    """Run a plan with coroutine steps; the steps of one request run concurrently."""
    results = None
    try:
        while True:
            request = plan.send(results)
            results = list(await asyncio.gather(*(steps[name](*args) for name, *args in request)))
    except StopIteration as done:
        return done.value


def warm_up(model=None, refiner=None, config: SessionConfig | None = None, size: tuple[int, int] = (480, 640)) -> float:
    """One session through every step a request can take (a round with ``model``, or a made-up
    posterior without one; refinement with ``refiner``; the solve; the full-resolution alpha,
    cutout and heat maps) on a ``size`` photo at the config's working size, so that a server's
    first user pays no JIT compile or lazy initialisation and its heap is already the size
    real requests need. Returns the seconds it took."""
    t0 = time.perf_counter()
    config = config or SessionConfig()
    warm_up_propagate()  # label carrying's geodesic kernel (the rounds below carry no label)
    rng = np.random.default_rng(0)
    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = (230, 200, 60)
    state = new_state(image, config)
    if model is not None:
        run_plan(round_plan(state, {}), MattingSession.from_state(state, model, refiner)._steps())
    else:
        h, w = state.work_shape
        card = np.zeros((h, w), np.float32)
        card[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1.0
        gamma = np.clip(cv2.GaussianBlur(card, (0, 0), 6.0) + 0.05 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)
        state.rounds.append(NIG(gamma, np.ones_like(gamma), np.full_like(gamma, 3.0), np.full_like(gamma, 0.1)))
        record_solve(state, solve_step(state))
    session = MattingSession.from_state(state, model, refiner)
    if refiner is not None:
        session.refine()
    session.cutout(), session.alpha_u8, session.epistemic, session.aleatoric
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- the session


class MattingSession:
    """One image, one user, many rounds: the steps above composed for in-process use.

    Example
    -------
    >>> s = MattingSession(image, model).start()           # doctest: +SKIP
    >>> s.label([(0, "fg"), (1, "bg")])                    # doctest: +SKIP
    >>> s.refine().cutout()                                # doctest: +SKIP

    ``model`` (and ``refiner``) are put in eval mode. The state lives in ``.state``; a
    server may serialise it and continue elsewhere with :meth:`from_state`.
    """

    def __init__(self, image, model, refiner=None, config: SessionConfig | None = None, user_map=None, trimap=None,
                 mask=None):
        self.model = model
        self.refiner = refiner
        self.config = config or SessionConfig()
        self.state = new_state(image, self.config, user_map=user_map, trimap=trimap, mask=mask)
        self._prepare_models()
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_state(cls, state: SessionState, model, refiner=None) -> "MattingSession":
        """Continue a session from a (deserialised) state; its config comes with it."""
        self = cls.__new__(cls)
        self.model, self.refiner = model, refiner
        self.config = SessionConfig.from_dict(state.config)
        self.state = state
        self._prepare_models()
        self._cache = {}
        return self

    # ---- actions

    def start(self, propose: bool = True) -> "MattingSession":
        """Round 1: predict with the initial user map and propose patches (``propose=False``:
        the one-shot path, nothing to ask)."""
        if self.state.rounds:
            raise RuntimeError("session already started; use label() for the next round")
        self._run_round({}, propose)
        return self

    def label(self, labels) -> "MattingSession":
        """Apply labels (see :func:`apply_user_labels`), predict again, fuse, propose anew."""
        self._require_started()
        t0 = time.perf_counter()
        apply_user_labels(self.state, labels)
        self._cache.clear()
        self._run_round({"label_s": time.perf_counter() - t0})
        return self

    def set_solve(self, enabled: bool) -> "MattingSession":
        """Turn the uncertainty-guided solve on or off; the current matte follows at once."""
        self._cache.pop("alpha", None)
        run_plan(solve_switch_plan(self.state, enabled), self._steps())
        self.config = SessionConfig.from_dict(self.state.config)
        return self

    def refine(self) -> "MattingSession":
        """Refine with the refiner, then solve again from the refined matte (see :func:`refine_step`)."""
        self._require_started()
        run_plan(refine_plan(self.state), self._steps())
        self._cache.pop("alpha", None)
        return self

    # ---- outputs

    @property
    def rounds(self) -> int:
        return len(self.state.rounds)

    @property
    def proposals(self) -> list[Proposal]:
        return list(self.state.proposals)

    @property
    def matte_w(self) -> np.ndarray:
        """Current matte at working resolution: refined if refine() ran since the last round,
        else the solved matte (when the config solves), else the fused gamma."""
        self._require_started()
        if self.state.refined is not None:
            return self.state.refined
        if self.state.solved is not None:
            return self.state.solved
        return self._fused().gamma

    @property
    def alpha(self) -> np.ndarray:
        """Current alpha matte, float32 (H, W) in [0, 1] at the input's full resolution."""
        if "alpha" not in self._cache:
            st = self.state
            self._cache["alpha"] = full_resolution_alpha(self.matte_w, st.image, self.config, image_w=st.image_w)
        return self._cache["alpha"]

    @property
    def alpha_u8(self) -> np.ndarray:
        return np.clip(np.rint(self.alpha * 255.0), 0, 255).astype(np.uint8)

    @property
    def epistemic(self) -> np.ndarray:
        return self._full_map("epistemic")

    @property
    def aleatoric(self) -> np.ndarray:
        return self._full_map("aleatoric")

    @property
    def aleatoric_variance(self) -> np.ndarray:
        return self._full_map("aleatoric_variance")

    def cutout(self) -> np.ndarray:
        """RGBA uint8 (H, W, 4): estimated foreground colours + the current alpha."""
        return rgba_cutout(self.state.image, self.alpha, self.config.foreground_max_side)

    # ---- internals

    def _run_round(self, timing: dict, propose: bool = True) -> None:
        self._cache.clear()  # the fused NIG is recomputed once the new round is in
        run_plan(round_plan(self.state, timing, propose), self._steps())

    def _steps(self) -> dict:
        """The steps of :func:`round_plan` & co., run here (the config is read from the state)."""
        return {
            PREDICT: lambda st: predict_round(self.model, working_float(st), st.user_map),
            FUSE: lambda st: self._fused(),
            PROPOSE: lambda st, nig: propose_patches(st, None, nig),
            SOLVE: lambda st, nig: solve_step(st, None, nig),
            REFINE: lambda st, nig: refine_step(st, self.refiner, None, nig),
        }

    def _fused(self) -> NIG:
        if "fused" not in self._cache:
            self._cache["fused"] = fused_nig(self.state, self.config)
        return self._cache["fused"]

    def _full_map(self, name: str) -> np.ndarray:
        self._require_started()
        key = "map_" + name
        if key not in self._cache:
            self._cache[key] = resize_map(uncertainty_maps(self._fused())[name], self.state.full_shape)
        return self._cache[key]

    def _require_started(self) -> None:
        if not self.state.rounds:
            raise RuntimeError("session not started; call start() first")

    def _prepare_models(self) -> None:
        for net in (self.model, self.refiner):
            if isinstance(net, torch.nn.Module):
                net.eval()


# --------------------------------------------------------------------------- helpers


def _device_of(net) -> torch.device:
    """Device of a module's first parameter or buffer; CPU for parameter-free callables."""
    if isinstance(net, torch.nn.Module):
        for t in net.parameters():
            return t.device
        for t in net.buffers():
            return t.device
    return torch.device("cpu")


def _resolve_target(state: SessionState, target, i: int) -> Box:
    """A label's target as a full-resolution box: a proposal index, a (y, x) point (the box of
    :func:`dugray.usermap.point_box` centred there) or an explicit box."""
    if isinstance(target, (bool, np.bool_)):
        raise ValueError(f"label #{i}: target must be a proposal index or a box, got {target!r}")
    if isinstance(target, (int, np.integer)):
        n = len(state.proposals)
        if not 0 <= target < n:
            raise ValueError(f"label #{i}: proposal index {int(target)} out of range; there are {n} current proposals")
        return tuple(state.proposals[int(target)].box)
    if isinstance(target, (tuple, list, np.ndarray)) and len(target) == 4:
        try:
            y0, x0, y1, x1 = (int(v) for v in target)
        except (TypeError, ValueError):
            raise ValueError(f"label #{i}: box {target!r} must be four integers (y0, x0, y1, x1)") from None
        h, w = state.full_shape
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"label #{i}: box {tuple(target)} is empty or outside the {h}x{w} image")
        return (y0, x0, y1, x1)
    if isinstance(target, (tuple, list, np.ndarray)) and len(target) == 2:
        try:
            y, x = (int(v) for v in target)
        except (TypeError, ValueError):
            raise ValueError(f"label #{i}: point {target!r} must be two integers (y, x)") from None
        h, w = state.full_shape
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"label #{i}: point {tuple(target)} is outside the {h}x{w} image")
        return point_box(y, x, state.full_shape)
    raise ValueError(f"label #{i}: target must be a proposal index, a (y, x) point or a (y0, x0, y1, x1) box, "
                     f"got {target!r}")


def _resolve_label(label, i: int) -> float:
    try:
        return label_value(label)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"label #{i}: {exc}") from None


def _check_plane(a, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[..., 0]
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have the image's size {tuple(shape)}, got shape {arr.shape}")
    return arr


def _resize_nearest(u: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    u = np.asarray(u, np.float32)
    if u.shape == tuple(shape):
        return u.copy()
    return cv2.resize(u, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
