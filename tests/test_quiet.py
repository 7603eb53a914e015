"""Quiet commands: nothing printed over `dugray batch`'s progress bar, a training job's lines
written once, and no DDP stride warning from our networks' layout."""

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
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


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
    proc = python(
        """
        import sys
        from dugray.cli.quiet import libraries_to_a_file
        with libraries_to_a_file(sys.argv[1]) as bar:
            pass
    """,
        str(tmp_path),
    )
    assert proc.returncode == 0 and proc.stderr == "" and list(tmp_path.iterdir()) == []


def test_a_worker_line_is_written_once_under_ray_trains_print():
    """Ray Train v2 patches print() in its workers (logger + stdout when sys.stdout was swapped, as
    Ray's workers do): a print()ed epoch line came out twice; say() writes it once."""
    proc = python(
        """
        import logging, sys
        sys.stdout = open(sys.stdout.fileno(), "w", closefd=False)   # what Ray's default_worker does
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")  # Train's worker logger
        from ray.train.v2._internal.logging.patch_print import patch_print_function
        from dugray.train.worker import epoch_line, say

        patch_print_function()
        line = epoch_line("1", 1, 4, {"train_total": 0.123456, "val_sad_free": 8.0})
        print("printed " + line)
        say(line)
    """,
        env={k: v for k, v in os.environ.items() if k != "RAY_TRAIN_ENABLE_PRINT_PATCH"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    line = "[stage 1] epoch 2/4 train_total=0.1235 val_sad_free=8"
    assert lines.count("printed " + line) == 2  # Ray's patch as found: the reason for say()
    assert lines.count(line) == 1


@pytest.mark.parametrize("arch", ["refiner", "unet", "u2netp"])
def test_every_gradient_has_its_weights_strides_as_ddp_requires(arch):
    """DDP's bucket views take each weight's strides; a gradient with other strides gives "Grad
    strides do not match bucket view strides". Our networks run NHWC: their weights must too."""
    import torch

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # one thread (a parallel test worker's) computes those gradients in NHWC anyway
    try:
        check_strides(arch)
    finally:
        torch.set_num_threads(threads)


def check_strides(arch: str) -> None:
    import torch

    from dugray.models import create_model, create_refiner
    from dugray.train.worker import in_activation_layout

    if arch == "refiner":
        net, inputs = create_refiner("hrnet_lite"), (torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32))
    else:
        net = create_model(arch, **({"widths": (8, 16, 32), "head_mid": 4} if arch == "unet" else {}))
        inputs = (torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64))

    def mismatched(net) -> list[str]:
        net.zero_grad(set_to_none=True)
        out = net(*inputs)
        sum(t.float().mean() for t in (out if isinstance(out, tuple) else (out,))).backward()
        return [n for n, p in net.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()]

    assert mismatched(net)  # NCHW weights under NHWC activations: the warning's cause
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    net = in_activation_layout(net)
    assert mismatched(net) == []
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())  # same weights, other layout


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
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dugray.cli",
            "batch",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--engine",
            "ray",
            "--model",
            tiny_model,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    engine, counts = proc.stdout.splitlines()[:2]  # which engine and why, then the counts: our two lines
    assert engine == "engine: ray (as asked)" and counts.startswith("2 done, 0 skipped (already done), 0 failed in ")
    states = [s for s in re.split(r"[\r\n]+", proc.stderr) if s.strip()]
    assert states and all(re.fullmatch(BAR, s.strip()) for s in states), states
    assert re.fullmatch(BAR, states[-1].strip()) and "2/2" in states[-1]
    log = tmp_path / "out" / "batch.log"
    assert not log.exists() or log.read_text().strip()  # kept only when Ray said something
