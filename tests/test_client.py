"""dugray.client and the CLI's --server paths against a real app started by ``dugray serve``.

One module-scoped server (its own local Ray, 2 CPUs, a tiny checkpoint written here) runs
in a subprocess on a free loopback port; the last test stops it with SIGTERM and checks
that it stops cleanly (tests/clean_stop.py).
"""

import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import requests
from app_on_loopback import free_port
from clean_stop import assert_stops_cleanly_on

from dugray.cli import main
from dugray.client import (
    DugrayApiError,
    DugrayClient,
    Proposal,
    ServerUnreachable,
    SessionView,
)

pytestmark = pytest.mark.slow
H, W = 40, 56


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "dugray.cli",
        "serve",
        "--port",
        str(port),
        "--cpus",
        "2",
        "--model",
        tiny_model,
        "--set",
        "torch_threads=1",
        "--set",
        "max_sessions=8",
        "--set",
        f"session_storage={tmp_path_factory.mktemp('sessions')}",
    ]  # not the user's ~/.cache
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/v1/health", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"dugray serve did not come up (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
    yield {"url": url, "proc": proc, "log": log}
    if proc.poll() is None:  # a test failed before the stop test: stop the server and its Ray
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def api(server):
    with DugrayClient(server["url"], timeout=120) as client:
        yield client


def picture() -> np.ndarray:
    """RGB uint8: a bright disc on a noisy background."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 90, (H, W, 3), dtype=np.uint8)
    cv2.circle(img, (W // 2, H // 2), H // 3, (40, 200, 230), -1)
    return img


def decode(png: bytes) -> np.ndarray:
    out = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert out is not None, "not a PNG"
    return out


def test_health(api):
    assert api.health()["status"] == "ok"


def test_a_session_from_create_to_delete(api, tmp_path):
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), cv2.cvtColor(picture(), cv2.COLOR_RGB2BGR))
    s = api.create_session(path)
    assert isinstance(s, SessionView) and (s.width, s.height, s.round, s.labels, s.refined) == (W, H, 1, 0, False)
    assert s.proposals and all(isinstance(p, Proposal) and len(p.box) == 4 for p in s.proposals)
    assert set(s.uncertainty) == {"epistemic_mean", "aleatoric_mean"}
    first_alpha = api.png(s.id, "alpha")
    s = api.label(s.id, [(0, "fg"), ((0, 0, 10, 10), "bg")])
    assert (s.round, s.labels) == (2, 2)
    undone = api.undo(s.id)
    assert (undone.round, undone.labels) == (1, 0) and api.png(s.id, "alpha") == first_alpha
    with pytest.raises(DugrayApiError) as err:
        api.undo(s.id)
    assert (err.value.status, err.value.error) == (409, "nothing to undo")
    s = api.label(s.id, [(0, "fg"), ((0, 0, 10, 10), "bg")])
    assert (s.round, s.labels) == (2, 2)
    assert api.refine(s.id).refined and api.get(s.id).round == 2
    shapes = {out: decode(api.png(s.id, out)).shape for out in ("alpha", "cutout", "epistemic", "aleatoric")}
    assert shapes == {"alpha": (H, W), "cutout": (H, W, 4), "epistemic": (H, W, 3), "aleatoric": (H, W, 3)}
    assert np.array_equal(decode(api.png(s.id, "image")), cv2.imread(str(path)))  # the input, as uploaded
    api.delete(s.id)
    with pytest.raises(DugrayApiError) as err:
        api.get(s.id)
    assert (err.value.status, err.value.error, err.value.detail) == (404, "unknown session", s.id)


def test_arrays_and_a_mask_pin_the_matte(api):
    """A mask labels every pixel, and labels are enforced: the alpha is the mask."""
    mask = np.zeros((H, W), np.uint8)
    mask[5:30, 10:40] = 255
    s = api.create_session(picture(), mask=mask)
    assert np.array_equal(decode(api.png(s.id, "alpha")), mask)
    api.delete(s.id)
    assert np.array_equal(decode(api.cutout(picture(), output="alpha", mask=mask)), mask)
    png = cv2.imencode(".png", picture())[1].tobytes()  # bytes of a file go up as they are
    assert decode(api.cutout(png)).shape == (H, W, 4)


def test_refusals_are_typed(api):
    with pytest.raises(DugrayApiError) as err:
        api.create_session(b"not an image")
    assert err.value.status == 415 and "unsupported or unreadable image format" in err.value.error
    s = api.create_session(picture())
    with pytest.raises(DugrayApiError) as err:
        api.label(s.id, [(999, "fg")])
    assert err.value.status == 422 and "out of range" in str(err.value.detail)
    with pytest.raises(ValueError):
        api.png(s.id, "jpeg")
    with pytest.raises(ServerUnreachable):
        DugrayClient(f"http://127.0.0.1:{free_port()}", timeout=5).health()


def test_cli_through_the_server(server, tmp_path, capsys):
    image = tmp_path / "p.png"
    cv2.imwrite(str(image), picture())
    assert main(["cutout", str(image), "-o", str(tmp_path / "c.png"), "--server", server["url"]]) == 0
    assert decode((tmp_path / "c.png").read_bytes()).shape == (H, W, 4)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    assert main(["cutout", str(bad), "--server", server["url"]]) == 2
    assert "server: 415 image: unsupported or unreadable image format" in capsys.readouterr().err
    mask = np.zeros((H, W), np.uint8)
    mask[5:30, 10:40] = 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    argv = [
        "interactive",
        str(image),
        "--web",
        "--server",
        server["url"] + "/",
        "--no-browser",
        "--mask",
        str(tmp_path / "m.png"),
    ]
    assert main(argv) == 0  # round 1 there, with the mask; the page to label it printed (and opened without the flag)
    page = re.search(r"label them at (\S+)", capsys.readouterr().out).group(1)
    sid = page.removeprefix(f"{server['url']}/?session=")
    assert re.fullmatch("[0-9a-f]{32}", sid), page
    with DugrayClient(server["url"]) as api:
        s = api.get(sid)
        assert (s.width, s.height, s.round) == (W, H, 1) and np.array_equal(decode(api.png(sid, "alpha")), mask)
    down = f"http://127.0.0.1:{free_port()}"
    assert main(["interactive", str(image), "--web", "--server", down, "--no-browser"]) == 3


def test_serve_command_stops_cleanly_on_sigterm(server):
    """Last in the module: the server printed its URL, and on SIGTERM (a process manager) finishes the
    request in flight, shuts Serve and Ray down and exits 0 with nothing left (SIGINT, Ctrl-C to the
    process group: tests/test_wheel.py's server)."""
    out = assert_stops_cleanly_on("SIGTERM", server["proc"], server["url"], server["log"])
    assert f"dugray is serving {server['url']}" in out
