"""Synthetic matting samples that are hard in the ways real mattes are hard.

An alpha matte is built from physically motivated layers, each rendered at
``supersample`` x resolution and area-downsampled, so fractional alpha is real partial
*coverage* (anti-aliasing), not a blur of a hard mask:

- core: a smooth random blob (plus attached blobs), with holes, whose boundary is partly
  defocus- or motion-blurred (the only blurred layer);
- hair / fur: curved strands growing out of arcs of the boundary, mostly sub-pixel
  (anti-aliased widths 1/2/3 at 4x cover about 0.33/0.85/1.35 px, drawn 60/32/8 %):
  a strand's alpha stays well below 255 even at its centre;
- veil / glass: semi-transparent regions (alpha 0.2-0.8, glass has an opaque rim).

Layers are merged as independent coverages: alpha = 1 - prod(1 - layer).
Foreground and background colour fields come from the same mixture of real photographs
(bundled with scikit-image) and procedural textures (:mod:`dugray.data.textures`).
Every sample is a pure function of (seed, index): one ``np.random.Generator`` per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dugray.data.io import write_png
from dugray.data.textures import as_hw, random_colour, random_texture, value_noise
from dugray.data.trimap import make_trimap

__all__ = [
    "SynthConfig",
    "SynthDataset",
    "sample_rng",
    "render_alpha",
    "generate_sample",
    "make_trimap",
    "split_counts",
    "write_dataset",
]


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. Pixel quantities are given at ``reference_size`` (512)
    and scaled with the sample's short side."""

    supersample: int = 4  # render factor for anti-aliased coverage
    reference_size: int = 512
    hair_prob: float = 0.8  # object has hairy / furry boundary arcs
    hair_arcs: tuple[int, int] = (1, 3)
    strands_per_arc: tuple[int, int] = (60, 250)  # at reference size
    veil_prob: float = 0.4
    veil_alpha: tuple[float, float] = (0.2, 0.8)
    glass_prob: float = 0.3  # a veil is glass-like (opaque rim)
    hole_prob: float = 0.4
    max_holes: int = 3
    motion_blur_prob: float = 0.25
    motion_length: tuple[float, float] = (4.0, 20.0)  # px at reference size
    defocus_prob: float = 0.25
    defocus_sigma: tuple[float, float] = (0.7, 3.0)  # px at reference size
    bg_defocus_prob: float = 0.3
    trimap_kernel: tuple[float, float] = (5.0, 25.0)  # px at reference size
    min_trimap_kernel: int = 3


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` under ``seed`` (independent streams)."""
    return np.random.default_rng([int(seed), int(index)])


# ----------------------------------------------------------------------------- shapes
def _blob_outline(rng, centre, radius, n=256, roughness=0.22, elongation=1.0):
    """Closed smooth random outline (n x 2, float, x/y) around ``centre``."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 8):
        r += rng.uniform(0, roughness / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = np.maximum(r, 0.3) * radius
    rot = rng.uniform(0, np.pi)
    x, y = r * np.cos(theta) * elongation, r * np.sin(theta) / elongation
    xr = x * np.cos(rot) - y * np.sin(rot)
    yr = x * np.sin(rot) + y * np.cos(rot)
    return np.stack([centre[0] + xr, centre[1] + yr], axis=1)


def _fill(canvas, outline, scale, value=255):
    """Fill an outline given in output pixels onto a supersampled canvas (sub-pixel exact)."""
    shift = 4
    pts = np.rint((outline * scale) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], int(value), lineType=cv2.LINE_AA, shift=shift)


def _downsample(canvas, h, w):
    """Area-average a supersampled uint8 canvas to h x w float32 coverage in [0,1]."""
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _motion_kernel(length, angle):
    size = int(np.ceil(length)) | 1
    k = np.zeros((size, size), np.float32)
    c, dx, dy = size // 2, np.cos(angle) * length / 2, np.sin(angle) * length / 2
    cv2.line(k, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1, cv2.LINE_AA)
    return k / k.sum()


def _soften_partly(rng, layer, blurred):
    """Blend a blurred copy into ``layer`` where a smooth random mask says so."""
    mask = np.clip((value_noise(rng, layer.shape, octaves=2) - 0.35) * 4, 0, 1)
    return layer * (1 - mask) + blurred * mask


def _core(rng, h, w, cfg, px):
    """Solid object: main blob + attached blobs, holes, partly blurred boundary."""
    s = cfg.supersample
    canvas = np.zeros((h * s, w * s), np.uint8)
    short = min(h, w)
    portrait = rng.random() < 0.35
    cx = rng.uniform(0.3, 0.7) * w
    cy = rng.uniform(0.65, 0.9) * h if portrait else rng.uniform(0.3, 0.7) * h
    radius = rng.uniform(0.18, 0.32) * short
    main = _blob_outline(rng, (cx, cy), radius, elongation=rng.uniform(0.7, 1.4))
    _fill(canvas, main, s)
    outlines = [main]
    for _ in range(int(rng.integers(0, 3))):  # limbs / ears / a head on a body
        p = main[rng.integers(len(main))]
        blob = _blob_outline(rng, p, radius * rng.uniform(0.25, 0.6), elongation=rng.uniform(0.6, 1.6))
        _fill(canvas, blob, s)
        outlines.append(blob)
    if rng.random() < cfg.hole_prob:
        inside = cv2.distanceTransform((_downsample(canvas, h, w) > 0.999).astype(np.uint8), cv2.DIST_L2, 5)
        for _ in range(int(rng.integers(1, cfg.max_holes + 1))):
            r = rng.uniform(0.03, 0.09) * short
            ys, xs = np.nonzero(inside > r + 2)
            if len(ys) == 0:
                break
            j = rng.integers(len(ys))
            _fill(canvas, _blob_outline(rng, (xs[j], ys[j]), r, n=64), s, value=0)
    core = _downsample(canvas, h, w)
    if rng.random() < cfg.defocus_prob:
        sigma = rng.uniform(*cfg.defocus_sigma) * px
        core = _soften_partly(rng, core, cv2.GaussianBlur(core, (0, 0), sigma))
    if rng.random() < cfg.motion_blur_prob:
        kernel = _motion_kernel(max(2.0, rng.uniform(*cfg.motion_length) * px), rng.uniform(0, np.pi))
        core = _soften_partly(rng, core, cv2.filter2D(core, -1, kernel, borderType=cv2.BORDER_REPLICATE))
    return np.clip(core, 0, 1), outlines


# ------------------------------------------------------------------------------ hair
def _strands(rng, outline, centre, n, length_px, step_px, curl):
    """Curved polylines (output pixels) rooted on one arc of ``outline``, growing outward."""
    m = len(outline)
    start = int(rng.integers(m))
    span = int(m * rng.uniform(0.08, 0.3))
    idx = (start + rng.integers(0, max(span, 1), n)) % m
    roots = outline[idx]
    outward = np.arctan2(roots[:, 1] - centre[1], roots[:, 0] - centre[0])
    comb = rng.normal(0, 0.6)  # common hair direction
    angle0 = outward + comb + rng.normal(0, 0.35, n)
    roots = roots - np.stack([np.cos(angle0), np.sin(angle0)], 1) * rng.uniform(0, 3, (n, 1))
    lengths = rng.uniform(0.4, 1.0, n) * length_px
    steps = int(np.ceil(lengths.max() / step_px)) + 1
    bend = rng.normal(0, curl, (n, 1)) + rng.normal(0, curl / 2, (n, steps)).cumsum(1) / steps
    angles = angle0[:, None] + bend.cumsum(1) * step_px / max(length_px, 1)
    xy = np.stack([np.cos(angles), np.sin(angles)], -1) * step_px
    paths = roots[:, None, :] + np.concatenate([np.zeros((n, 1, 2)), xy.cumsum(1)[:, :-1]], 1)
    counts = np.maximum(2, (lengths / step_px).astype(int))
    return [paths[i, : counts[i]] for i in range(n)]


def _hair(rng, h, w, outlines, cfg, px):
    """Sub-pixel strands: coverage from supersampled anti-aliased polylines."""
    s, shift = cfg.supersample, 4
    levels = (1.0, 0.7, 0.45)  # strand opacity groups
    canvases = [np.zeros((h * s, w * s), np.uint8) for _ in levels]
    main = outlines[0]
    centre = main.mean(0)
    short = min(h, w)
    for _ in range(int(rng.integers(cfg.hair_arcs[0], cfg.hair_arcs[1] + 1))):
        fur = rng.random() < 0.4
        n = int(rng.uniform(*cfg.strands_per_arc) * px * (1.5 if fur else 1.0)) + 5
        length = (rng.uniform(0.02, 0.06) if fur else rng.uniform(0.08, 0.25)) * short
        curl = rng.uniform(0.2, 1.2) if not fur else rng.uniform(0.1, 0.6)
        paths = _strands(rng, main, centre, n, length, step_px=max(0.75, 1.5 * px), curl=curl)
        level = rng.integers(len(levels), size=n)
        width = rng.choice([1, 2, 3], size=n, p=[0.6, 0.32, 0.08])  # supersampled px
        for i, path in enumerate(paths):
            pts = np.rint(path * s * (1 << shift)).astype(np.int32)
            half = max(2, len(pts) // 2)
            canvas = canvases[level[i]]
            cv2.polylines(canvas, [pts[: half + 1]], False, 255, int(width[i]), cv2.LINE_AA, shift)
            cv2.polylines(
                canvas, [pts[half:]], False, 255, max(1, int(width[i]) - 1), cv2.LINE_AA, shift
            )  # thinner tip
    hair = np.zeros((h, w), np.float32)
    for canvas, lv in zip(canvases, levels):
        hair = 1 - (1 - hair) * (1 - lv * _downsample(canvas, h, w))
    return hair


# ------------------------------------------------------------------------------ veil
def _veil(rng, h, w, outlines, cfg, px):
    """Semi-transparent cloth / glass overlapping the object's boundary."""
    s = cfg.supersample
    short = min(h, w)
    main = outlines[0]
    anchor = main[rng.integers(len(main))]
    canvas = np.zeros((h * s, w * s), np.uint8)
    outline = _blob_outline(
        rng, anchor, rng.uniform(0.1, 0.22) * short, elongation=rng.uniform(0.5, 2.0), roughness=0.15
    )
    _fill(canvas, outline, s)
    cover = _downsample(canvas, h, w)
    level = rng.uniform(*cfg.veil_alpha)
    if rng.random() < cfg.glass_prob:  # glass: thin opaque rim, clear body
        inside = cv2.distanceTransform((cover > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        rim_w = rng.uniform(1.0, 4.0) * px + 0.5
        rim = np.exp(-inside / rim_w)
        opacity = level * 0.35 + (rng.uniform(0.8, 0.95) - level * 0.35) * rim
    else:  # cloth: uneven weave density
        opacity = level * (0.75 + 0.5 * value_noise(rng, (h, w), octaves=3))
    return np.clip(cover * opacity, 0, 0.95).astype(np.float32)


# ----------------------------------------------------------------------------- public
def render_alpha(rng: np.random.Generator, size, config: SynthConfig | None = None) -> dict:
    """Alpha layers of one object: dict(core, hair, veil, alpha) float32 HxW in [0,1]."""
    cfg = config or SynthConfig()
    h, w = as_hw(size)
    px = min(h, w) / cfg.reference_size  # output pixels per reference pixel
    core, outlines = _core(rng, h, w, cfg, px)
    zeros = np.zeros((h, w), np.float32)
    hair = _hair(rng, h, w, outlines, cfg, px) if rng.random() < cfg.hair_prob else zeros
    veil = _veil(rng, h, w, outlines, cfg, px) if rng.random() < cfg.veil_prob else zeros
    alpha = 1 - (1 - core) * (1 - hair) * (1 - veil)
    return {"core": core, "hair": hair, "veil": veil, "alpha": np.clip(alpha, 0, 1)}


#: Natural hair / fur colours (sRGB), drawn half the time.
HAIR_PALETTE = np.array(
    [
        [0.05, 0.04, 0.03],
        [0.20, 0.12, 0.07],
        [0.38, 0.24, 0.13],
        [0.62, 0.45, 0.26],
        [0.86, 0.74, 0.48],
        [0.55, 0.22, 0.09],
        [0.72, 0.72, 0.70],
        [0.95, 0.94, 0.90],
    ],
    np.float32,
)


def _material_colour(rng):
    """A hair colour: a natural one (half the time) or any colour, brightness-jittered."""
    base = HAIR_PALETTE[rng.integers(len(HAIR_PALETTE))] if rng.random() < 0.5 else random_colour(rng)
    return np.clip(base * rng.uniform(0.8, 1.2), 0, 1)


def _foreground(rng, h, w, layers):
    """Object colours: a texture (two blended for multi-coloured objects), with strand and
    veil regions repainted in their own material colours."""
    fg = random_texture(rng, (h, w))
    if rng.random() < 0.5:
        m = np.clip((value_noise(rng, (h, w), octaves=2) - 0.5) * 3 + 0.5, 0, 1)[..., None]
        fg = fg * (1 - m) + random_texture(rng, (h, w)) * m
    for name, spread in (("hair", 3), ("veil", 1)):
        layer = layers[name]
        if not layer.any():
            continue
        k = 2 * spread + 1
        weight = np.clip(cv2.GaussianBlur(cv2.dilate(layer, np.ones((k, k), np.uint8)), (0, 0), 1.0) * 4, 0, 1)
        weight = (weight * (1 - layers["core"]))[..., None]
        colour = _material_colour(rng) if name == "hair" else random_colour(rng)
        shade = 0.75 + 0.5 * value_noise(rng, (h, w), octaves=3)[..., None]
        fg = fg * (1 - weight) + np.clip(colour * shade, 0, 1) * weight
    return np.clip(fg, 0, 1)


def _to_u8(x):
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def generate_sample(
    index: int, size=512, seed: int = 0, config: SynthConfig | None = None, return_layers: bool = False
) -> dict:
    """One synthetic sample, a pure function of (index, size, seed, config).

    Returns dict(fg, bg, image: HxWx3 uint8; alpha, trimap: HxW uint8; trimap_kernel: int),
    plus ``layers`` (float32 core/hair/veil) when ``return_layers``. The composite is
    ``round(a * fg + (1 - a) * bg)`` computed in float from the uint8 fg/bg/alpha that
    are returned, so the stored files satisfy the matting equation to rounding.
    The trimap kernel is drawn from ``config.trimap_kernel`` (px at 512, scaled with
    size, at least ``config.min_trimap_kernel``).
    """
    cfg = config or SynthConfig()
    rng = sample_rng(seed, index)
    h, w = as_hw(size)
    layers = render_alpha(rng, (h, w), cfg)
    alpha = _to_u8(layers["alpha"])
    fg = _to_u8(_foreground(rng, h, w, layers))
    bg_f = random_texture(rng, (h, w))
    if rng.random() < cfg.bg_defocus_prob:
        bg_f = cv2.GaussianBlur(bg_f, (0, 0), rng.uniform(1, 5) * min(h, w) / cfg.reference_size)
    bg = _to_u8(bg_f)
    a = alpha.astype(np.float64)[..., None] / 255.0
    image = np.clip(np.rint(a * fg + (1 - a) * bg), 0, 255).astype(np.uint8)
    scale = min(h, w) / cfg.reference_size
    kernel = max(cfg.min_trimap_kernel, int(round(rng.uniform(*cfg.trimap_kernel) * scale)))
    out = {
        "fg": fg,
        "bg": bg,
        "alpha": alpha,
        "image": image,
        "trimap": make_trimap(alpha, kernel),
        "trimap_kernel": kernel,
    }
    if return_layers:
        out["layers"] = layers
    return out


# ------------------------------------------------------------------------------ write
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SynthDataset:
    """What :func:`write_dataset` wrote: the two layout roots and the names per split."""

    root: Path
    comp1k: Path
    plain: Path
    names: dict

    def folders(self) -> list[Path]:
        """Every folder written, for printing."""
        return sorted(d for layout in (self.comp1k, self.plain) for d in layout.glob("*/*") if d.is_dir())


def split_counts(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Samples per split: each non-zero fraction gets at least one sample, train keeps >= 1."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum below 1")
    want = {"val": val_fraction, "test": test_fraction}
    counts = {k: (max(1, int(round(n * f))) if f > 0 else 0) for k, f in want.items()}
    while n - sum(counts.values()) < 1:
        big = max(counts, key=counts.get)
        if counts[big] == 0:
            break
        counts[big] -= 1
    return {"train": n - counts["val"] - counts["test"], **counts}


def sample_name(index: int) -> str:
    """File stem of synthetic sample ``index`` (``synth_000042``), the same in every layout and split."""
    return f"synth_{index:06d}"


def _write_one(job) -> tuple[str, str]:
    index, split, out, size, seed, config = job
    s = generate_sample(index, size, seed, config)
    name = sample_name(index)
    f = f"{name}.png"
    comp, plain = out / "comp1k" / split, out / "plain" / split
    if split == "train":  # Composition-1k training: fg + alpha + bg list
        write_png(comp / "fg" / f, s["fg"])
        write_png(comp / "alpha" / f, s["alpha"])
        write_png(comp / "bg" / f, s["bg"])
    else:  # Composition-1k test: merged + alpha + trimaps
        write_png(comp / "merged" / f, s["image"])
        write_png(comp / "alpha" / f, s["alpha"])
        write_png(comp / "trimaps" / f, s["trimap"])
    write_png(plain / "image" / f, s["image"])
    write_png(plain / "alpha" / f, s["alpha"])
    write_png(plain / "trimap" / f, s["trimap"])
    return split, name


def write_dataset(
    out_dir,
    n: int,
    size=512,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    config: SynthConfig | None = None,
    workers: int = 1,
    progress: bool = True,
) -> SynthDataset:
    """Generate ``n`` samples and write them in two layouts under ``out_dir``:

    - ``comp1k/train/{fg,alpha,bg}`` (backgrounds are the list composited on the fly),
      ``comp1k/{val,test}/{merged,alpha,trimaps}`` (the Composition-1k test layout);
    - ``plain/{train,val,test}/{image,alpha,trimap}`` (ready composites).

    Indices are split contiguously (train first, then val, then test); a sample's pixels
    depend only on (seed, index), never on the split fractions or ``workers``.
    """
    from tqdm import tqdm

    out = Path(out_dir).expanduser().resolve()
    counts = split_counts(n, val_fraction, test_fraction)
    splits = [sp for sp in SPLITS for _ in range(counts[sp])]
    jobs = [(i, sp, out, size, seed, config) for i, sp in enumerate(splits)]
    names: dict[str, list[str]] = {sp: [] for sp in SPLITS}
    bar = tqdm(total=n, desc=f"synth {n}x{size}px", unit="img", disable=not progress)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for split, name in pool.map(_write_one, jobs, chunksize=4):
                names[split].append(name)
                bar.update()
    else:
        for job in jobs:
            split, name = _write_one(job)
            names[split].append(name)
            bar.update()
    bar.close()
    return SynthDataset(out, out / "comp1k", out / "plain", names)
