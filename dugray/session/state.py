"""SessionState: everything a session knows, separable from the models, and how it is made.

A server stores it anywhere (:meth:`SessionState.to_bytes`: arrays as .npz entries, the
small fields and the config as one JSON entry, no pickle) and continues it in any replica.
:func:`new_state` is where every entry point's input is checked: images, trimaps, masks
and user maps (ValueError with a one-line reason).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from dugray.nig import NIG
from dugray.proposal import Proposal
from dugray.upsample import resize_to_working
from dugray.usermap import BACKGROUND, FOREGROUND, UNKNOWN, Box, mask_to_trimap, trimap_to_usermap

from .config import MIN_SIDE, SessionConfig

_STATE_FORMAT = 1


@dataclass
class SessionState:
    """Everything a session knows, separable from the models (a server stores it anywhere).

    image : full-resolution RGB uint8 (H, W, 3), or None where it was not loaded (a server's
        label round reads everything but the image: :meth:`to_bytes` ``image=False``).
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
    config : the session's :class:`SessionConfig`, so a restored session continues identically.
    initial : the user map and labelled mask before any label, as int8 codes (:func:`encode_initial`),
        or None when both were empty: with the append-only rounds, timings and label log it is all
        undo needs (:mod:`.history` replays the log onto it), one byte a working pixel.
    image_shape : the full-resolution (H, W); kept so that a state without its image still knows it.
    """

    image: np.ndarray | None
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
    config: SessionConfig = field(default_factory=SessionConfig)
    initial: np.ndarray | None = None
    image_shape: tuple[int, int] | None = None

    def __post_init__(self):
        if self.image is not None:
            self.image_shape = tuple(self.image.shape[:2])
        elif self.image_shape is None:
            raise ValueError("a SessionState without its image needs image_shape")

    @property
    def full_shape(self) -> tuple[int, int]:
        return tuple(self.image_shape)

    @property
    def work_shape(self) -> tuple[int, int]:
        return tuple(self.image_w.shape[:2])

    @property
    def round_count(self) -> int:
        """Network rounds so far."""
        return len(self.rounds)

    def working(self, rounds: bool = True) -> WorkingState:
        """What the steps after the network need, without the full-size image (shares the arrays):
        what a server sends to its fusion, proposal, solve and refinement replicas. ``rounds=False``
        leaves the rounds out too (the proposals, the solve and refinement take the fused posterior)."""
        return WorkingState(
            self.image_w,
            self.user_map,
            self.labelled,
            self.label_log,
            self.config,
            self.full_shape,
            list(self.rounds) if rounds else [],
            self.round_count,
        )

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays (the serialised size is about this, plus a little JSON)."""
        distinct = [r for m, (first, r) in enumerate(zip(_distinct_rounds(self.rounds), self.rounds)) if first == m]
        arrays = [self.user_map, self.labelled] + [a for r in distinct for a in r]
        arrays += (
            [self.image_w]
            if self.image is None
            else [self.image]
            if self.image_w is self.image
            else [self.image, self.image_w]
        )
        arrays += [a for a in (self.solved, self.refined, self.initial) if a is not None]
        return int(sum(a.nbytes for a in arrays))

    def to_bytes(self, compress: bool = False, image: bool = True) -> bytes:
        """Serialise to an in-memory .npz: arrays as arrays, small fields as one JSON entry.

        No pickle anywhere, so :meth:`from_bytes` is safe on untrusted input. ``compress``
        trades CPU (deflate) for size; image arrays compress well, NIG maps little.
        ``image=False`` leaves the full-size image out: a server stores it once, apart
        (:func:`image_to_bytes`), and gives it back only to the outputs that read it.
        """
        image = image and self.image is not None
        arrays: dict[str, np.ndarray] = {"user_map": self.user_map, "labelled": self.labelled}
        same_working = image and (
            self.image_w is self.image
            or (self.image_w.shape == self.image.shape and np.array_equal(self.image_w, self.image))
        )
        if image:
            arrays["image"] = self.image
        if not same_working:
            arrays["image_w"] = self.image_w
        round_of = _distinct_rounds(self.rounds)
        for m, r in enumerate(self.rounds):
            if round_of[m] == m:
                for name, a in zip(NIG._fields, r):
                    arrays[f"round{m}_{name}"] = a
        for name in ("solved", "refined", "initial"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        meta = {
            "format": _STATE_FORMAT,
            "rounds": len(self.rounds),
            "round_of": round_of,
            "same_working": same_working,
            "image_shape": list(self.full_shape),
            "proposals": [p.to_dict() for p in self.proposals],
            "timings": self.timings,
            "label_log": self.label_log,
            "solve_info": self.solve_info,
            "config": self.config.to_dict(),
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
        buf = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, image: np.ndarray | None = None) -> SessionState:
        """Inverse of :meth:`to_bytes` (allow_pickle=False); ``image`` is the full-size image of a
        state stored without it (``to_bytes(image=False)``), or None to leave it out."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
        except Exception as exc:  # any decoding failure means "not a state"
            raise ValueError(f"not a serialised SessionState: {exc}") from exc
        if meta.get("format") != _STATE_FORMAT:
            raise ValueError(f"unsupported SessionState format {meta.get('format')!r}")
        image = arrays.get("image", image)
        shape = tuple(meta.get("image_shape") or image.shape[:2])
        if image is not None and tuple(image.shape[:2]) != shape:
            raise ValueError(f"the image is {image.shape[:2]}, the state's is {shape}")
        round_of = meta.get("round_of") or list(range(meta["rounds"]))
        rounds: list[NIG] = []
        for m, first in enumerate(round_of):
            if not (first == m or 0 <= first < m and round_of[first] == first):
                raise ValueError(f"not a serialised SessionState: round {m} refers to round {first}")
            rounds.append(rounds[first] if first < m else NIG(*(arrays[f"round{m}_{n}"] for n in NIG._fields)))
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
            config=SessionConfig.from_dict(meta["config"]),
            initial=arrays.get("initial"),
            image_shape=shape,
        )


def image_to_bytes(image: np.ndarray) -> bytes:
    """A full-size RGB uint8 image as .npy bytes (no pickle), stored once beside its session's state."""
    buf = io.BytesIO()
    np.save(buf, as_rgb_uint8(image), allow_pickle=False)
    return buf.getvalue()


def image_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of :func:`image_to_bytes`; ValueError for anything but an RGB uint8 image."""
    try:
        image = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # any decoding failure means "not an image"
        raise ValueError(f"not a stored image: {exc}") from exc
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("not a stored image: expected RGB uint8")
    return image


def _distinct_rounds(rounds: list[NIG]) -> list[int]:
    """For each round, the first round that is the same object: with the network once per image
    (``SessionConfig.network_rounds`` "first") every label round is round 0 again, and a stored
    state keeps its arrays once, not once a round."""
    first: dict[int, int] = {}
    return [first.setdefault(id(r), m) for m, r in enumerate(rounds)]


@dataclass
class WorkingState:
    """A session at working resolution (:meth:`SessionState.working`): every step after the network
    reads only these (``rounds`` may be empty where the step takes the fused posterior instead)."""

    image_w: np.ndarray
    user_map: np.ndarray
    labelled: np.ndarray
    label_log: list[dict]
    config: SessionConfig
    full_shape: tuple[int, int]
    rounds: list[NIG] = field(default_factory=list)
    round_count: int = 0

    @property
    def work_shape(self) -> tuple[int, int]:
        return tuple(self.image_w.shape[:2])


class LabelledImage(Protocol):
    """What a :class:`SessionState` and its :class:`WorkingState` both are: a working image, the full
    image's size, the user's labels so far and the session's config. The helpers that read only these
    (:func:`working_float`, :func:`working_box`, :func:`label_boxes`,
    :func:`dugray.session.steps.proposals_need_rounds`) take either."""

    @property
    def image_w(self) -> np.ndarray: ...

    @property
    def full_shape(self) -> tuple[int, int]: ...

    @property
    def work_shape(self) -> tuple[int, int]: ...

    @property
    def label_log(self) -> list[dict]: ...

    @property
    def config(self) -> SessionConfig: ...


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
    u, labelled = _initial_user_map(img.shape[:2], image_w.shape[:2], user_map, trimap)
    return SessionState(
        image=img, image_w=image_w, user_map=u, labelled=labelled, config=config, initial=encode_initial(u, labelled)
    )


def encode_initial(user_map: np.ndarray, labelled: np.ndarray) -> np.ndarray | None:
    """The initial user map and labelled mask as one int8 plane (2U, +8 where labelled), None if
    both are empty: U only takes 1, -1, 0.5 and 0, so the code is exact (:func:`decode_initial`)."""
    if not (labelled.any() or user_map.any()):
        return None
    return (np.rint(user_map * 2) + 8 * labelled).astype(np.int8)


def decode_initial(state: SessionState) -> tuple[np.ndarray, np.ndarray]:
    """(user map, labelled) as :func:`new_state` made them, from ``state.initial``."""
    if state.initial is None:
        return np.zeros(state.work_shape, np.float32), np.zeros(state.work_shape, bool)
    labelled = state.initial >= 4
    return ((state.initial - 8 * labelled.astype(np.int8)) / 2).astype(np.float32), labelled


def _initial_user_map(full_shape, work_shape, user_map, trimap) -> tuple[np.ndarray, np.ndarray]:
    """(U, labelled) on the working grid from a trimap, a user map or nothing."""
    if trimap is not None:
        u = _resize_nearest(trimap_to_usermap(_check_plane(trimap, full_shape, "trimap")), work_shape)
        return u, (u == FOREGROUND) | (u == BACKGROUND)
    if user_map is not None:
        u = np.asarray(_check_plane(user_map, full_shape, "user_map"), np.float32)
        if not np.all(np.isin(u, (FOREGROUND, BACKGROUND, 0.5, UNKNOWN))):
            raise ValueError("user_map values must be 1 (fg), -1 (bg), 0.5 (transition) or 0 (unknown)")
        u = _resize_nearest(u, work_shape)
        return u, u != UNKNOWN
    return np.zeros(work_shape, np.float32), np.zeros(work_shape, bool)


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


def working_float(state: LabelledImage) -> np.ndarray:
    """The working image as float32 in [0, 1], the network's input range."""
    return state.image_w.astype(np.float32) / 255.0


def scale_box(box: Sequence[int], src_shape: tuple[int, int], dst_shape: tuple[int, int]) -> Box:
    """Map a (y0, x0, y1, x1) box between two resolutions of the same image, clipped.

    Edges are rounded, so enlarging a box and shrinking it back gives the original box.
    """
    (sh, sw), (dh, dw) = src_shape, dst_shape
    y0, x0, y1, x1 = box
    fy, fx = dh / sh, dw / sw
    clip = lambda v, hi: int(min(max(round(v), 0), hi))  # noqa: E731
    return (clip(y0 * fy, dh), clip(x0 * fx, dw), clip(y1 * fy, dh), clip(x1 * fx, dw))


def working_box(state: LabelledImage, box: Sequence[int]) -> Box:
    """A full-resolution box on the working grid; a tiny box still covers one working pixel."""
    y0, x0, y1, x1 = scale_box(box, state.full_shape, state.work_shape)
    return (y0, x0, max(y1, y0 + 1), max(x1, x0 + 1))


def label_boxes(state: LabelledImage) -> list[tuple[Box, float]]:
    """The user's labels so far (``state.label_log``) as (working-grid box, U value), oldest first."""
    return [(working_box(state, entry["box"]), entry["value"]) for entry in state.label_log]


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
