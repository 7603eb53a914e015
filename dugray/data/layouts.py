"""Readers for the matting dataset layouts users have, detected automatically.

A *dataset folder* is recognised by its sub-folders (first match wins, in this order):

=================  ==========================================================  =========
layout column      sub-folders                                                 default
=================  ==========================================================  =========
comp1k (test)      merged/ + alpha/|alpha_copy/ [+ trimaps/|trimap/]           test
comp1k (train)     fg/ + alpha/ [+ bg/]   (composited on the fly, N bg per fg)  train
p3m10k/p3m500p/np  blurred_image/|original_image/ + mask/ [+ trimap/]          train
aim500             original/ + mask/ [+ trimap/]                               test
plain              image/ + alpha/ [+ trimap/] [+ trimap2/]                    train
=================  ==========================================================  =========

A root that is not itself a dataset folder is searched (depth <= 3) for dataset
folders; each gets its split from the nearest folder named like a split (train /
training, val / valid / validation, test / testing), P3M-500-P/NP and AIM-500 being test
sets (the paper evaluates on them), else the layout's default. Files are matched by stem
(``a.jpg`` pairs with ``a.png``); an alpha or trimap named ``<fg>`` also serves images
named ``<fg>_<k>`` (the Composition-1k test naming). Images with no alpha are skipped
with a warning. Nothing recognised raises :class:`LayoutError`, listing what was
expected and what was found.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from dugray.data.io import IMAGE_EXTENSIONS

#: Composition-1k: backgrounds per foreground, as in Deep Image Matting.
DEFAULT_BG_PER_FG = 20
COLUMNS = ("name", "split", "layout", "image", "fg", "bg", "alpha", "trimap", "trimap2")


class LayoutError(ValueError):
    """No known dataset layout was found (the message says what was expected / found)."""


@dataclass(frozen=True)
class LayoutSpec:
    """One recognisable layout: each entry of ``required`` is a tuple of alternative
    sub-folder names (the first existing one is used)."""

    kind: str
    required: tuple[tuple[str, ...], ...]
    optional: tuple[tuple[str, ...], ...]
    default_split: str

    def describe(self) -> str:
        """One line for error messages: ``kind: required/ + ... [+ optional/]``."""
        req = " + ".join("|".join(f"{a}/" for a in alts) for alts in self.required)
        opt = "".join(f" [+ {'|'.join(f'{a}/' for a in alts)}]" for alts in self.optional)
        return f"{self.kind}: {req}{opt}"

    def resolve(self, folder: Path) -> dict[str, Path] | None:
        """Map role (first alternative's name) -> existing sub-folder, or None."""
        found = {}
        for alts in self.required + self.optional:
            hit = next((folder / a for a in alts if (folder / a).is_dir()), None)
            if hit is None and alts in self.required:
                return None
            if hit is not None:
                found[alts[0]] = hit
        return found


LAYOUTS: tuple[LayoutSpec, ...] = (
    LayoutSpec("comp1k-test", (("merged",), ("alpha", "alpha_copy")), (("trimaps", "trimap"),), "test"),
    LayoutSpec("comp1k-train", (("fg",), ("alpha",)), (("bg",),), "train"),
    LayoutSpec("p3m", (("blurred_image", "original_image"), ("mask",)), (("trimap",),), "train"),
    LayoutSpec("aim500", (("original",), ("mask",)), (("trimap",),), "test"),
    LayoutSpec("plain", (("image", "images"), ("alpha", "alphas")), (("trimap", "trimaps"), ("trimap2",)), "train"),
)

_SPLIT_NAMES = {
    "train": {"train", "training", "trainset", "train_set", "training_set"},
    "val": {"val", "valid", "validation", "dev"},
    "test": {"test", "testing", "testset", "test_set", "p3m-500-p", "p3m-500-np", "aim-500", "aim500"},
}


def split_of(folder_name: str) -> str | None:
    """train / val / test if the folder is named like a split, else None."""
    key = folder_name.lower().replace(" ", "_")
    return next((s for s, names in _SPLIT_NAMES.items() if key in names), None)


@dataclass(frozen=True)
class DatasetDir:
    """A recognised dataset folder."""

    spec: LayoutSpec
    path: Path
    split: str


def detect_layouts(root, max_depth: int = 3) -> list[DatasetDir]:
    """Every dataset folder under ``root`` (``root`` itself included), or LayoutError."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise LayoutError(f"{root} is not a directory. Expected a folder holding one of:\n" + _expected())
    found: list[DatasetDir] = []

    def scan(folder: Path, depth: int, split: str | None) -> None:
        # P3M's validation/ holds the P3M-500 test sets: the nearer name wins.
        split = split_of(folder.name) or split
        for spec in LAYOUTS:
            if spec.resolve(folder) is not None:
                found.append(DatasetDir(spec, folder, split or spec.default_split))
                return
        if depth < max_depth:
            for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
                scan(sub, depth + 1, split)

    scan(root, 0, None)
    if not found:
        raise LayoutError(
            f"no matting dataset layout recognised under {root}.\n"
            f"Expected a folder (or sub-folders, depth <= {max_depth}) "
            f"holding one of:\n{_expected()}\nFound: {_found(root)}"
        )
    return found


def _expected() -> str:
    return "\n".join(f"  - {spec.describe()}" for spec in LAYOUTS)


def _found(root: Path) -> str:
    dirs = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())
    files = [p for p in root.iterdir() if p.is_file()]
    exts = sorted({p.suffix.lower() or "(none)" for p in files})
    shown = ", ".join(dirs[:20]) + (", ..." if len(dirs) > 20 else "")
    return f"folders [{shown or 'none'}]; {len(files)} files" + (f" ({', '.join(exts)})" if files else "")


# ---------------------------------------------------------------------------- reading
def files_by_stem(folder: Path | None) -> dict[str, Path]:
    """stem -> resolved path of the image files in ``folder`` (png preferred on clashes)."""
    if folder is None:
        return {}
    out: dict[str, Path] = {}
    rank = {e: i for i, e in enumerate(IMAGE_EXTENSIONS)}
    for p in sorted(folder.iterdir(), key=lambda p: rank.get(p.suffix.lower(), 99)):
        if p.is_file() and p.suffix.lower() in rank and p.stem not in out:
            out[p.stem] = p.resolve()
    return out


_COPY_SUFFIX = re.compile(r"_\d+$")


def _lookup(table: dict[str, Path], stem: str) -> Path | None:
    """Exact stem, else the stem without a trailing ``_<k>`` (one alpha per fg)."""
    hit = table.get(stem)
    if hit is None:
        hit = table.get(_COPY_SUFFIX.sub("", stem))
    return hit


def _record(name, split, layout, **paths) -> dict:
    row = {"name": name, "split": split, "layout": layout}
    row.update({c: (str(paths[c]) if paths.get(c) is not None else None) for c in COLUMNS[3:]})
    return row


def _paired(images: dict[str, Path], alphas: dict[str, Path], where: Path):
    """(stem, image path, alpha path) for images with an alpha; warns about the rest."""
    missing = [s for s in images if _lookup(alphas, s) is None]
    if missing:
        warnings.warn(
            f"{where}: {len(missing)} image(s) without alpha skipped (e.g. {', '.join(sorted(missing)[:3])})",
            stacklevel=3,
        )
    return [(s, images[s], _lookup(alphas, s)) for s in sorted(images) if s not in missing]


def _p3m_layout(folder: Path) -> str:
    name = folder.name.lower()
    return "p3m500np" if name.endswith("500-np") else "p3m500p" if name.endswith("500-p") else "p3m10k"


def _read_single(d: DatasetDir, subs: dict[str, Path]) -> list[dict]:
    """Layouts with one composite image per alpha (everything but comp1k training)."""
    image_role, alpha_role, trimap_role, layout = {
        "comp1k-test": ("merged", "alpha", "trimaps", "comp1k"),
        "p3m": ("blurred_image", "mask", "trimap", _p3m_layout(d.path)),
        "aim500": ("original", "mask", "trimap", "aim500"),
        "plain": ("image", "alpha", "trimap", "plain"),
    }[d.spec.kind]
    trimaps = files_by_stem(subs.get(trimap_role))
    trimaps2 = files_by_stem(subs.get("trimap2"))
    return [
        _record(
            stem,
            d.split,
            layout,
            image=img,
            alpha=alpha,
            trimap=_lookup(trimaps, stem),
            trimap2=_lookup(trimaps2, stem),
        )
        for stem, img, alpha in _paired(files_by_stem(subs[image_role]), files_by_stem(subs[alpha_role]), d.path)
    ]


def background_list(source) -> list[Path]:
    """Background images from a folder, a text file of paths (one per line) or a list."""
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        source = Path(source).expanduser()
        if source.is_dir():
            return [p for _, p in sorted(files_by_stem(source).items())]
        if source.is_file() and source.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in source.read_text().splitlines() if ln.strip()]
            return [(source.parent / ln).resolve() for ln in lines]
        raise LayoutError(f"background list {source} is neither a folder nor a .txt file")
    return [Path(p).expanduser().resolve() for p in source]


def _read_comp1k_train(d: DatasetDir, subs: dict[str, Path], backgrounds, n_bg_per_fg: int) -> list[dict]:
    """Each foreground once per background: fg i takes backgrounds i*N .. i*N+N-1 of the
    list (DIM's sequential assignment), wrapping round when the list is shorter."""
    bgs = background_list(backgrounds if backgrounds is not None else subs.get("bg"))
    if not bgs:
        raise LayoutError(
            f"{d.path} is a Composition-1k training folder (fg/ + alpha/) but "
            "has no background list: add a bg/ folder or pass backgrounds="
        )
    if n_bg_per_fg < 1:
        raise ValueError(f"n_bg_per_fg must be >= 1, got {n_bg_per_fg}")
    rows = []
    pairs = _paired(files_by_stem(subs["fg"]), files_by_stem(subs["alpha"]), d.path)
    for i, (stem, fg, alpha) in enumerate(pairs):
        for j in range(n_bg_per_fg):
            rows.append(
                _record(f"{stem}_{j}", d.split, "comp1k", fg=fg, alpha=alpha, bg=bgs[(i * n_bg_per_fg + j) % len(bgs)])
            )
    return rows


def read_layout(root, backgrounds=None, n_bg_per_fg: int = DEFAULT_BG_PER_FG, max_depth: int = 3) -> list[dict]:
    """All rows (dicts with :data:`COLUMNS`) of every dataset folder under ``root``.

    ``backgrounds`` (folder, .txt list or list of paths) overrides the ``bg/`` folder of
    Composition-1k training folders; ``n_bg_per_fg`` is N, the rows per foreground.
    """
    rows: list[dict] = []
    for d in detect_layouts(root, max_depth):
        subs = d.spec.resolve(d.path)
        if d.spec.kind == "comp1k-train":
            rows += _read_comp1k_train(d, subs, backgrounds, n_bg_per_fg)
        else:
            rows += _read_single(d, subs)
    if not rows:
        raise LayoutError(
            f"dataset folders found under {root} hold no image with a "
            f"matching alpha: {', '.join(str(d.path) for d in detect_layouts(root))}"
        )
    return rows
