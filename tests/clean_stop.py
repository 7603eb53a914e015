"""How a running ``dugray serve`` must stop, checked in one place: the tests that already start one
(tests/test_client.py's module server, tests/test_wheel.py's server from the wheel) end it with a
signal and call this, so no test starts a server only to stop it (a cold start is most of a minute
on 2 shared cores)."""

import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import requests

CRASHES = ("Traceback", "Check failed", "*** SIG", "core dumped", "Aborted")


def picture(h=240, w=320) -> bytes:
    """A PNG big enough that a matte of it is still running when the signal arrives."""
    img = np.random.default_rng(0).integers(0, 90, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (230, 200, 40), -1)
    return cv2.imencode(".png", img)[1].tobytes()


def session_processes(sid: int) -> list[int]:
    """Processes of the session ``sid`` (a process started with start_new_session and its children)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after pid (comm): state, ppid, pgrp, session
            out.append(int(stat.parent.name))
    return out


def assert_stops_cleanly_on(name: str, proc, url: str, log: Path) -> str:
    """Send ``name`` the way it comes in real life to the ``dugray serve`` process ``proc`` (started with
    start_new_session, serving ``url``, writing its output to ``log``) while a matte is in flight:
    SIGTERM to the process (a process manager), SIGINT to its process group (Ctrl-C in a terminal).
    The request in flight is answered, Serve and Ray shut down, exit 0, no crash trace from the
    signal on, no process left. Returns the server's output.

    Crash traces are looked for in what the server wrote after the signal: under load, Ray Serve's
    router may log a cancelled queue-length probe ("Task exception was never retrieved ...
    TaskCancelledError") while the replicas start, which is no part of stopping (seen once in CI)."""
    slow = {}
    before = len(log.read_text())
    inflight = threading.Thread(
        target=lambda: slow.update(
            r=requests.post(url + "/v1/matte", files={"image": ("p.png", picture())}, timeout=300)
        )
    )
    inflight.start()
    time.sleep(0.5)
    sig = getattr(signal, name)
    os.kill(proc.pid, sig) if name == "SIGTERM" else os.killpg(proc.pid, sig)
    try:
        rc = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    inflight.join(300)
    out = log.read_text()
    assert rc == 0 and "stopping" in out and "stopped" in out, out[-3000:]
    for crash in CRASHES:
        assert crash not in out[before:], out[before:][-3000:]
    assert slow["r"].status_code == 200  # the request in flight was answered, not cut
    time.sleep(3)
    assert session_processes(proc.pid) == [], "processes left behind"
    return out
