"""The ``dugray`` command: cut out one image, label one interactively, batch a folder, serve,
evaluate, train. ``main(argv) -> exit code``; installed as the ``dugray`` console script."""

from __future__ import annotations

import argparse
import sys

from dugray import __version__
from dugray.cli import cutout, interactive, server
from dugray.cli.common import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PROG,
    UsageError,
    exit_status,
    fail,
)

JOBS = {"eval": "dugray.evaluation.evaluate_job", "train": "dugray.train.train_job", "pretrained": "dugray.pretrained"}
"""Commands that are the jobs themselves: jobs/evaluate.py and jobs/train.py run the same ``main``."""

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
  dugray pretrained u2netp                          fetch U^2-Netp's weights for training

'dugray COMMAND --help' explains each command.

{EXIT_CODES}"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage and exits; we want one line and our exit code
        raise UsageError(f"{message} (see '{self.prog} --help')")


def main(argv=None) -> int:
    """Run one command; returns the exit code (documented in ``dugray --help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in JOBS:  # the job reports its own errors, with its own exit codes
        try:
            return run_job(argv[0], argv[1:])
        except UsageError as exc:
            return fail(str(exc), EXIT_USAGE)
        except SystemExit as exc:
            return exit_status(exc)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return args.func(args)
    except SystemExit as exc:  # --help, --version
        return exit_status(exc)
    except _client_error("ServerUnreachable") as exc:
        return fail(str(exc), EXIT_UNREACHABLE)
    except _client_error("DugrayApiError") as exc:
        return fail(f"server: {exc}", EXIT_USAGE if exc.status < 500 else EXIT_UNREACHABLE)
    except (UsageError, ValueError, OSError) as exc:
        return fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except RuntimeError as exc:
        checkpoints = sys.modules.get("dugray.models.checkpoint")  # imported lazily: torch is slow to import
        if checkpoints is not None and isinstance(exc, checkpoints.CheckpointError):
            return fail(str(exc), EXIT_USAGE)
        raise


class _NotRaised(Exception):
    """Stands for a client error when the client was never imported (so it cannot have raised)."""


def _client_error(name: str) -> type[Exception]:
    """``dugray.client``'s exception ``name`` if a command imported the client, else one never raised:
    the client (and requests) stays out of commands that run in process (a cold ``dugray cutout``)."""
    client = sys.modules.get("dugray.client")
    return getattr(client, name) if client is not None else _NotRaised


def build_parser() -> argparse.ArgumentParser:
    """The ``dugray`` parser: cutout, interactive, batch and serve (eval and train are listed for --help;
    :func:`main` dispatches them before parsing).
    """
    p = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    cutout.add_cutout_parser(sub)
    interactive.add_parser(sub)
    cutout.add_batch_parser(sub)
    server.add_parser(sub)
    job_help = {
        "eval": "the paper's tables with a simulated user (= jobs/evaluate.py)",
        "train": "both training stages on Ray Train (= jobs/train.py)",
        "pretrained": "fetch pretrained weights (u2netp) into the cache, checked by sha256",
    }
    for name in JOBS:  # dispatched before parsing (see main); listed here for --help
        sub.add_parser(name, add_help=False, help=f"{job_help[name]}; 'dugray {name} --help'")
    return p


def run_job(name: str, argv: list[str]) -> int:
    """The job's own ``main(argv)`` (its flags, its exit codes), named ``dugray NAME`` in its messages."""
    import importlib

    job = importlib.import_module(JOBS[name])
    return int(job.main(argv, prog=f"{PROG} {name}") or 0)
