"""Label-carried evidence: a user's label speaks for everything that belongs with it.

A click says "background" about a 10-pixel box, but the user means the region: the
patch of canyon the network kept, all of it. Each labelled region (the connected
fg or bg boxes of the user's labels, at working resolution) carries its label to the
pixels that look like it *and* are connected to it through pixels that look like it:

1. its colour model: mean and covariance of its pixels in CIE Lab (after a light
   Gaussian blur), the covariance widened by ``colour_floor`` Lab units so a flat box
   still tolerates noise;
2. a cost per pixel: ``step_cost`` plus how far the pixel's colour lies outside the
   model, ``max(0, m - match_sd)`` with m the Mahalanobis distance; crossing a colour
   the model does not explain (an object's edge, another material) is expensive;
3. the geodesic distance D from the region over that cost (:mod:`.geodesic`), and the
   strength ``exp(-D / scale)``: 1 on the label, fading with the distance travelled.

Per class the strongest region wins, and fg and bg evidence cancel where both reach
(``strength = |S_fg - S_bg|``, target 1 or 0 by the larger). The evidence enters where
every other evidence enters, the NIG posterior, by the NIG summation of eq. 2
(:func:`carry_labels`): a pseudo-observation ``target`` with ``nu_L = nu s / (1 - s)``,
so the fused mean moves the share ``s`` of the way to the label, and the disagreement
raises beta (the epistemic uncertainty) where the network was sure and the label says
otherwise. The solve then snaps what the evidence settles and solves what it leaves
half-way, and a pin the labels contradict is released because the fused mean no longer
sits near 0 or 1.

Only the user's interactive labels carry (``SessionState.label_log``): a trimap or mask
given at the start already says what it means everywhere.

Transition labels say "mixed here" and carry no target. With
``transition="release"`` their region (same colour model, a shorter reach) is marked so
that the solve treats it as a trimap's unknown band (no pin, the network's weight times
the solve's ``transition_weight``): the image decides there; ``"unpin"`` only takes the
pins away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from dugray.nig import NIG
from dugray.typed import from_dict
from dugray.usermap import BACKGROUND, FOREGROUND, TRANSITION

from .geodesic import DEFAULT_PASSES, geodesic_distance, mahalanobis_cost

TRANSITION_MODES = ("none", "release", "unpin", "network")
RELEASING = ("release", "unpin")
"""The transition modes that reach beyond the label's box (:func:`released_band`)."""
METHODS = ("geodesic", "grabcut")


@dataclass(frozen=True)
class CarryParams:
    """How far a label carries (see the module doc); the defaults were chosen on train/ and synthetic data.

    method : "geodesic" (the colour-model geodesic reach above) or "grabcut" (OpenCV's GrabCut
        on the image, initialised by the network's matte as probable fg / bg and the labels as
        certain; its segmentation is evidence, with strength ``grabcut_strength``, where it
        disagrees with the network in a connected piece that touches a label of that class).
    grabcut_strength, grabcut_iterations : for ``method="grabcut"``.
    smoothing : sigma (working pixels) of the blur before the colour models (0: none).
    colour_floor : Lab standard deviation added to every colour model.
    match_sd : Mahalanobis distance under which a pixel is "the same stuff" (costs only the step).
    step_cost : cost of one step across matching pixels; ``scale / step_cost`` is the
        reach in working pixels over which a label's strength falls to 1/e.
    scale : strength = exp(-distance / scale).
    max_strength : cap on the carried strength off the label itself (< 1: the network keeps a say).
    edge_cost : cost per Lab unit of the image's gradient magnitude (Sobel / 8) on top of the
        colour cost: an edge between two colours the model explains still costs to cross.
    regrow : times the colour model is refitted on what the label reaches (see :func:`region_strength`).
    network_weight : > 0 adds the network's matte gamma, times this many Lab units, as a fourth
        feature of every model: a label then also stops where the network's own opinion changes
        (another object the network told apart, even in the same colour). 0: colour only.
    confidence_gate : rho > 0 scales a region's strength at pixel p by min(1, rho nu_r / nu_p),
        nu_r the network's mean evidence over the labelled region and nu_p at p (both of its
        first round, before any label: a labelled pixel is one the next round is sure of): a label that
        corrects the network where it was only so sure carries to pixels the network is about
        as sure of, not into what it knows far better (another object of the same colour).
        0: off.
    surprise_gate : s > 0 scales a region's reach by min(1, d / s), d the mean |label - gamma| over
        the region, gamma the network's matte there (its fused rounds, before any carrying): a label
        that tells the network what it already said carries nothing beyond its box (an answered
        proposal inside a subject the network had, whose colour also fills the background), one
        that corrects it by s or more carries fully (a click where the matte is wrong). 0: off.
    transition : "none" (transition labels carry nothing), "release" (their region is solved
        like a trimap's unknown band: no pin, the network's weight times the solve's
        transition_weight), "unpin" (their region gets no pin; weights unchanged) or "network"
        (their own boxes get no pin and the network's full weight: the label says "mixed", the
        posterior and the image say how; a trimap's unknown band keeps ``transition_weight``).
    release_distance : geodesic distance (cost units) within which a transition label's
        region reaches (e.g. 1.0: 50 working pixels of matching colour at step_cost 0.02).
    passes : geodesic scan pairs.
    """

    method: str = "geodesic"
    grabcut_strength: float = 0.9
    grabcut_iterations: int = 3
    smoothing: float = 1.0
    colour_floor: float = 3.0
    match_sd: float = 2.0
    step_cost: float = 0.02
    scale: float = 20.0
    max_strength: float = 0.99
    edge_cost: float = 0.0
    confidence_gate: float = 0.0
    network_weight: float = 10.0
    surprise_gate: float = 0.0
    regrow: int = 0
    transition: str = "network"
    release_distance: float = 1.0
    passes: int = DEFAULT_PASSES

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not (0 < self.grabcut_strength < 1 and 1 <= self.grabcut_iterations <= 20):
            raise ValueError("need 0 < grabcut_strength < 1 and 1 <= grabcut_iterations <= 20")
        if self.transition not in TRANSITION_MODES:
            raise ValueError(f"transition must be one of {TRANSITION_MODES}, got {self.transition!r}")
        if not (
            self.smoothing >= 0
            and self.colour_floor > 0
            and self.match_sd >= 0
            and self.step_cost > 0
            and self.scale > 0
            and 0 < self.max_strength < 1
            and self.release_distance > 0
            and self.passes >= 1
            and self.edge_cost >= 0
            and self.confidence_gate >= 0
            and self.network_weight >= 0
            and self.surprise_gate >= 0
            and 0 <= self.regrow <= 4
        ):
            raise ValueError(
                "need smoothing >= 0, colour_floor > 0, match_sd >= 0, step_cost > 0, scale > 0, "
                "0 < max_strength < 1, release_distance > 0, passes >= 1, confidence_gate, "
                "network_weight and surprise_gate >= 0 and regrow 0-4"
            )

    def to_dict(self) -> dict:
        """Every parameter as a plain dict (:meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> CarryParams:
        """Defaults overridden by ``d``; unknown keys are an error."""
        return from_dict(cls, d, "label-carrying parameters")


@dataclass
class Evidence:
    """What the fg/bg labels say beyond their boxes, both (h, w) float32: ``target`` (0 or 1)
    and ``strength`` in [0, 1) (0: nothing carried)."""

    target: np.ndarray
    strength: np.ndarray


def lab_image(image: np.ndarray, smoothing: float) -> np.ndarray:
    """The image (RGB uint8 or float in [0, 1]) in CIE Lab, float32, blurred by ``smoothing``."""
    img = np.asarray(image)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else np.asarray(img, np.float32)
    if smoothing > 0:
        img = cv2.GaussianBlur(img, (0, 0), smoothing)
    return cv2.cvtColor(img, cv2.COLOR_RGB2LAB)


def features(image: np.ndarray, gamma: np.ndarray | None, params: CarryParams) -> np.ndarray:
    """What the labels' models describe per pixel: Lab colour (:func:`lab_image`), plus the network's
    matte times ``network_weight`` when that is > 0 and a matte is given."""
    lab = lab_image(image, params.smoothing)
    if params.network_weight <= 0 or gamma is None:
        return lab
    return np.concatenate([lab, (np.asarray(gamma, np.float32) * params.network_weight)[..., None]], axis=2)


def colour_cost(
    lab: np.ndarray, region: np.ndarray, *, colour_floor: float, step_cost: float, match_sd: float, edge_cost: float
) -> np.ndarray:
    """Per-pixel cost of ``region``'s colour model: step_cost + max(0, Mahalanobis - match_sd), plus
    ``edge_cost`` times the image's gradient magnitude when > 0 (the parameters: :class:`CarryParams`)."""
    pts = lab[region].astype(np.float64)
    mean = pts.mean(axis=0)
    c = lab.shape[2]
    cov = (np.cov(pts.T) if len(pts) > 1 else np.zeros((c, c))) + np.eye(c) * colour_floor**2
    whiten = np.linalg.cholesky(np.linalg.inv(cov))  # inv(cov) = W W': m^2 = |(x - mean) W|^2
    cost = mahalanobis_cost(lab, mean, whiten, step_cost, match_sd)
    if edge_cost > 0:
        cost += edge_cost * edge_magnitude(lab)
    return cost


def edge_magnitude(lab: np.ndarray) -> np.ndarray:
    """The Lab image's gradient magnitude per pixel (Sobel, divided by 8: Lab units per pixel)."""
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
    return np.sqrt((gx * gx + gy * gy).sum(axis=2)).astype(np.float64) / 8.0


def region_strength(
    lab: np.ndarray,
    region: np.ndarray,
    *,
    scale: float,
    regrow: int,
    passes: int,
    colour_floor: float,
    step_cost: float,
    match_sd: float,
    edge_cost: float,
) -> np.ndarray:
    """exp(-D / scale): how strongly ``region``'s label reaches each pixel (1 on the region).

    With ``regrow`` > 0 the colour model is refitted that many times on everything the label
    reaches with strength above 1/2, and the distance computed again from the label: a label
    in a varied region (foliage, rock) learns the region's other colours step by step."""
    model_region = region
    for _ in range(regrow + 1):
        cost = colour_cost(
            lab, model_region, colour_floor=colour_floor, step_cost=step_cost, match_sd=match_sd, edge_cost=edge_cost
        )
        dist = geodesic_distance(cost, region, passes)
        strength = np.exp(-dist / scale)
        model_region = strength > 0.5
    return strength


def _label_reach(lab: np.ndarray, region: np.ndarray, params: CarryParams) -> np.ndarray:
    """:func:`region_strength` with the carrying settings of ``params`` (one unpacking for every caller)."""
    return region_strength(
        lab,
        region,
        scale=params.scale,
        regrow=params.regrow,
        passes=params.passes,
        colour_floor=params.colour_floor,
        step_cost=params.step_cost,
        match_sd=params.match_sd,
        edge_cost=params.edge_cost,
    )


def box_reach(lab: np.ndarray, box: tuple[int, int, int, int], params: CarryParams) -> np.ndarray:
    """How strongly an answer about ``box`` (working grid) would carry to each pixel (:func:`region_strength`)."""
    region = np.zeros(lab.shape[:2], bool)
    y0, x0, y1, x1 = box
    region[y0:y1, x0:x1] = True
    return _label_reach(lab, region, params)


def labelled_mask(user_map: np.ndarray, label_boxes: Sequence[tuple], value: float) -> np.ndarray:
    """The pixels of the user's ``value`` labels (bool): ``label_boxes`` (working-grid boxes with
    their values) still showing ``value`` in the user map (a later label may have painted over)."""
    mask = np.zeros(np.shape(user_map), bool)
    for (y0, x0, y1, x1), v in label_boxes:
        if v == value:
            mask[y0:y1, x0:x1] = True
    return mask & (np.asarray(user_map) == value)


def labelled_regions(user_map: np.ndarray, label_boxes: Sequence[tuple], value: float) -> list[np.ndarray]:
    """The 8-connected regions of :func:`labelled_mask`."""
    n, labels = cv2.connectedComponents(labelled_mask(user_map, label_boxes, value).astype(np.uint8), connectivity=8)
    return [labels == k for k in range(1, n)]


def carry_passes(user_map: np.ndarray, label_boxes: Sequence[tuple], params: CarryParams | None = None) -> int:
    """Geodesic passes over the working image one fusion spends carrying these labels: the cost model
    a server bounds (each pass is about 47 ms at 512x512 on one core, and every fusion repeats them).
    ``regrow + 1`` per labelled fg or bg region (``method="geodesic"``; GrabCut runs once: 1), and one per
    transition region when transitions are released."""
    params = params or CarryParams()
    u = np.asarray(user_map)
    fg_bg = sum(len(labelled_regions(u, label_boxes, v)) for v in (FOREGROUND, BACKGROUND))
    passes = (params.regrow + 1) * fg_bg if params.method == "geodesic" else int(fg_bg > 0)
    if params.transition in RELEASING:
        passes += len(labelled_regions(u, label_boxes, TRANSITION))
    return passes


def carried_evidence(
    image_w: np.ndarray,
    user_map: np.ndarray,
    label_boxes: Sequence[tuple],
    params: CarryParams | None = None,
    nu: np.ndarray | None = None,
    gamma: np.ndarray | None = None,
) -> Evidence:
    """The labels' evidence beyond their boxes (see the module doc).

    ``label_boxes``: the user's labels as ((y0, x0, y1, x1) on the working grid, U value);
    ``nu`` and ``gamma``: the network's evidence (of its first round) and matte per pixel (for ``confidence_gate``,
    ``surprise_gate`` and ``method="grabcut"``).
    """
    params = params or CarryParams()
    u = np.asarray(user_map)
    zeros = np.zeros(u.shape, np.float32)
    strength = {FOREGROUND: zeros, BACKGROUND: zeros}
    regions = {v: labelled_regions(u, label_boxes, v) for v in (FOREGROUND, BACKGROUND)}
    if not (regions[FOREGROUND] or regions[BACKGROUND]):
        return Evidence(zeros, zeros.copy())
    if params.method == "grabcut":
        return grabcut_evidence(
            image_w,
            u,
            gamma,
            regions,
            grabcut_iterations=params.grabcut_iterations,
            grabcut_strength=params.grabcut_strength,
        )
    lab = features(image_w, gamma, params)
    gate = params.confidence_gate > 0 and nu is not None
    if gate:
        nu = np.maximum(np.asarray(nu, np.float64), 1e-6)
    for value, found in regions.items():
        for region in found:
            reach = _label_reach(lab, region, params)
            if gate:
                reach = reach * np.minimum(1.0, params.confidence_gate * float(nu[region].mean()) / nu)
            if params.surprise_gate > 0 and gamma is not None:
                reach = reach * surprise_share(gamma, region, value, params.surprise_gate)
            strength[value] = np.maximum(strength[value], reach)
    fg, bg = strength[FOREGROUND], strength[BACKGROUND]
    carried = np.minimum(np.abs(fg - bg), params.max_strength).astype(np.float32)
    carried[(u == FOREGROUND) | (u == BACKGROUND)] = 0.0  # the labels themselves are enforced, not carried
    return Evidence((fg > bg).astype(np.float32), carried)


def surprise_share(gamma: np.ndarray, region: np.ndarray, value: float, gate: float) -> float:
    """min(1, d / gate), d = mean |target - gamma| over ``region`` (target 1 for fg, 0 for bg): how much of
    its reach a label keeps under ``CarryParams.surprise_gate`` (:func:`carried_evidence`)."""
    target = 1.0 if value == FOREGROUND else 0.0
    return min(1.0, float(np.abs(target - np.asarray(gamma, np.float64)[region]).mean()) / gate)


def grabcut_evidence(
    image_w: np.ndarray,
    user_map: np.ndarray,
    gamma: np.ndarray | None,
    regions: dict,
    *,
    grabcut_iterations: int,
    grabcut_strength: float,
) -> Evidence:
    """GrabCut's answer (``grabcut_iterations`` of it) where it disagrees with the network, in pieces touching
    a label of its class, as evidence of strength ``grabcut_strength`` (see :class:`CarryParams`)."""
    if gamma is None:
        raise ValueError("method='grabcut' needs the network's matte")
    net_fg = np.asarray(gamma) > 0.5
    mask = np.where(net_fg, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    mask[user_map == FOREGROUND] = cv2.GC_FGD
    mask[user_map == BACKGROUND] = cv2.GC_BGD
    is_fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    if is_fg.all() or not is_fg.any():  # GrabCut needs both sides to model: nothing to say against the network
        return Evidence(is_fg.astype(np.float32), np.zeros(user_map.shape, np.float32))
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    img = np.asarray(image_w)
    img = img if img.dtype == np.uint8 else np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    cv2.grabCut(np.ascontiguousarray(img[..., ::-1]), mask, None, bgd, fgd, grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    seg_fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    target = seg_fg.astype(np.float32)
    strength = np.zeros(user_map.shape, np.float32)
    for value, says_fg in ((FOREGROUND, True), (BACKGROUND, False)):
        flips = (seg_fg == says_fg) & (net_fg != says_fg)
        n, pieces = cv2.connectedComponents(flips.astype(np.uint8), connectivity=8)
        touching = {
            int(k)
            for region in regions[value]
            for k in np.unique(pieces[cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0])
            if k
        }
        for k in touching:
            strength[pieces == k] = grabcut_strength
    strength[(user_map == FOREGROUND) | (user_map == BACKGROUND)] = 0.0
    return Evidence(target, strength)


def released_band(
    image_w: np.ndarray, user_map: np.ndarray, label_boxes: Sequence[tuple], params: CarryParams | None = None
) -> np.ndarray:
    """The pixels the user's transition labels release (bool (h, w); none with ``transition="none"``):
    unlabelled pixels within ``release_distance`` of a transition region over its colour cost."""
    params = params or CarryParams()
    u = np.asarray(user_map)
    release = np.zeros(u.shape, bool)
    regions = labelled_regions(u, label_boxes, TRANSITION) if params.transition in RELEASING else []
    if regions:
        lab = lab_image(image_w, params.smoothing)
        for region in regions:
            cost = colour_cost(
                lab,
                region,
                colour_floor=params.colour_floor,
                step_cost=params.step_cost,
                match_sd=params.match_sd,
                edge_cost=params.edge_cost,
            )
            release |= geodesic_distance(cost, region, params.passes) <= params.release_distance
    return release & (u == 0)


def carry_labels(nig: NIG, evidence: Evidence) -> NIG:
    """The posterior with the labels' evidence summed in (eq. 2): a pseudo-observation of
    ``evidence.target`` with ``nu_L = nu s / (1 - s)``, ``alpha_L = 1``, ``beta_L = 0``.

    gamma moves the share s of the way to the target; beta grows by the disagreement
    (nu nu_L / (nu + nu_L)) (gamma - target)^2 / 2. Pixels with s = 0 are unchanged.
    """
    g, nu, a, b = (np.asarray(x, np.float64) for x in nig)
    s = np.asarray(evidence.strength, np.float64)
    t = np.asarray(evidence.target, np.float64)
    nu_l = nu * s / (1.0 - s)
    nu_f = nu + nu_l
    g_f = (nu * g + nu_l * t) / nu_f
    b_f = b + 0.5 * nu * (g - g_f) ** 2 + 0.5 * nu_l * (t - g_f) ** 2
    a_f = np.where(s > 0, a + 1.5, a)  # alpha_L = 1, plus eq. 2's 1/2; untouched where nothing is carried
    return NIG(*(x.astype(np.float32) for x in (g_f, nu_f, a_f, b_f)))
