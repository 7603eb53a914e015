"""What every ``dugray`` command shares: exit codes, the usage error, keys, the session flags and files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dugray import defaults

PROG = "dugray"
JOBS = {"eval": "dugray.evaluation.evaluate_job", "train": "dugray.train.train_job"}
"""Commands that are the jobs themselves: jobs/evaluate.py and jobs/train.py run the same ``main``."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES = """exit codes:
  0    done
  1    done, but some inputs failed (batch: listed in OUT/summary.json); train: training failed
  2    usage error or bad input: bad flag, unreadable / corrupt image, unusable model,
       a request the server refused (one line on stderr says why)
  3    the server cannot be reached, or it failed (HTTP 5xx)
  130  interrupted (Ctrl-C)"""


class UsageError(Exception):
    """A bad command line or input: one line on stderr, exit code 2."""


def exit_status(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else EXIT_FAILED


def fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return code


def add_prior(p) -> None:
    prior = p.add_mutually_exclusive_group()
    prior.add_argument("--trimap", metavar="PNG", help="trimap of the image's size: 0 bg, 128 unknown, 255 fg")
    prior.add_argument("--mask", metavar="PNG", help="binary mask (0/255 or 0/1): every pixel labelled fg or bg")


def add_model(p, one_shot: bool = True) -> None:
    """The model and session flags; ``one_shot``: the command makes one-shot mattes (cutout, batch), whose
    refinement default is :data:`dugray.defaults.ONE_SHOT_REFINE`, else (interactive) it refines at the end."""
    p.add_argument(
        "--model",
        default="default",
        help="'default' (shipped), a checkpoint, a training --out folder or an MLflow URI (models:/dugray-matting/1)",
    )
    p.add_argument("--refiner", help="refiner URI, or 'none' (default: the one beside --model, if any)")
    if one_shot:
        p.add_argument(
            "--refine",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="refine fine detail where aleatoric uncertainty is high, then solve from it "
            f"(default: {'yes' if defaults.ONE_SHOT_REFINE else 'no'}: trimap-free on real photos it "
            "made the matte worse; docs/usage.md, 'One-shot defaults')",
        )
    else:
        p.add_argument(
            "--refine",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="refine fine detail where aleatoric uncertainty is high when you finish (default: yes)",
        )
    p.add_argument(
        "--solve",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the uncertainty-guided solve: the network's posterior, your labels and the image's "
        "matting Laplacian in one sparse solve (default: the session default, on)",
    )
    p.add_argument(
        "--work-size", type=int, help=f"working resolution of the network, long side (default {defaults.WORK_SIZE})"
    )
    p.add_argument("--k", type=int, help=f"proposal grid: k x k cells (default {defaults.K})")
    p.add_argument("--n", type=int, help=f"proposals per round (default {defaults.N})")


def add_server_flags(p) -> None:
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all: then use API keys, behind a TLS proxy)",
    )
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="a file of API keys the server accepts, one per line (at least 16 characters each; this "
        "command sends the first); default: $DUGRAY_API_KEYS or $DUGRAY_API_KEYS_FILE. Never on the "
        "command line, where ps shows it to every user",
    )
    p.add_argument("--api-key", action="append", default=[], help=argparse.SUPPRESS)  # refused
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument(
        "--wait",
        type=float,
        default=600,
        metavar="SECONDS",
        help="how long to wait for GET /v1/health to say every deployment can serve before giving up "
        "(exit 3; default 600)",
    )
    p.add_argument("--cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any serve.settings.ServeSettings field, e.g. --set max_sessions=16 (repeatable)",
    )


def no_key_on_the_command_line(args) -> None:
    if getattr(args, "api_key", None):
        raise UsageError(
            "an API key on the command line is visible to every user of this machine (ps); put it in a "
            "file (--api-key-file FILE) or in $DUGRAY_API_KEY (client) / $DUGRAY_API_KEYS (server)"
        )


def key_file(path: str) -> list[str]:
    from serve.settings import read_keys

    try:
        keys = read_keys(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not keys:
        raise UsageError(f"no API key in {path}")
    return keys


def client_key(args) -> str | None:
    """The key a client command sends: the first of --api-key-file, else None ($DUGRAY_API_KEY applies)."""
    no_key_on_the_command_line(args)
    return key_file(args.api_key_file)[0] if getattr(args, "api_key_file", None) else None


def server_side_model(args) -> None:
    if args.model != "default" or args.refiner or any(v is not None for v in (args.work_size, args.k, args.n)):
        raise UsageError(
            "--model, --refiner, --work-size, --k and --n apply in process; with --server the server's are used"
        )


def read_inputs(args) -> dict:
    """The command line's image and prior (trimap or mask) as arrays: ``image``, ``trimap``, ``mask``."""
    from dugray.data.io import read_mask, read_rgb

    return {
        "image": read_rgb(args.image),
        "trimap": read_mask(args.trimap) if args.trimap else None,
        "mask": read_mask(args.mask) if args.mask else None,
    }


def wants_refiner(args) -> bool:
    return defaults.ONE_SHOT_REFINE if args.refine is None else args.refine


def load_model(args):
    """(matting network, refiner or None) of ``--model`` / ``--refiner``; no refiner when none will run."""
    from dugray.models import load_networks

    return load_networks(args.model, args.refiner if wants_refiner(args) else "none")


def one_shot_session(args):
    """The one-shot matte of the command line's image (:func:`dugray.oneshot.matte_image`: the same
    bytes as ``dugray batch`` and ``POST /v1/matte``)."""
    from dugray.oneshot import matte_image
    from dugray.session import SessionConfig

    inputs = read_inputs(args)
    model, refiner = load_model(args)
    return matte_image(
        inputs.pop("image"), model, refiner, SessionConfig(**session_overrides(args)), refine=args.refine, **inputs
    )


def open_session(args):
    """Round 1 of an interactive MattingSession (with proposals) on the command line's image, prior and model."""
    from dugray.session import MattingSession, SessionConfig

    inputs = read_inputs(args)
    model, refiner = load_model(args)
    return MattingSession(
        inputs.pop("image"), model, refiner, SessionConfig(**session_overrides(args)), **inputs
    ).start()


def session_overrides(args) -> dict:
    """The SessionConfig fields the command line sets (the rest keep dugray.defaults)."""
    names = ("work_size", "k", "n", "solve")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def out_path(out: str | None, image: str, kind: str, suffix: str = ".png") -> Path:
    """The output file: ``out``, whose suffix must be ``suffix`` (the format), or IMAGE's name + _kind + suffix."""
    if out is None:
        return Path(f"{Path(image.split('://')[-1]).stem}_{kind}{suffix}")
    given = Path(out).suffix.lower().replace(".jpeg", ".jpg")
    if given != suffix:
        raise UsageError(f"the output {out} does not end in {suffix} (the {suffix[1:]} format asked for)")
    return Path(out).expanduser()


def local_file(path: str | None) -> Path | None:
    if path is None:
        return None
    if "://" in path or not Path(path).is_file():
        raise UsageError(f"no such local file: {path} (inputs are uploaded to the server from this machine)")
    return Path(path)


def write(path: Path, data: bytes) -> None:
    from dugray.data.io import write_atomic

    write_atomic(path.resolve(), data)
