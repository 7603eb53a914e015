"""The ``dugray`` command: cut out one image, label one interactively, batch a folder, serve,
evaluate, train. ``main(argv) -> exit code``; installed as the ``dugray`` console script."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from pathlib import Path

from dugray import __version__, defaults

PROG = "dugray"
JOBS = {"eval": "dugray.evaluation.cli", "train": "dugray.train.cli"}
"""Commands that are the jobs themselves: jobs/evaluate.py and jobs/train.py run the same ``main``."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES = """exit codes:
  0    done
  1    done, but some inputs failed (batch: listed in OUT/summary.json); train: training failed
  2    usage error or bad input: bad flag, unreadable / corrupt image, unusable model,
       a request the server refused (one line on stderr says why)
  3    the server cannot be reached, or it failed (HTTP 5xx)
  130  interrupted (Ctrl-C)"""

DESCRIPTION = f"""Uncertainty-guided interactive image matting (dugMatting) on Ray.

The network predicts an alpha matte and, per pixel, how unsure it is. Without help it
cuts out the foreground by itself (cutout, batch); with a user it proposes the patches it
is least sure about, asks fg / bg / transition for each, and runs again (interactive).

examples:
  dugray cutout photo.jpg -o photo.png              RGBA cut-out, shipped model, in process
  dugray cutout photo.jpg -o alpha.png --alpha-only --trimap trimap.png
  dugray interactive photo.jpg -o photo.png         label proposals in the terminal
  dugray batch photos/ out/ --outputs cutout alpha  a whole folder on Ray Data, resumable
  dugray serve --port 8000                          the HTTP API and web page, locally
  dugray eval --data DIR --out eval/                the paper's tables (jobs/evaluate.py)
  dugray train --data DIR --out runs/exp1           both training stages (jobs/train.py)

'dugray COMMAND --help' explains each command.

{EXIT_CODES}"""

LABEL_HELP = """labels: one or more of INDEX+LABEL (a proposal), y,x=LABEL (a click at that pixel) or
y0,x0,y1,x1:LABEL (a box) separated by spaces, where LABEL is f(g), b(g), t(ransition) or
u(nknown, erases); e.g. '0f 1b 2t', '120,340=bg' or '10,20,40,60:bg'. Each line is one round.
'done' (or end of input) finishes, 'help' repeats this."""

LABELS = {"f": "fg", "fg": "fg", "b": "bg", "bg": "bg", "t": "transition", "transition": "transition",
          "u": "unknown", "unknown": "unknown"}
LABEL_TOKEN = re.compile(r"(\d+(?:,\d+){3}|\d+,\d+|\d+)[:=]?([a-z]+)")


class UsageError(Exception):
    """A bad command line or input: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage and exits; we want one line and our exit code
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    """Run one command; returns the exit code (documented in ``dugray --help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from dugray.client import DugrayApiError, ServerUnreachable

    if argv and argv[0] in JOBS:  # the job reports its own errors, with its own exit codes
        try:
            return run_job(argv[0], argv[1:])
        except UsageError as exc:
            return _fail(str(exc), EXIT_USAGE)
        except SystemExit as exc:
            return _exit_status(exc)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return args.func(args)
    except SystemExit as exc:  # --help, --version
        return _exit_status(exc)
    except ServerUnreachable as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except DugrayApiError as exc:
        return _fail(f"server: {exc}", EXIT_USAGE if exc.status < 500 else EXIT_UNREACHABLE)
    except (UsageError, ValueError, OSError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except RuntimeError as exc:
        checkpoints = sys.modules.get("dugray.models.checkpoint")  # imported lazily: torch is slow to import
        if checkpoints is not None and isinstance(exc, checkpoints.CheckpointError):
            return _fail(str(exc), EXIT_USAGE)
        raise


def _exit_status(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else EXIT_FAILED


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The ``dugray`` parser: cutout, interactive, batch and serve (eval and train are listed for --help;
    :func:`main` dispatches them before parsing).
    """
    raw = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=raw)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    c = sub.add_parser("cutout", help="cut out one image (RGBA or alpha PNG)", formatter_class=raw,
                       description=CUTOUT_DOC + "\n\n" + EXIT_CODES)
    c.add_argument("image", help="image file or URI (png, jpg, bmp, tif, webp; s3://, gs://, file://)")
    c.add_argument("-o", "--out", help="output .png, .jpg or .webp (default: IMAGE's name + _cutout or _alpha, here)")
    _add_prior(c)
    c.add_argument("--alpha-only", action="store_true", help="write the grey alpha matte instead of the RGBA cut-out")
    c.add_argument("--format", choices=("png", "jpg", "webp"), help="output format (default: -o's suffix, else png); "
                   "JPEG has no alpha: without --bg-color it is composited over white")
    c.add_argument("--bg-color", metavar="HEX", help="composite the cut-out over this colour (e.g. 81d4fa or '#fff')")
    c.add_argument("--crop", action="store_true", help="crop to the object's bounding box (alpha > 0)")
    c.add_argument("--crop-margin", default="0", metavar="N|Npx|N%", help="margin around the crop: pixels or a "
                   "percentage of the box's longer side (default 0)")
    c.add_argument("--max-side", type=int, metavar="PX", help="shrink the result so its long side is at most PX (a preview)")
    c.add_argument("--server", metavar="URL", help="use a running server's API (e.g. http://127.0.0.1:8000) instead of "
                   "running the model here")
    c.add_argument("--api-key-file", metavar="FILE", help="with --server: a file holding the API key to send "
                   "(default: $DUGRAY_API_KEY; never on the command line, where ps shows it)")
    c.add_argument("--api-key", help=argparse.SUPPRESS)  # refused: see _no_key_on_the_command_line
    _add_model(c)
    c.set_defaults(func=cmd_cutout)

    i = sub.add_parser("interactive", help="label the model's proposals in the terminal (or the web page)",
                       formatter_class=raw, description=INTERACTIVE_DOC + "\n\n" + LABEL_HELP + "\n\n" + EXIT_CODES)
    i.add_argument("image", help="image file or URI")
    i.add_argument("-o", "--out", help="output .png written when you finish (default: IMAGE's name + _cutout.png)")
    _add_prior(i)
    i.add_argument("--alpha-only", action="store_true", help="write the alpha matte instead of the RGBA cut-out")
    i.add_argument("--preview", metavar="PNG", help="after every round, write the image with the numbered proposals "
                   "beside the current matte here (open it in an image viewer that reloads)")
    i.add_argument("--web", action="store_true", help="start the session on a server instead (a local one unless "
                   "--server is given) and label it on the web page there")
    i.add_argument("--server", metavar="URL", help="with --web: the server to use")
    i.add_argument("--no-browser", action="store_true", help="with --web: only print the URL, do not open a browser")
    _add_model(i)
    _add_server_flags(i)
    i.set_defaults(func=cmd_interactive)

    b = sub.add_parser("batch", help="cut out a folder / list / URI of images on Ray Data", formatter_class=raw,
                       description=BATCH_DOC + "\n\n" + EXIT_CODES)
    b.add_argument("input", help="folder (recursive), image, .txt list of paths / URIs, or a URI (s3://bucket/dir/)")
    b.add_argument("out_dir", help="output folder (cutout/, alpha/, uncertainty/, summary.json, results.csv)")
    b.add_argument("--outputs", nargs="+", choices=("cutout", "alpha"), default=["cutout"],
                   help="what to write per image (default: cutout)")
    b.add_argument("--engine", choices=("ray", "loop"), default="ray",
                   help="ray: a pool of Ray Data actors (default); loop: one process, no Ray")
    b.add_argument("--concurrency", type=int, help="actors in the pool (default: CPUs / --threads)")
    b.add_argument("--threads", type=int, default=1, help="torch threads per actor (default 1)")
    b.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a private local Ray)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("-v", "--verbose", action="store_true", help="show Ray Data's own log lines too")
    _add_model(b)
    b.set_defaults(func=cmd_batch)

    s = sub.add_parser("serve", help="start the Serve app (web page, HTTP API) locally, print its URL", formatter_class=raw,
                       description=SERVE_DOC + "\n\n" + EXIT_CODES)
    s.add_argument("--model", default="default", help="'default', a checkpoint, a training --out folder or models:/...")
    s.add_argument("--refiner", help="refiner URI, or 'none' (default: the one beside --model)")
    _add_server_flags(s)
    s.set_defaults(func=cmd_serve)

    job_help = {"eval": "the paper's tables with a simulated user (= jobs/evaluate.py)",
                "train": "both training stages on Ray Train (= jobs/train.py)"}
    for name in JOBS:  # dispatched before parsing (see main); listed here for --help
        sub.add_parser(name, add_help=False, help=f"{job_help[name]}; 'dugray {name} --help'")
    return p


def _add_prior(p) -> None:
    prior = p.add_mutually_exclusive_group()
    prior.add_argument("--trimap", metavar="PNG", help="trimap of the image's size: 0 bg, 128 unknown, 255 fg")
    prior.add_argument("--mask", metavar="PNG", help="binary mask (0/255 or 0/1): every pixel labelled fg or bg")


def _add_model(p) -> None:
    p.add_argument("--model", default="default", help="'default' (shipped), a checkpoint, a training --out folder "
                   "or an MLflow URI (models:/dugray-matting/1)")
    p.add_argument("--refiner", help="refiner URI, or 'none' (default: the one beside --model, if any)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="refine fine detail where aleatoric uncertainty is high (default: yes)")
    p.add_argument("--solve", action=argparse.BooleanOptionalAction, default=None,
                   help="the uncertainty-guided solve: the network's posterior, your labels and the image's "
                        "matting Laplacian in one sparse solve (default: the session default, on)")
    p.add_argument("--work-size", type=int, help=f"working resolution of the network, long side (default {defaults.WORK_SIZE})")
    p.add_argument("--k", type=int, help=f"proposal grid: k x k cells (default {defaults.K})")
    p.add_argument("--n", type=int, help=f"proposals per round (default {defaults.N})")


def _add_server_flags(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all: "
                   "then use API keys, behind a TLS proxy)")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="a file of API keys the server accepts, one per line (at least 16 characters each; this "
                        "command sends the first); default: $DUGRAY_API_KEYS or $DUGRAY_API_KEYS_FILE. Never on the "
                        "command line, where ps shows it to every user")
    p.add_argument("--api-key", action="append", default=[], help=argparse.SUPPRESS)  # refused
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--wait", type=float, default=600, metavar="SECONDS",
                   help="how long to wait for GET /v1/health to say every deployment can serve before giving up "
                        "(exit 3; default 600)")
    p.add_argument("--cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any serve.settings.ServeSettings field, e.g. --set max_sessions=16 (repeatable)")


def _no_key_on_the_command_line(args) -> None:
    if getattr(args, "api_key", None):
        raise UsageError("an API key on the command line is visible to every user of this machine (ps); put it in a "
                         "file (--api-key-file FILE) or in $DUGRAY_API_KEY (client) / $DUGRAY_API_KEYS (server)")


def _key_file(path: str) -> list[str]:
    from serve.settings import read_keys

    try:
        keys = read_keys(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not keys:
        raise UsageError(f"no API key in {path}")
    return keys


def _client_key(args) -> str | None:
    """The key a client command sends: the first of --api-key-file, else None ($DUGRAY_API_KEY applies)."""
    _no_key_on_the_command_line(args)
    return _key_file(args.api_key_file)[0] if getattr(args, "api_key_file", None) else None


# --------------------------------------------------------------------------- cutout

CUTOUT_DOC = """Cut out the foreground of one image: RGBA PNG (colours re-estimated, so no halo), or
with --alpha-only the alpha matte. Trimap-free by default; --trimap or --mask give the
model what you already know. Runs in this process (no Ray); --server sends the image to
a running dugray server instead.

  dugray cutout photo.jpg -o cut.png
  dugray cutout photo.jpg -o alpha.png --alpha-only --trimap trimap.png --no-refine
  dugray cutout photo.jpg -o cut.png --model runs/exp1
  dugray cutout photo.jpg -o cut.png --server http://127.0.0.1:8000
  dugray cutout photo.jpg -o product.jpg --bg-color ffffff --crop --crop-margin 5% --max-side 1000"""


def cmd_cutout(args) -> int:
    """``dugray cutout``: matte one image here (or on ``--server``) and write the RGBA cut-out or the alpha
    PNG; returns 0 (errors are raised and turned into exit codes by :func:`main`).
    """
    options = _output_options(args)
    out = _out_path(args.out, args.image, "alpha" if args.alpha_only else "cutout", options.suffix)
    t0 = time.perf_counter()
    if args.server:
        _server_side_model(args)
        from dugray.client import DugrayClient

        with DugrayClient(args.server, api_key=_client_key(args)) as api:
            data = api.cutout(_local_file(args.image), output="alpha" if args.alpha_only else "rgba",
                              trimap=_local_file(args.trimap), mask=_local_file(args.mask), refine=args.refine,
                              solve=args.solve, **_option_fields(options))
        size = ""
    else:
        from dugray.compose import render_alpha, render_cutout

        session = _session(args)
        data = render_alpha(session.alpha_u8, options) if args.alpha_only else render_cutout(session.cutout(), options)
        h, w = session.state.full_shape
        size = f"{w}x{h}, "
    _write(out, data)
    print(f"wrote {out} ({size}{'alpha' if args.alpha_only else 'RGBA'}, {time.perf_counter() - t0:.1f} s)")
    return EXIT_OK


def _server_side_model(args) -> None:
    if args.model != "default" or args.refiner or any(v is not None for v in (args.work_size, args.k, args.n)):
        raise UsageError("--model, --refiner, --work-size, --k and --n apply in process; with --server the server's are used")


def _session(args, refine=None):
    """Round 1 of a MattingSession on the command line's image, prior and model (refined unless told not)."""
    from dugray.batch import matte_image
    from dugray.data.io import read_mask, read_rgb
    from dugray.models import load_networks
    from dugray.session import SessionConfig

    image = read_rgb(args.image)
    trimap = read_mask(args.trimap) if args.trimap else None
    mask = read_mask(args.mask) if args.mask else None
    refine = args.refine if refine is None else refine
    model, refiner = load_networks(args.model, args.refiner if args.refine else "none")
    return matte_image(image, model, refiner, SessionConfig(**_session_overrides(args)), trimap=trimap, refine=refine,
                       mask=mask)


def _session_overrides(args) -> dict:
    """The SessionConfig fields the command line sets (the rest keep dugray.defaults)."""
    names = ("work_size", "k", "n", "solve")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _out_path(out: str | None, image: str, kind: str, suffix: str = ".png") -> Path:
    """The output file: ``out``, whose suffix must be ``suffix`` (the format), or IMAGE's name + _kind + suffix."""
    if out is None:
        return Path(f"{Path(image.split('://')[-1]).stem}_{kind}{suffix}")
    given = Path(out).suffix.lower().replace(".jpeg", ".jpg")
    if given != suffix:
        raise UsageError(f"the output {out} does not end in {suffix} (the {suffix[1:]} format asked for)")
    return Path(out).expanduser()


def _output_options(args):
    """The cut-out's delivery (:class:`dugray.compose.OutputOptions`) from the flags; the format
    comes from ``--format``, else from ``-o``'s suffix, else png."""
    from dugray.compose import FORMATS, OutputOptions

    fmt = getattr(args, "format", None)
    if fmt is None and args.out:
        fmt = Path(args.out).suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UsageError(f"the output must be a .png, .jpg or .webp file, got {args.out}")
    try:
        return OutputOptions(bg_color=getattr(args, "bg_color", None), format=fmt or "png",
                             crop=getattr(args, "crop", False), crop_margin=getattr(args, "crop_margin", "0"),
                             max_side=getattr(args, "max_side", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _option_fields(options) -> dict:
    """OutputOptions as the API's query parameters (the defaults left out)."""
    from dataclasses import asdict

    from dugray.compose import OutputOptions

    plain = asdict(OutputOptions())
    return {k: v for k, v in asdict(options).items() if v != plain[k]}


def _local_file(path: str | None) -> Path | None:
    if path is None:
        return None
    if "://" in path or not Path(path).is_file():
        raise UsageError(f"no such local file: {path} (inputs are uploaded to the server from this machine)")
    return Path(path)


def _write(path: Path, data: bytes) -> None:
    from dugray.data.io import write_atomic

    write_atomic(path.resolve(), data)


# --------------------------------------------------------------------------- interactive

INTERACTIVE_DOC = """Cut out one image with your help. Round 1 runs without any; then the patches the model
is least sure about (its epistemic uncertainty) are listed by index, box and score. Answer
some or all of them, the model runs again with your answers, fuses every round (NIG
summation) and proposes anew. When you are done, the matte is refined and written.
--web starts the session on a server instead (a local one unless --server is given) and
opens its web page at URL/?session=ID, where you click on the proposals, apply, refine
and download (so -o, --alpha-only and --preview do not go with --web).

  dugray interactive photo.jpg -o cut.png --preview proposals.png
  printf '0f 1b 2t\\ndone\\n' | dugray interactive photo.jpg -o cut.png     (from a pipe)
  dugray interactive photo.jpg --web --trimap trimap.png
  dugray interactive photo.jpg --web --server http://127.0.0.1:8000 --no-browser"""


def cmd_interactive(args) -> int:
    """``dugray interactive``: round 1, then labels read from stdin round by round until 'done', then
    the (refined) result written; with --web the rounds happen on the server's web page instead.
    """
    if args.web:
        return _interactive_web(args)
    if args.server:
        raise UsageError("--server goes with --web; the terminal rounds run in this process")
    out = _out_path(args.out, args.image, "alpha" if args.alpha_only else "cutout")
    t0 = time.perf_counter()
    session = _session(args, refine=False)
    h, w = session.state.full_shape
    print(f"{args.image}: {w}x{h}, round 1 in {time.perf_counter() - t0:.1f} s")
    _show_round(session, args.preview)
    print(LABEL_HELP)
    while True:
        try:
            line = input("labels> ").strip().lower()
        except EOFError:
            print()
            break
        if line in ("done", "d", "q", "quit", "exit"):
            break
        if line in ("help", "h", "?"):
            print(LABEL_HELP)
            continue
        if not line:
            continue
        try:
            t = time.perf_counter()
            session.label(parse_labels(line))
        except ValueError as exc:
            print(f"  not applied: {exc}", file=sys.stderr)
            continue
        print(f"round {session.rounds} in {time.perf_counter() - t:.1f} s")
        _show_round(session, args.preview)
    if args.refine:
        session.refine()
    from dugray.data.io import encode_png

    _write(out, encode_png(session.alpha_u8 if args.alpha_only else session.cutout()))
    labels = len(session.state.label_log)
    print(f"wrote {out} after {session.rounds} round(s), {labels} label(s){', refined' if args.refine else ''}")
    return EXIT_OK


def parse_labels(line: str) -> list[tuple]:
    """'0f 1b 5,7=bg 10,20,40,60:t' -> [(0, 'fg'), (1, 'bg'), ((5, 7), 'bg'), ((10, 20, 40, 60), 'transition')]."""
    labels = []
    for token in line.split():
        m = LABEL_TOKEN.fullmatch(token)
        if not m or m.group(2) not in LABELS:
            raise ValueError(f"cannot read {token!r}; expected e.g. 0f, 1b, 2t, y,x=bg or y0,x0,y1,x1:bg")
        target = tuple(int(v) for v in m.group(1).split(",")) if "," in m.group(1) else int(m.group(1))
        labels.append((target, LABELS[m.group(2)]))
    return labels


def _show_round(session, preview: str | None) -> None:
    """Print the round's uncertainty and proposals; write the preview picture if asked."""
    from dugray.batch import uncertainty_report

    r = uncertainty_report(session)
    print(f"  mean epistemic {r['epistemic_mean']:.4f}, aleatoric {r['aleatoric_mean']:.4f}; "
          f"{len(session.proposals)} proposals (box y0,x0,y1,x1 in pixels):")
    info = session.state.solve_info
    if info:
        kept = "" if info["guard"] == "ok" else f"; guard kept the network's matte ({info['guard']})"
        print(f"  solve: {info['band_fraction']:.0%} of the image solved in {info['seconds']:.2f} s{kept}")
    for i, p in enumerate(session.proposals):
        print(f"  {i:3d}  {','.join(map(str, p.box)):>22}  score {p.score:.4f}")
    if preview:
        _write(Path(preview).expanduser(), _preview(session))


def _preview(session, height: int = 512) -> bytes:
    """PNG: the image with the proposals numbered as in the terminal | the current matte."""
    import cv2

    from dugray.data.io import encode_png
    from dugray.visualize import grey, strip

    h, w = session.state.full_shape
    f = height / h  # draw at display size, so the numbers stay legible
    image = cv2.resize(session.state.image, (max(1, round(w * f)), height), interpolation=cv2.INTER_AREA)
    for i, p in enumerate(session.proposals):
        y0, x0, y1, x1 = (round(v * f) for v in p.box)
        cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), (0, 200, 255), 1)
        cv2.putText(image, str(i), (x0 + 2, y0 + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 200, 255), 1)
    return encode_png(strip([image, grey(session.alpha)], ["proposals", f"matte, round {session.rounds}"], height=height))


def _interactive_web(args) -> int:
    """Round 1 of IMAGE on a server (a local one unless --server), then its web page at URL/?session=ID."""
    if args.out or args.alpha_only or args.preview:
        raise UsageError("-o, --alpha-only and --preview are for the terminal rounds; with --web, download from the page")
    if args.server:
        _server_side_model(args)
    image, trimap, mask = _local_file(args.image), _local_file(args.trimap), _local_file(args.mask)
    _no_key_on_the_command_line(args)
    url = (args.server or _start_server(args)).rstrip("/")
    from dugray.client import DugrayClient

    t0 = time.perf_counter()
    try:
        with DugrayClient(url, api_key=_client_key(args)) as api:
            view = api.create_session(image, trimap=trimap, mask=mask, solve=args.solve)
    except BaseException:
        if not args.server:
            _stop_server()
        raise
    page = f"{url}/?session={view.id}"
    print(f"{args.image}: {view.width}x{view.height}, round 1 in {time.perf_counter() - t0:.1f} s, "
          f"{len(view.proposals)} proposals; label them at {page}", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(page)
    return EXIT_OK if args.server else _serve_until_stopped()


# --------------------------------------------------------------------------- batch

BATCH_DOC = """Cut out many images on Ray Data: a pool of actors, each loading the model once, streams
the images through the same session code as 'cutout' (round 1, refined). Resumable: an
image whose outputs exist is skipped, so rerun the same command after an interruption.
A corrupt or unreadable image is reported and skipped, never fatal.

OUT_DIR gets cutout/<name>.png, alpha/<name>.png, uncertainty/<name>.json (how unsure the
model is, and where), summary.json (counts, failures, the images most worth a review)
and results.csv (one row per input: ok / skipped / failed).

  dugray batch photos/ out/
  dugray batch photos/ out/ --outputs cutout alpha --concurrency 4
  dugray batch list.txt out/ --engine loop           one path or URI per line, no Ray
  dugray batch s3://bucket/photos/ out/ --address auto"""


def cmd_batch(args) -> int:
    """``dugray batch``: :func:`dugray.batch.run_batch`, then its counts and first failures printed;
    returns 1 if any input failed, else 0.
    """
    import importlib
    import logging

    from dugray.batch import BatchOptions, run_batch

    if args.engine == "ray" and not args.verbose:
        importlib.import_module("ray.data")  # configures its logging: quiet its console lines, keep its log file
        for handler in logging.getLogger("ray.data").handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setLevel(logging.ERROR)
    options = BatchOptions(outputs=tuple(args.outputs), refine=args.refine, model=args.model, refiner=args.refiner,
                           session=_session_overrides(args), threads=args.threads)
    report = run_batch(args.input, args.out_dir, options, engine=args.engine, concurrency=args.concurrency,
                       address=args.address, progress=not args.no_progress)
    c = report.counts
    print(f"{c['ok']} done, {c['skipped']} skipped (already done), {c['failed']} failed in {report.seconds:.1f} s; "
          f"report: {Path(args.out_dir) / 'summary.json'}")
    for row in report.failures[:10]:
        print(f"  failed: {row['source']}: {row['error']}", file=sys.stderr)
    if len(report.failures) > 10:
        print(f"  ... and {len(report.failures) - 10} more (results.csv)", file=sys.stderr)
    return EXIT_FAILED if report.failures else EXIT_OK


# --------------------------------------------------------------------------- serve

SERVE_DOC = """Start the dugray Serve app (the web page at /, the HTTP API under /v1) on a private
local Ray, wait until GET /v1/health says every deployment can serve (--wait), and print
its URL. SIGTERM or Ctrl-C (SIGINT) stops it cleanly: requests in flight finish, Serve and
Ray shut down, exit code 0; this is the command to run under a process manager (systemd,
a container). The same app as 'serve run serve.app:build' (the installed ``serve``
package). On a cluster, use 'serve deploy serve/config.yaml'.

API keys: --api-key-file FILE (one per line), or $DUGRAY_API_KEYS / $DUGRAY_API_KEYS_FILE;
never on the command line, where ps shows them to every user.

  dugray serve
  dugray serve --port 8080 --model runs/exp1 --set max_sessions=16 --set 'session={"n": 5}'
  DUGRAY_API_KEYS_FILE=/etc/dugray/keys dugray serve --host 0.0.0.0"""

STOP_SIGNALS = ("SIGTERM", "SIGINT")
"""What stops ``dugray serve`` cleanly (a process manager sends SIGTERM, a terminal SIGINT)."""


def cmd_serve(args) -> int:
    """``dugray serve``: start Ray, Serve and the app locally, wait until it is ready, then block until
    SIGTERM or SIGINT and stop cleanly; returns 0 (3 when it did not become ready within --wait)."""
    with _stop_signals() as stopped:
        try:
            _start_server(args, stopped)
        except _Stopped:  # stopped while starting: _start_server has shut everything down
            print("stopped", flush=True)
            return EXIT_OK
        return _serve_until_stopped(stopped)


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived while the server was starting."""


def _start_server(args, stopped=None) -> str:
    """Start Ray + Serve + the app on host:port and wait until /v1/health says it is ready; the URL."""
    import socket

    settings = {"model": args.model, **dict(_key_value(s) for s in args.settings)}
    if args.refiner:
        settings["refiner"] = args.refiner
    _no_key_on_the_command_line(args)
    if args.api_key_file:
        settings["api_keys"] = _key_file(args.api_key_file)
    keys = settings.get("api_keys") or os.environ.get("DUGRAY_API_KEYS") or os.environ.get("DUGRAY_API_KEYS_FILE")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not keys:
        print(f"{PROG}: warning: listening on {args.host} without API keys: anyone who can reach this machine can use "
              "the server; pass --api-key-file (and put it behind a TLS proxy)", file=sys.stderr, flush=True)
    session = {k: v for k, v in _session_overrides(args).items() if k != "solve"}  # interactive --web
    if session:
        settings.setdefault("session", session)
    with socket.socket() as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port") from None
    import ray
    from ray import serve

    from serve.app import build, required_cpus
    from serve.settings import ServeSettings

    app = build(settings)  # bad settings fail here, before Ray starts
    need = required_cpus(ServeSettings.from_args(settings))
    if args.cpus is not None and args.cpus < need:  # Serve would wait for the CPUs forever
        raise UsageError(f"the app reserves {need:g} CPUs for its replicas; pass --cpus {math.ceil(need)} or more")
    print(f"starting Ray and the dugray app (model {args.model}) ...", flush=True)
    from serve.access import set_proxy_env
    from serve.memory import set_malloc_env

    set_malloc_env()  # before Ray starts: its workers inherit it (flat memory under sustained load)
    set_proxy_env()  # Ray's HTTP proxy believes no X-Forwarded-For; the app trusts its trusted_proxies itself
    t0 = time.monotonic()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False)  # replicas import the installed serve.app
    if stopped is not None:
        stopped.install()  # ours again: Ray's handler would abort with a native trace instead of stopping cleanly
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    url = f"http://{host}:{args.port}"
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run_many([serve.RunTarget(app, name="dugray", route_prefix="/")], wait_for_applications_running=False)
        _wait_until_ready(url, args.wait, stopped)
    except BaseException:
        _stop_server()
        raise
    print(f"dugray is serving {url}  (web page {url}/, API {url}/v1, docs {url}/docs); ready in "
          f"{time.monotonic() - t0:.0f} s", flush=True)
    return url


def _wait_until_ready(url: str, seconds: float, stopped=None) -> None:
    """Poll GET /v1/health until it answers 200 (every deployment can serve): what a load balancer
    waits for. A failed deployment is a UsageError with Serve's reason; past ``seconds``, a
    :class:`dugray.client.ServerUnreachable` (exit 3)."""
    import requests
    from ray import serve

    from dugray.client import ServerUnreachable

    deadline, said = time.monotonic() + seconds, None
    while True:
        if stopped is not None and stopped.is_set():
            raise _Stopped
        app = serve.status().applications.get("dugray")
        if app is not None and app.status == "DEPLOY_FAILED":
            raise UsageError(f"the app did not start: {(app.message or 'a deployment failed').strip().splitlines()[0]}")
        try:
            r = requests.get(f"{url}/v1/health", timeout=5)
            if r.status_code == 200:
                return
            waiting = r.json().get("not_ready") if r.headers.get("content-type", "").startswith("application/json") else None
        except (requests.RequestException, ValueError):
            waiting = None
        if waiting and waiting != said:
            print(f"  waiting for {', '.join(waiting)} ...", flush=True)
            said = waiting
        if time.monotonic() > deadline:
            raise ServerUnreachable(f"the app was not ready within {seconds:g} s (--wait); still starting: "
                                    f"{', '.join(waiting or ['the HTTP proxy'])}")
        time.sleep(0.5)


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
    return key, value


class _stop_signals:
    """While active (``with _stop_signals() as stopped``), SIGTERM and SIGINT only set a flag
    (``stopped.is_set()``, ``stopped.wait(s)``) instead of interrupting whatever Python runs
    (a Ray call cut in half leaves Ray half down); the old handlers come back afterwards.
    ``ray.init`` installs Ray's own handler (a native crash trace and an abort), so
    :func:`_start_server` installs ours again after it (``stopped.install()``)."""

    def __enter__(self):
        import threading

        self._event, self._old = threading.Event(), {}
        self.install()
        return self

    def install(self) -> None:
        import signal

        for name in STOP_SIGNALS:
            sig = getattr(signal, name)
            self._old.setdefault(sig, signal.signal(sig, lambda signum, frame: self._event.set()))

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


def _serve_until_stopped(stopped=None) -> int:
    """Block until SIGTERM or SIGINT, then drain and shut Serve and Ray down; returns 0."""
    if stopped is None:
        with _stop_signals() as own:
            return _serve_until_stopped(own)
    print("SIGTERM or Ctrl-C stops it", flush=True)
    while not stopped.wait(1.0):
        pass
    print("stopping: finishing requests in flight, shutting Serve and Ray down ...", flush=True)
    _stop_server(drain_s=30.0)  # further signals only set the flag again: the shutdown is never cut short
    print("stopped", flush=True)
    return EXIT_OK


def _stop_server(drain_s: float = 0.0) -> None:
    """Shut Serve and Ray down; with ``drain_s``, first let the app finish the requests in flight
    (new ones get 503 meanwhile, so a load balancer moves on)."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    if drain_s > 0:
        try:
            left = serve.get_app_handle("dugray").drain.remote(drain_s).result(timeout_s=drain_s + 10)
            if left:
                print(f"{left} requests still running after {drain_s:g} s; stopping anyway", flush=True)
        except Exception as exc:  # noqa: BLE001 - no app to drain (it failed to start): just stop
            print(f"could not drain the app ({type(exc).__name__}); stopping", flush=True)
    serve.shutdown()
    ray.shutdown()


# --------------------------------------------------------------------------- eval, train


def run_job(name: str, argv: list[str]) -> int:
    """The job's own ``main(argv)`` (its flags, its exit codes), named ``dugray NAME`` in its messages."""
    import importlib

    job = importlib.import_module(JOBS[name])
    return int(job.main(argv, prog=f"{PROG} {name}") or 0)


if __name__ == "__main__":
    sys.exit(main())
