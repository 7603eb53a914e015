"""``dugray cutout`` (one image, here or on a server) and ``dugray batch`` (many, on Ray Data)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dugray.batch_engine import RAY_MIN_CPUS, RAY_MIN_IMAGES_PER_CPU
from dugray.cli.common import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_model,
    add_prior,
    client_key,
    local_file,
    one_shot_session,
    out_path,
    server_side_model,
    session_overrides,
    write,
)

ONE_SHOT_DOC = """One shot: 'cutout', 'batch' (either engine), dugray.matte_image and the server's
POST /v1/matte run the same plan and give the same bytes for the same image and options.
Defaults: trimap-free, one network pass at the working size (--work-size), then the
uncertainty-guided solve (--no-solve: the network's matte alone); no proposals and no
refinement (--refine: the refiner, then one solve from its matte; on the train/ photos it
made trimap-free mattes worse: docs/usage.md, 'One-shot defaults')."""

CUTOUT_DOC = f"""Cut out the foreground of one image: RGBA PNG (colours re-estimated, so no halo), or
with --alpha-only the alpha matte. Trimap-free by default; --trimap or --mask give the
model what you already know. Runs in this process (no Ray); --server sends the image to
a running dugray server instead.

{ONE_SHOT_DOC}

  dugray cutout photo.jpg -o cut.png
  dugray cutout photo.jpg -o alpha.png --alpha-only --trimap trimap.png
  dugray cutout photo.jpg -o cut.png --model runs/exp1 --refine
  dugray cutout photo.jpg -o cut.png --server http://127.0.0.1:8000
  dugray cutout photo.jpg -o product.jpg --bg-color ffffff --crop --crop-margin 5% --max-side 1000"""

BATCH_DOC = f"""Cut out many images: each goes through the same one-shot matte as 'cutout' (below).
--engine ray runs a pool of Ray Data actors, each loading the model once; --engine loop
runs them one after another in this process; --engine auto (the default) picks one and
says which and why (see --engine). Resumable: an image whose outputs exist is skipped, so
rerun the same command after an interruption. A corrupt or unreadable image is reported
and skipped, never fatal.

{ONE_SHOT_DOC}

OUT_DIR gets cutout/<name>.png, alpha/<name>.png, uncertainty/<name>.json (how unsure the
model is, and where), summary.json (counts, failures, the images most worth a review)
and results.csv (one row per input: ok / skipped / failed).

  dugray batch photos/ out/
  dugray batch photos/ out/ --outputs cutout alpha --concurrency 4 --engine ray
  dugray batch list.txt out/ --engine loop           one path or URI per line, no Ray
  dugray batch s3://bucket/photos/ out/ --address auto"""


def add_cutout_parser(sub) -> None:
    """The ``cutout`` subcommand's flags."""
    c = sub.add_parser(
        "cutout",
        help="cut out one image (RGBA or alpha PNG)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=CUTOUT_DOC + "\n\n" + EXIT_CODES,
    )
    c.add_argument("image", help="image file or URI (png, jpg, bmp, tif, webp; s3://, gs://, file://)")
    c.add_argument("-o", "--out", help="output .png, .jpg or .webp (default: IMAGE's name + _cutout or _alpha, here)")
    add_prior(c)
    c.add_argument("--alpha-only", action="store_true", help="write the grey alpha matte instead of the RGBA cut-out")
    c.add_argument(
        "--format",
        choices=("png", "jpg", "webp"),
        help="output format (default: -o's suffix, else png); "
        "JPEG has no alpha: without --bg-color it is composited over white",
    )
    c.add_argument("--bg-color", metavar="HEX", help="composite the cut-out over this colour (e.g. 81d4fa or '#fff')")
    c.add_argument("--crop", action="store_true", help="crop to the object's bounding box (alpha > 0)")
    c.add_argument(
        "--crop-margin",
        default="0",
        metavar="N|Npx|N%",
        help="margin around the crop: pixels or a percentage of the box's longer side (default 0)",
    )
    c.add_argument(
        "--max-side", type=int, metavar="PX", help="shrink the result so its long side is at most PX (a preview)"
    )
    c.add_argument(
        "--server",
        metavar="URL",
        help="use a running server's API (e.g. http://127.0.0.1:8000) instead of running the model here",
    )
    c.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="with --server: a file holding the API key to send "
        "(default: $DUGRAY_API_KEY; never on the command line, where ps shows it)",
    )
    c.add_argument("--api-key", help=argparse.SUPPRESS)  # refused: see no_key_on_the_command_line
    add_model(c)
    c.set_defaults(func=cmd_cutout)


def add_batch_parser(sub) -> None:
    """The ``batch`` subcommand's flags."""
    b = sub.add_parser(
        "batch",
        help="cut out a folder / list / URI of images on Ray Data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=BATCH_DOC + "\n\n" + EXIT_CODES,
    )
    b.add_argument("input", help="folder (recursive), image, .txt list of paths / URIs, or a URI (s3://bucket/dir/)")
    b.add_argument("out_dir", help="output folder (cutout/, alpha/, uncertainty/, summary.json, results.csv)")
    b.add_argument(
        "--outputs",
        nargs="+",
        choices=("cutout", "alpha"),
        default=["cutout"],
        help="what to write per image (default: cutout)",
    )
    b.add_argument(
        "--engine",
        choices=("auto", "ray", "loop"),
        default="auto",
        help="ray: a pool of Ray Data actors; loop: one process, no Ray; auto (default): ray when a "
        "cluster is given (--address, RAY_ADDRESS) or --concurrency asks for a pool, else loop "
        f"on a machine of fewer than {RAY_MIN_CPUS} CPUs or for fewer than {RAY_MIN_IMAGES_PER_CPU} "
        "images per CPU (the pool's start is not repaid), else ray; one line says which and why",
    )
    b.add_argument("--concurrency", type=int, help="actors in the pool (default: CPUs / --threads)")
    b.add_argument("--threads", type=int, default=1, help="torch threads per actor (default 1)")
    b.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a private local Ray)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print what Ray and the libraries say on the terminal "
        "(default: into OUT_DIR/batch.log, so that nothing breaks into the progress bar)",
    )
    add_model(b)
    b.set_defaults(func=cmd_batch)


def cmd_cutout(args) -> int:
    """``dugray cutout``: matte one image here (or on ``--server``) and write the RGBA cut-out or the alpha
    PNG; returns 0 (errors are raised and turned into exit codes by :func:`main`).
    """
    options = _output_options(args)
    out = out_path(args.out, args.image, "alpha" if args.alpha_only else "cutout", options.suffix)
    t0 = time.perf_counter()
    if args.server:
        server_side_model(args)
        from dugray.client import DugrayClient  # requests: only with --server (a cold cutout runs without it)

        with DugrayClient(args.server, api_key=client_key(args)) as api:
            data = api.cutout(
                local_file(args.image),
                output="alpha" if args.alpha_only else "rgba",
                trimap=local_file(args.trimap),
                mask=local_file(args.mask),
                refine=args.refine,
                solve=args.solve,
                **_option_fields(options),
            )
        size = ""
    else:
        session = one_shot_session(args)
        data = session.render("alpha" if args.alpha_only else "cutout", options)
        h, w = session.state.full_shape
        size = f"{w}x{h}, "
    write(out, data)
    print(f"wrote {out} ({size}{'alpha' if args.alpha_only else 'RGBA'}, {time.perf_counter() - t0:.1f} s)")
    return EXIT_OK


def _output_options(args):
    """The cut-out's delivery (:class:`dugray.compose.OutputOptions`) from the flags; the format
    comes from ``--format``, else from ``-o``'s suffix, else png."""
    from dugray.compose import FORMATS, OutputOptions  # OpenCV: not for `dugray --help`

    fmt = getattr(args, "format", None)
    if fmt is None and args.out:
        fmt = Path(args.out).suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UsageError(f"the output must be a .png, .jpg or .webp file, got {args.out}")
    try:
        return OutputOptions(
            bg_color=getattr(args, "bg_color", None),
            format=fmt or "png",
            crop=getattr(args, "crop", False),
            crop_margin=getattr(args, "crop_margin", "0"),
            max_side=getattr(args, "max_side", None),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _option_fields(options) -> dict:
    """OutputOptions as the API's query parameters (the defaults left out)."""
    from dataclasses import asdict

    from dugray.compose import OutputOptions  # OpenCV: not for `dugray --help`

    plain = asdict(OutputOptions())
    return {k: v for k, v in asdict(options).items() if v != plain[k]}


def cmd_batch(args) -> int:
    """``dugray batch``: :func:`dugray.batch.run_batch`, then its counts and first failures printed;
    returns 1 if any input failed, else 0.
    """
    # only when batch runs: the session and torch (dugray.batch); tempfile, shutil and their compressors (quiet)
    from dugray.batch import BatchOptions, run_batch
    from dugray.cli.quiet import libraries_to_a_file

    def announce(engine: str, why: str) -> None:
        print(f"engine: {engine} ({why})", flush=True)  # stdout, before the progress bar starts
        if engine == "ray" and not args.verbose:
            _quiet_ray_data()

    options = BatchOptions(
        outputs=tuple(args.outputs),
        refine=args.refine,
        model=args.model,
        refiner=args.refiner,
        session=session_overrides(args),
        threads=args.threads,
    )
    with libraries_to_a_file(args.out_dir, verbose=args.verbose) as bar:  # Ray's lines go to OUT_DIR/batch.log
        report = run_batch(
            args.input,
            args.out_dir,
            options,
            engine=args.engine,
            concurrency=args.concurrency,
            address=args.address,
            progress=False if args.no_progress else bar or True,
            announce=announce,
        )
    c = report.counts
    print(
        f"{c['ok']} done, {c['skipped']} skipped (already done), {c['failed']} failed in {report.seconds:.1f} s; "
        f"report: {Path(args.out_dir) / 'summary.json'}"
    )
    for row in report.failures[:10]:
        print(f"  failed: {row['source']}: {row['error']}", file=sys.stderr)
    if len(report.failures) > 10:
        print(f"  ... and {len(report.failures) - 10} more (results.csv)", file=sys.stderr)
    return EXIT_FAILED if report.failures else EXIT_OK


def _quiet_ray_data() -> None:
    """Ray Data's console lines off (its log file kept): importing it configures its logging."""
    import importlib
    import logging

    importlib.import_module("ray.data")
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)
