"""The ``dugray`` command (``dugray.cli:main``): one module per command, the parser in ``command``.

command.py      main(argv) -> exit code, the parser, eval/train dispatched to their jobs
common.py       exit codes, UsageError, keys, the model and session flags, output files
cutout.py       dugray cutout (here or on a server), dugray batch (Ray Data)
interactive.py  dugray interactive (terminal rounds, or --web on a server's page)
server.py       dugray serve (ready when /v1/health says so, SIGTERM/SIGINT drain)

The modules import at their top only what every command needs (the standard library and light
dugray modules); a command's own modules (the session and torch, OpenCV, requests, Ray, ``serve``)
are imported inside the function that runs it, so ``dugray --help`` and a cold ``dugray cutout``
load only what they use.
"""

from dugray.cli.command import build_parser, main
from dugray.cli.common import UsageError
from dugray.cli.interactive import parse_labels

__all__ = ["UsageError", "build_parser", "main", "parse_labels"]
