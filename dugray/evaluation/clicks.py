"""The corrective-click protocol: a simulated user who clicks where the matte is most wrong.

The proposal protocol (:mod:`.methods`) asks what the model is unsure about; this one
measures what a user does when the matte is wrong somewhere the model is sure about,
the protocol of interactive segmentation (NoC, "number of clicks") adapted to mattes.
After every round the simulated user:

1. takes the current matte at full resolution (the uint8 matte that is scored) and marks
   the pixels with ``|alpha - GT| > threshold`` (0.3);
2. takes the 8-connected component of those pixels with the largest summed error;
3. picks its most interior pixel: the largest Euclidean distance to the component's
   border (the image's edge counts as border; among ties, the one nearest to their mean
   position, then the first in raster order: the middle of a strip, not its end);
4. labels one square box of side ``max(8, round(0.02 * long side))`` pixels centred there
   (clipped to the image; :func:`dugray.usermap.point_box`, the box a click on the web page
   or a ``point`` label of the API labels) from the GT, as the proposal protocol's oracle
   does: fg if the GT is 1 over the whole box, bg if 0, transition otherwise.

Version 2 (the default, ``PROTOCOL``): the pixels of every box the user already labelled
leave the error mask before step 2, as interactive segmentation's clicker excludes the
points it clicked and as a person marks a hair band once and moves on; version 1 (the
first protocol, kept one more turn for the record) could click the same fur pixel ten
times.

One click per round, up to ``max_clicks`` (10); a matte with no error pixel left ends
the run (later clicks change nothing). Reported per image: whole-image SAD after each
click, NoC@m (clicks to reach m times closed-form matting's whole-image SAD given the
full benchmark trimap, computed in the same run; ``max_clicks`` when never reached),
NoF@m (the images that never reach it in ``max_clicks``), and which clicks made the SAD
worse by more than 2%.

The user is a function of (matte, GT) only, so the same run can be driven in process
(:class:`dugray.session.MattingSession`) or over HTTP (the session API with boxes as
labels, :func:`http_labeler`): both give the same clicks and the same mattes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from dugray.metrics import whole_sad
from dugray.usermap import BACKGROUND, FOREGROUND, Box, oracle_label, point_box

ERROR_THRESHOLD = 0.3
"""|alpha - GT| above which a pixel is wrong enough to click on."""
MAX_CLICKS = 10
REPORT_CLICKS = (0, 1, 2, 3, 5, 10)
"""Clicks after which the report gives the SAD."""
NOC_MULTIPLES = (1.5, 2.0)
"""NoC@m: multiples of closed-form matting's whole-image SAD (full trimap)."""
WORSE_TOLERANCE = 0.02
"""A click 'makes the matte worse' when it raises the whole-image SAD by more than this share."""
LABEL_NAMES = {FOREGROUND: "fg", BACKGROUND: "bg"}
PROTOCOL = 2
"""The corrective-click protocol version that the ``click<k>`` rows use (1 for ``v1_click<k>``)."""


@dataclass(frozen=True)
class Click:
    """One corrective click: the chosen pixel (full resolution), its box and the GT's label."""

    y: int
    x: int
    box: Box
    value: float  # U value: 1 fg, -1 bg, 0.5 transition

    @property
    def label(self) -> str:
        """The label's API name (fg, bg or transition)."""
        return LABEL_NAMES.get(self.value, "transition")


def worst_region(
    alpha_u8: np.ndarray, gt_u8: np.ndarray, threshold: float = ERROR_THRESHOLD, exclude: np.ndarray | None = None
) -> np.ndarray | None:
    """The 8-connected component of |alpha - GT| > threshold, outside ``exclude`` (bool HxW: the
    boxes already labelled), with the largest summed error (bool HxW), or None."""
    err = np.abs(alpha_u8.astype(np.float32) - gt_u8.astype(np.float32)) / 255.0
    wrong = err > threshold
    if exclude is not None:
        wrong &= ~exclude
        err = np.where(exclude, 0.0, err)
    wrong = wrong.astype(np.uint8)
    n, labels = cv2.connectedComponents(wrong, connectivity=8)
    if n <= 1:
        return None
    sums = np.bincount(labels.ravel(), weights=err.ravel(), minlength=n)
    sums[0] = -1.0  # the background of the labelling: the pixels that are not wrong
    return labels == int(np.argmax(sums))


def most_interior(region: np.ndarray) -> tuple[int, int]:
    """The pixel of ``region`` farthest (Euclidean) from its border; the image edge is border too.
    Among equally far pixels, the one nearest to their mean position (then the first in raster order)."""
    padded = np.pad(region.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    ties = np.argwhere(dist >= dist.max())
    centre = ties.mean(axis=0)
    y, x = ties[int(np.argmin(((ties - centre) ** 2).sum(axis=1)))]
    return int(y), int(x)


def corrective_click(
    alpha_u8: np.ndarray, gt_u8: np.ndarray, threshold: float = ERROR_THRESHOLD, exclude: np.ndarray | None = None
) -> Click | None:
    """The simulated user's next click on the matte ``alpha_u8`` (None when nothing is wrong
    outside ``exclude``, the pixels of the boxes already labelled: protocol version 2)."""
    alpha_u8, gt_u8 = np.asarray(alpha_u8), np.asarray(gt_u8)
    if alpha_u8.shape != gt_u8.shape or alpha_u8.dtype != np.uint8 or gt_u8.dtype != np.uint8:
        raise ValueError(
            f"need two uint8 mattes of one size, got {alpha_u8.dtype}{alpha_u8.shape} and {gt_u8.dtype}{gt_u8.shape}"
        )
    region = worst_region(alpha_u8, gt_u8, threshold, exclude)
    if region is None:
        return None
    y, x = most_interior(region)
    box = point_box(y, x, gt_u8.shape)
    return Click(y, x, box, oracle_label(gt_u8, box))


@dataclass
class ClickRun:
    """One image's corrective-click run: the clicks, and the whole-image SAD before each and after the last."""

    clicks: list[Click] = field(default_factory=list)
    sad: list[float] = field(default_factory=list)  # sad[k] after k clicks (k = 0 .. max_clicks)
    mattes: list[np.ndarray] = field(default_factory=list)  # the uint8 matte after k clicks (kept if asked)

    def sad_after(self, k: int) -> float:
        """SAD after ``k`` clicks (the last one if the user stopped earlier: nothing was left to fix)."""
        return self.sad[min(k, len(self.sad) - 1)]

    def noc(self, target: float, max_clicks: int = MAX_CLICKS) -> int:
        """Clicks until the SAD is <= ``target`` (``max_clicks`` when never)."""
        reached = self.reaches(target, max_clicks)
        return max_clicks if reached is None else reached

    def reaches(self, target: float, max_clicks: int = MAX_CLICKS) -> int | None:
        """Clicks until the SAD is <= ``target``, or None when it never is within ``max_clicks`` (NoF)."""
        for k in range(min(len(self.sad), max_clicks + 1)):
            if self.sad[k] <= target:
                return k
        return None

    def worse(self, tolerance: float = WORSE_TOLERANCE) -> list[bool]:
        """Per click: did it raise the SAD by more than ``tolerance`` (relative)?"""
        return [b > a * (1 + tolerance) + 1e-9 for a, b in zip(self.sad, self.sad[1:])]


def run_clicks(
    first_matte: np.ndarray,
    label: Callable[[Click], np.ndarray],
    gt_u8: np.ndarray,
    max_clicks: int = MAX_CLICKS,
    keep_mattes: bool = False,
    protocol: int = PROTOCOL,
) -> ClickRun:
    """Drive ``label`` (one click in, the new uint8 full-resolution matte out) with the simulated user.

    ``first_matte`` is the matte before any click; the SAD is the whole-image protocol's
    (:func:`dugray.metrics.whole_sad`). ``protocol`` 2 never clicks inside a box already
    labelled; 1 may (the first version).
    """
    if protocol not in (1, 2):
        raise ValueError(f"protocol must be 1 or 2, got {protocol}")
    run = ClickRun()
    matte = np.asarray(first_matte)
    done = np.zeros(np.shape(gt_u8), bool) if protocol == 2 else None
    for k in range(max_clicks + 1):
        run.sad.append(whole_sad(matte, gt_u8))
        if keep_mattes:
            run.mattes.append(matte)
        if k == max_clicks:
            break
        click = corrective_click(matte, gt_u8, exclude=done)
        if click is None:
            break
        if done is not None:
            y0, x0, y1, x1 = click.box
            done[y0:y1, x0:x1] = True
        run.clicks.append(click)
        matte = np.asarray(label(click))
    return run


def session_labeler(session) -> Callable[[Click], np.ndarray]:
    """The in-process user: each click is one labelled box and one round of ``session``."""

    def label(click: Click) -> np.ndarray:
        session.label([(click.box, click.value)])
        return session.alpha_u8

    return label


def http_labeler(client, sid: str) -> Callable[[Click], np.ndarray]:
    """The same user over HTTP: each click is ``POST /v1/sessions/{sid}/labels`` with one box,
    and the matte is the session's ``alpha.png`` (``client``: :class:`dugray.client.DugrayClient`)."""

    def label(click: Click) -> np.ndarray:
        client.label(sid, [(click.box, click.label)])
        png = np.frombuffer(client.png(sid, "alpha"), np.uint8)
        return cv2.imdecode(png, cv2.IMREAD_UNCHANGED)

    return label


def summarise_runs(runs: dict[str, ClickRun], cf_sad: dict[str, float], max_clicks: int = MAX_CLICKS) -> dict:
    """Per image and mean: SAD after :data:`REPORT_CLICKS` clicks, NoC@m, and the clicks that made it worse."""
    per_image, worse_all = {}, []
    for name, run in runs.items():
        worse = run.worse()
        worse_all += worse
        row = {f"sad_{k}": run.sad_after(k) for k in REPORT_CLICKS if k <= max_clicks}
        for m in NOC_MULTIPLES:
            row[f"noc_{m:g}x"] = run.noc(m * cf_sad[name], max_clicks) if name in cf_sad else None
            row[f"nof_{m:g}x"] = (run.reaches(m * cf_sad[name], max_clicks) is None) if name in cf_sad else None
        row.update(
            clicks=len(run.clicks),
            worse_clicks=int(sum(worse)),
            worst_step=max((b / a for a, b in zip(run.sad, run.sad[1:]) if a > 0), default=1.0),
            cf_sad=cf_sad.get(name),
            labels="".join(c.label[0] for c in run.clicks),
        )
        per_image[name] = row
    keys = [k for k in next(iter(per_image.values()), {}) if k.startswith(("sad_", "noc_"))]
    mean = {k: float(np.mean([r[k] for r in per_image.values() if r[k] is not None])) for k in keys}
    for m in NOC_MULTIPLES:  # NoF: a count of images, not a mean
        mean[f"nof_{m:g}x"] = int(sum(bool(r[f"nof_{m:g}x"]) for r in per_image.values()))
    mean["worse_share"] = float(np.mean(worse_all)) if worse_all else 0.0
    mean["worse_clicks"] = int(sum(worse_all))
    mean["clicks"] = len(worse_all)
    return {"per_image": per_image, "mean": mean}


def sad_table(summary: dict) -> str:
    """The report's markdown table: one row per image and the mean (the SAD after each reported click count)."""
    per = summary["per_image"]
    clicks = [int(k[4:]) for k in summary["mean"] if k.startswith("sad_")]
    noc = [k for k in summary["mean"] if k.startswith("noc_")]
    head = (
        ["image"] + [f"SAD @{k}" for k in clicks] + [f"NoC@{k[4:]}" for k in noc] + ["NoF@2x", "worse clicks", "labels"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in per.items():
        cells = [name] + [f"{r[f'sad_{k}']:.2f}" for k in clicks] + [str(r[k]) for k in noc]
        cells += ["yes" if r.get("nof_2x") else "", f"{r['worse_clicks']}/{r['clicks']}", r["labels"]]
        lines.append("| " + " | ".join(cells) + " |")
    m = summary["mean"]
    cells = ["**mean**"] + [f"**{m[f'sad_{k}']:.2f}**" for k in clicks] + [f"**{m[k]:.2f}**" for k in noc]
    cells += [
        f"**{m.get('nof_2x', 0)} of {len(per)}**",
        f"{m['worse_clicks']}/{m['clicks']} ({m['worse_share']:.0%})",
        "",
    ]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
