"""The built wheel, installed in a fresh venv, runs the front door from outside the checkout.

The fresh venv gets only the wheel (``--no-deps``); the dependencies (torch, Ray, ...) are
borrowed from this test's environment through a ``.pth`` line, so nothing is downloaded,
and the editable checkout is NOT importable there (its finder is never activated): every
import must come from the wheel.
"""

import os
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from app_on_loopback import free_port
from clean_stop import assert_stops_cleanly_on

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder of a fresh venv holding only the dugray wheel, the wheel's file names)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp / "dist").glob("dugray-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "borrowed_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    return venv / "bin", names


def outside_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV")}
    return env


def run(cmd, cwd, timeout=300):
    return subprocess.run(
        list(map(str, cmd)), cwd=cwd, env=outside_env(), capture_output=True, text=True, timeout=timeout
    )


def test_the_wheel_holds_the_server_its_page_and_the_weights_and_not_the_benchmarks(installed):
    _, names = installed
    for name in (
        "serve/app.py",
        "serve/static/index.html",
        "serve/static/app.js",
        "serve/config.yaml",
        "dugray/weights/matting.pt",
        "dugray/weights/refiner.pt",
        "dugray/train/train_job.py",
        "dugray/evaluation/evaluate_job.py",
    ):
        assert name in names, name
    # the benchmarks, soak and GPU smoke live under jobs/ (jobs/benchmarks/), not in the installed package
    assert not [n for n in names if n.startswith(("dugray/benchmarks/", "jobs/", "benchmarks/"))]


def test_imports_come_from_the_wheel_not_the_checkout(installed, tmp_path):
    bin_dir, _ = installed
    proc = run(
        [bin_dir / "python", "-c", "import dugray, serve.app; print(dugray.__file__); print(serve.app.__file__)"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in proc.stdout.split():
        assert str(bin_dir.parent) in line and str(ROOT) not in line


def test_cutout_and_eval_help_outside_the_checkout(installed, tmp_path):
    bin_dir, _ = installed
    rng = np.random.default_rng(0)
    image = np.full((64, 80, 3), 40, np.uint8)
    image[16:48, 20:60] = (220, 200, 60)
    cv2.imwrite(str(tmp_path / "photo.png"), image + rng.integers(0, 8, image.shape, dtype=np.uint8))
    proc = run([bin_dir / "dugray", "cutout", "photo.png", "-o", "cut.png"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cut = cv2.imread(str(tmp_path / "cut.png"), cv2.IMREAD_UNCHANGED)
    assert cut.shape == (64, 80, 4)
    proc = run([bin_dir / "dugray", "eval", "--help"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: dugray eval"), proc.stderr[-2000:]
    proc = run([bin_dir / "dugray", "train", "--help"], tmp_path)
    assert proc.returncode == 0 and "--arch" in proc.stdout, proc.stderr[-2000:]


def test_serve_answers_health_outside_the_checkout_and_stops_cleanly_on_ctrl_c(installed, tmp_path):
    """The wheel's ``dugray serve`` comes up, serves its page, and on Ctrl-C (SIGINT to its process
    group) finishes the request in flight and stops with nothing left (tests/clean_stop.py; SIGTERM:
    tests/test_client.py's server)."""
    bin_dir, _ = installed
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [
            str(bin_dir / "dugray"),
            "serve",
            "--port",
            str(port),
            "--cpus",
            "2",
            "--set",
            f"session_storage={tmp_path / 'sessions'}",
        ],
        cwd=tmp_path,
        env=outside_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, health = time.monotonic() + 240, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"{url}/v1/health", timeout=10)
                if health.ok:
                    break
            except requests.RequestException:  # not listening yet, or the app not deployed yet
                pass
            time.sleep(2)
        assert health is not None and health.ok, (tmp_path / "serve.log").read_text()[-3000:]
        assert health.json()["status"] == "ok"
        page = requests.get(f"{url}/", timeout=10)
        assert page.ok and "<html" in page.text.lower()  # the page ships in the wheel too
        assert_stops_cleanly_on("SIGINT", proc, url, tmp_path / "serve.log")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
