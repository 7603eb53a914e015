"""Should a one-shot matte be refined? The one-shot matte of every photo of a split with and without
the refiner (shipped model, solve on), trimap-free (whole-image SAD) and with the benchmark trimap
(Composition-1k SAD): the table behind ``dugray.defaults.ONE_SHOT_REFINE`` (docs/usage.md).

    python jobs/one_shot_refine.py --data ../shared/data/alphamatting-lowres --split train

Choose on train/ only; val/ is for reporting afterwards.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from dugray.data.io import read_mask, read_rgb
from dugray.metrics import composition1k, whole_image
from dugray.models import load_networks
from dugray.oneshot import matte_image


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with <split>/image, alpha, trimap")
    ap.add_argument("--split", default="train")
    ap.add_argument("--model", default="default")
    args = ap.parse_args(argv)
    torch.set_num_threads(
        1
    )  # the numbers do not depend on it (PointwiseConv2d); one thread is gentler on a shared machine
    root = args.data / args.split
    model, refiner = load_networks(args.model)
    rows = []
    for path in sorted((root / "image").glob("*.png")):
        image, gt, trimap = (
            read_rgb(path),
            read_mask(root / "alpha" / path.name),
            read_mask(root / "trimap" / path.name),
        )
        row = {"name": path.stem}
        for refine in (False, True):
            key = "refined" if refine else "solved"
            row[f"free_{key}"] = whole_image(matte_image(image, model, refiner, refine=refine).alpha_u8, gt)["sad"]
            row[f"trimap_{key}"] = composition1k(
                matte_image(image, model, refiner, trimap=trimap, refine=refine).alpha_u8, gt, trimap
            )["sad"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    for mode in ("free", "trimap"):
        worse = sum(r[f"{mode}_refined"] > r[f"{mode}_solved"] for r in rows)
        print(
            f"{mode}: mean SAD solved {np.mean([r[f'{mode}_solved'] for r in rows]):.2f}, + refiner "
            f"{np.mean([r[f'{mode}_refined'] for r in rows]):.2f}; the refiner worse on {worse} of {len(rows)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
