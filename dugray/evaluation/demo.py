"""A short demo of the whole method on the shipped default model, in one process (no Ray).

    python jobs/demo.py [--image IMG --alpha GT] [--out demo_out] [--rounds 2]

With no image it uses the real photographs of the validation split when they are
there (../shared/data/alphamatting-lowres/val), else one synthetic sample. Given a
ground-truth alpha, a simulated user (the GT oracle) answers each round's proposals,
and the whole-image SAD is printed after every step. Writes, per image, a
Figure-5-style strip (input, initial matte, epistemic, user map, after interaction,
after refinement) and the RGBA cutout. ``--figure PATH`` also writes the README's picture for
the first image (with a GT): the photo, the trimap-free cut-out, the cut-out after
``--clicks`` corrective clicks (the simulated user of ``jobs/evaluate.py``, clicks drawn), and
the uncertainty maps.

    python jobs/demo.py --figure docs/images/overview.png --limit 1

Exit codes: 0 done, 2 bad arguments or unreadable files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from dugray.data.io import read_mask, read_rgb
from dugray.data.synthetic import generate_sample
from dugray.evaluation.clicks import run_clicks, session_labeler
from dugray.models import load_networks
from dugray.session import MattingSession, SessionConfig
from dugray.usermap import oracle_label
from dugray.visualize import checkerboard, draw_boxes, draw_points, grey, heat, save_rgb, strip, usermap_rgb

REAL_VAL = Path("..", "shared", "data", "alphamatting-lowres", "val")
"""The real validation photos, relative to a checkout's root (where the README runs the jobs)."""


def inputs(args) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, RGB image, GT alpha or None) to run: --image (with --alpha), else the real val photos
    (the first --limit), else one synthetic sample.
    """
    if args.image:
        alpha = read_mask(args.alpha) if args.alpha else None
        return [(Path(args.image).stem, read_rgb(args.image), alpha)]
    if (REAL_VAL / "image").is_dir():
        names = sorted(p.stem for p in (REAL_VAL / "image").glob("*.png"))[: args.limit]
        return [
            (n, read_rgb(REAL_VAL / "image" / f"{n}.png"), read_mask(REAL_VAL / "alpha" / f"{n}.png")) for n in names
        ]
    s = generate_sample(0, size=384, seed=123)
    return [("synthetic", s["image"], s["alpha"])]


def run_one(name, image, gt, model, refiner, args, out: Path) -> None:
    """One image's session: round 1, --rounds oracle rounds when there is a GT, refinement; prints the SAD
    after each step and writes the step strip and the cutout to ``out``.
    """

    def sad(alpha):
        return float(np.abs(alpha - gt / 255.0).sum() / 1000) if gt is not None else float("nan")

    t0 = time.perf_counter()
    s = MattingSession(image, model, refiner, SessionConfig()).start()
    first, epi, props = s.alpha.copy(), s.epistemic.copy(), [p.box for p in s.proposals]
    line = [f"{name}: {image.shape[1]}x{image.shape[0]}", f"SAD trimap-free {sad(first):.2f}"]
    for r in range(args.rounds if gt is not None else 0):
        labels = [(i, oracle_label(gt, p.box)) for i, p in enumerate(s.proposals)]
        s.label(labels)
        line.append(f"after {r + 1} selection(s) {sad(s.alpha):.2f}")
    interacted = s.alpha.copy()
    s.refine()
    line.append(f"refined {sad(s.alpha):.2f}")
    line.append(f"({time.perf_counter() - t0:.1f} s, whole-image SAD/1000)")
    print("  ".join(line), flush=True)
    um = s.state.user_map
    um_full = cv2.resize(um, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    panels = [
        draw_boxes(image, props),
        grey(first),
        heat(epi),
        usermap_rgb(um_full, image),
        grey(interacted),
        grey(s.alpha),
    ]
    titles = ["input + proposals", "initial", "epistemic", "user map", "after interaction", "refined"]
    if gt is not None:
        panels.append(grey(gt / 255.0))
        titles.append("ground truth")
    save_rgb(out / f"{name}_steps.png", strip(panels, titles))
    save_rgb(out / f"{name}_cutout.png", s.cutout())


def overview(image, gt, model, refiner, clicks: int = 3) -> np.ndarray:
    """The README's picture: photo | trimap-free cut-out | after ``clicks`` corrective clicks |
    epistemic | aleatoric."""
    s = MattingSession(image, model, refiner).start()
    first = checkerboard(s.cutout())
    run = run_clicks(s.alpha_u8, session_labeler(s), gt, clicks)
    after = draw_points(checkerboard(s.cutout()), [(c.y, c.x, c.label) for c in run.clicks])
    n = len(run.clicks)
    titles = [
        "photo",
        f"trimap-free cut-out (SAD {run.sad[0]:.1f})",
        f"after {n} click{'s' if n != 1 else ''} (SAD {run.sad[-1]:.1f})",
        "epistemic (asks)",
        "aleatoric (refines)",
    ]
    return strip([image, first, after, heat(s.epistemic), heat(s.aleatoric)], titles, height=300)


def main(argv=None) -> int:
    """Parse the flags, load the model and run every input; returns 0, or 2 when an input or the model
    cannot be read.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", help="an RGB image (default: the real val photos, else a synthetic one)")
    p.add_argument("--alpha", help="its ground-truth alpha, for the simulated user and SAD")
    p.add_argument("--model", default="default", help="'default', a checkpoint, a training --out folder or models:/...")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--limit", type=int, default=6, help="most val photos to run")
    p.add_argument("--figure", help="also write the README's overview picture (PNG) of the first image with a GT")
    p.add_argument("--clicks", type=int, default=3, help="corrective clicks in the --figure picture (default 3)")
    args = p.parse_args(argv)
    try:
        items = inputs(args)
        model, refiner = load_networks(args.model, device="cpu")
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as exc:  # CheckpointError is a RuntimeError
        print(f"demo.py: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, image, gt in items:
        run_one(name, image, gt, model, refiner, args, out)
    if args.figure:
        name, image, gt = next(((n, i, g) for n, i, g in items if g is not None), (None, None, None))
        if gt is None:
            print("demo.py: error: --figure needs an image with its ground-truth alpha", file=sys.stderr)
            return 2
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        save_rgb(args.figure, overview(image, gt, model, refiner, args.clicks), compression=9)
        print(f"wrote the overview of {name} to {Path(args.figure).resolve()}")
    print(f"wrote step strips and cutouts to {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
