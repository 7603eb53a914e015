"""Quiet commands: nothing printed over `dugray batch`'s progress bar."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BAR = r"matting: +\d{1,3}%\|[^|]*\| \d+/2 \[[^\]]*\]"
"""One state of the batch's tqdm bar (2 images): the only thing its stderr may show."""


def python(code: str, *args, env=None) -> subprocess.CompletedProcess:
    env = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


LIBRARIES = """
    import logging, os, sys
    from dugray.cli.quiet import libraries_to_a_file

    with libraries_to_a_file(sys.argv[1], verbose=sys.argv[2] == "-v") as bar:
        os.write(2, b"[E core_worker.cc] a native line\\n")       # what Ray's C++ driver writes
        logging.getLogger("ray.data").warning("a Python line")   # a library's logger (lastResort: sys.stderr)
        print("the bar", file=bar or sys.stderr, flush=True)
        if sys.argv[3] == "raise":
            raise RuntimeError("the run failed")
    print("our summary", file=sys.stderr)
"""


def test_what_libraries_print_goes_to_the_log_and_the_bar_keeps_the_terminal(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = python(LIBRARIES, str(out), "", "")
    assert proc.returncode == 0 and proc.stderr == "the bar\nour summary\n"
    assert (out / "batch.log").read_text() == "[E core_worker.cc] a native line\na Python line\n"

    loud = python(LIBRARIES, str(tmp_path / "loud"), "-v", "")  # --verbose: everything on the terminal, no file
    assert loud.stderr.splitlines() == ["[E core_worker.cc] a native line", "a Python line", "the bar", "our summary"]
    assert not (tmp_path / "loud").exists()


def test_a_failed_run_says_where_the_libraries_lines_are(tmp_path):
    proc = python(LIBRARIES, str(tmp_path / "out"), "", "raise")  # OUT_DIR never made: the log stays in /tmp
    first, log = proc.stderr.splitlines()[:2]
    assert proc.returncode == 1 and first == "the bar" and "RuntimeError: the run failed" in proc.stderr
    path = Path(log.rsplit(": ", 1)[1])
    assert log.startswith("dugray: what Ray and the libraries printed during the run: ") and path.is_file()
    assert "a native line" in path.read_text()
    path.unlink()


def test_nothing_printed_leaves_no_log(tmp_path):
    proc = python("""
        import sys
        from dugray.cli.quiet import libraries_to_a_file
        with libraries_to_a_file(sys.argv[1]) as bar:
            pass
    """, str(tmp_path))
    assert proc.returncode == 0 and proc.stderr == "" and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_batch_on_ray_shows_only_the_progress_bar(tiny_model, tmp_path):
    """`dugray batch --engine ray` as a user runs it (a private local Ray, no RAY_* set): stderr is
    the bar and nothing else; what Ray printed is in OUT/batch.log."""
    import re

    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i in range(2):
        img = rng.integers(0, 90, (48, 64, 3), dtype=np.uint8)
        cv2.circle(img, (32, 24), 12, (40, 200, 230), -1)
        cv2.imwrite(str(tmp_path / "in" / f"im{i}.png"), img)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "dugray.cli", "batch", str(tmp_path / "in"), str(tmp_path / "out"),
                           "--engine", "ray", "--model", tiny_model], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("2 done, 0 skipped (already done), 0 failed in ")
    states = [s for s in re.split(r"[\r\n]+", proc.stderr) if s.strip()]
    assert states and all(re.fullmatch(BAR, s.strip()) for s in states), states
    assert re.fullmatch(BAR, states[-1].strip()) and "2/2" in states[-1]
    log = tmp_path / "out" / "batch.log"
    assert not log.exists() or log.read_text().strip()  # kept only when Ray said something
