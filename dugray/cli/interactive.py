"""``dugray interactive``: label proposals and clicks round by round in the terminal, or on the web page."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from dugray.cli.common import (
    EXIT_CODES,
    EXIT_OK,
    UsageError,
    add_model,
    add_prior,
    add_server_flags,
    client_key,
    local_file,
    no_key_on_the_command_line,
    open_session,
    out_path,
    server_side_model,
    write,
)
from dugray.cli.server import serve_until_stopped, start_server, stop_server

LABEL_HELP = """labels: one or more of INDEX+LABEL (a proposal), y,x=LABEL (a click at that pixel) or
y0,x0,y1,x1:LABEL (a box) separated by spaces, where LABEL is f(g), b(g), t(ransition) or
u(nknown, erases); e.g. '0f 1b 2t', '120,340=bg' or '10,20,40,60:bg'. Each line is one round.
'z' (or 'undo') goes back to the round before, 'done' (or end of input) finishes, 'help' repeats this."""

LABELS = {
    "f": "fg",
    "fg": "fg",
    "b": "bg",
    "bg": "bg",
    "t": "transition",
    "transition": "transition",
    "u": "unknown",
    "unknown": "unknown",
}
LABEL_TOKEN = re.compile(r"(\d+(?:,\d+){3}|\d+,\d+|\d+)[:=]?([a-z]+)")

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


def add_parser(sub) -> None:
    """The ``interactive`` subcommand's flags."""
    i = sub.add_parser(
        "interactive",
        help="label the model's proposals in the terminal (or the web page)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=INTERACTIVE_DOC + "\n\n" + LABEL_HELP + "\n\n" + EXIT_CODES,
    )
    i.add_argument("image", help="image file or URI")
    i.add_argument("-o", "--out", help="output .png written when you finish (default: IMAGE's name + _cutout.png)")
    add_prior(i)
    i.add_argument("--alpha-only", action="store_true", help="write the alpha matte instead of the RGBA cut-out")
    i.add_argument(
        "--preview",
        metavar="PNG",
        help="after every round, write the image with the numbered proposals "
        "beside the current matte here (open it in an image viewer that reloads)",
    )
    i.add_argument(
        "--web",
        action="store_true",
        help="start the session on a server instead (a local one unless "
        "--server is given) and label it on the web page there",
    )
    i.add_argument("--server", metavar="URL", help="with --web: the server to use")
    i.add_argument("--no-browser", action="store_true", help="with --web: only print the URL, do not open a browser")
    add_model(i, one_shot=False)
    add_server_flags(i)
    i.set_defaults(func=cmd_interactive)


def cmd_interactive(args) -> int:
    """``dugray interactive``: round 1, then labels read from stdin round by round until 'done', then
    the (refined) result written; with --web the rounds happen on the server's web page instead.
    """
    if args.web:
        return _interactive_web(args)
    if args.server:
        raise UsageError("--server goes with --web; the terminal rounds run in this process")
    out = out_path(args.out, args.image, "alpha" if args.alpha_only else "cutout")
    t0 = time.perf_counter()
    session = open_session(args)
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
        if line in ("z", "undo"):
            _undo(session, args.preview)
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
    write(out, session.render("alpha" if args.alpha_only else "cutout"))
    labels = len(session.state.label_log)
    print(f"wrote {out} after {session.rounds} round(s), {labels} label(s){', refined' if args.refine else ''}")
    return EXIT_OK


def _undo(session, preview: str | None) -> None:
    """The 'z' key: back to the round before (its proposals listed again), or why not."""
    from dugray.session import NothingToUndo

    t = time.perf_counter()
    try:
        session.undo()
    except NothingToUndo as exc:
        print(f"  not undone: {exc}", file=sys.stderr)
        return
    print(f"back to round {session.rounds} in {time.perf_counter() - t:.1f} s")
    _show_round(session, preview)


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
    print(
        f"  mean epistemic {r['epistemic_mean']:.4f}, aleatoric {r['aleatoric_mean']:.4f}; "
        f"{len(session.proposals)} proposals (box y0,x0,y1,x1 in pixels):"
    )
    info = session.state.solve_info
    if info:
        kept = "" if info["guard"] == "ok" else f"; guard kept the network's matte ({info['guard']})"
        print(f"  solve: {info['band_fraction']:.0%} of the image solved in {info['seconds']:.2f} s{kept}")
    for i, p in enumerate(session.proposals):
        print(f"  {i:3d}  {','.join(map(str, p.box)):>22}  score {p.score:.4f}")
    if preview:
        write(Path(preview).expanduser(), _preview(session))


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
    return encode_png(
        strip([image, grey(session.alpha)], ["proposals", f"matte, round {session.rounds}"], height=height)
    )


def _interactive_web(args) -> int:
    """Round 1 of IMAGE on a server (a local one unless --server), then its web page at URL/?session=ID."""
    if args.out or args.alpha_only or args.preview:
        raise UsageError(
            "-o, --alpha-only and --preview are for the terminal rounds; with --web, download from the page"
        )
    if args.server:
        server_side_model(args)
    image, trimap, mask = local_file(args.image), local_file(args.trimap), local_file(args.mask)
    no_key_on_the_command_line(args)
    url = (args.server or start_server(args)).rstrip("/")
    from dugray.client import DugrayClient

    t0 = time.perf_counter()
    try:
        with DugrayClient(url, api_key=client_key(args)) as api:
            view = api.create_session(image, trimap=trimap, mask=mask, solve=args.solve)
    except BaseException:
        if not args.server:
            stop_server()
        raise
    page = f"{url}/?session={view.id}"
    print(
        f"{args.image}: {view.width}x{view.height}, round 1 in {time.perf_counter() - t0:.1f} s, "
        f"{len(view.proposals)} proposals; label them at {page}",
        flush=True,
    )
    if not args.no_browser:
        import webbrowser

        webbrowser.open(page)
    return EXIT_OK if args.server else serve_until_stopped()
