"""Soak test: the app on loopback under sustained mixed load, for a bounded time.

    python jobs/soak_serve.py --seconds 900 --clients 4          # the figures in docs/evaluation.md
    python jobs/soak_serve.py --seconds 60 --clients 2 --json r.json

Starts a private local Ray and the app (API keys on, one key per client, sessions on a
temporary storage folder), then ``--clients`` threads, each in a loop until the time is up:

- one-shot cutouts (``POST /v1/matte``),
- labelling sessions: create, 2 label rounds, read, fetch the cutout, delete,
- a share (``--bad-share``) of bad requests: garbage bytes, a decompression bomb, an
  oversized JSON body (declared and streamed), a wrong key, an unknown session, and those
  of issue 23: a JSON body with two Content-Types, a multipart part header of 480 kB, a PNM
  whose comment ends in CR (a bomb to OpenCV), a TIFF that gives its width twice, a JPEG
  with thousands of scans, the API schema without a key; and those of issue 30: a TIFF
  whose one tile is 16368x16368 for 8x8 pixels, a PNG with 400 MiB of deflated zeros after
  its rows, a JPEG of 4 MiB of fill bytes, 65 labels in one request.

A watcher polls ``GET /v1/health`` every second meanwhile (what a load balancer does).

It reports requests per second, p50 / p95 / p99 latency per kind, the status counts, the
5xx count, lost sessions (a 404 or a changed round on a session this client made and has
not deleted), and the resident memory (VmRSS) of every replica sampled over time: at the
end against its value after the first minute. Exit code 0 when there was no 5xx and no
lost session (and, for runs of 2 minutes or more, no replica of the app grew by more than
``--max-growth`` (Ray's proxy and controller are reported, not bounded) and the health checks'
p99 stayed under ``--max-health-p99``), else 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import requests

from dugray.data.synthetic import generate_sample
from serve.memory import set_malloc_env

from .hostile import BAD
from .hostile import auth as _auth

PROG = "soak_serve.py"


def picture(seed: int, size: int) -> bytes:
    """A synthetic matting photo (hair, veils, holes) as PNG bytes."""
    s = generate_sample(seed, size=size, seed=seed)
    return cv2.imencode(".png", cv2.cvtColor(s["image"], cv2.COLOR_RGB2BGR))[1].tobytes()


class Recorder:
    """Latencies and statuses of every request, by kind (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency = defaultdict(list)
        self.status = Counter()
        self.lost: list[str] = []
        self.errors: list[str] = []

    def record(self, kind: str, seconds: float, status: int) -> None:
        """One answered request."""
        with self.lock:
            self.latency[kind].append(seconds)
            self.status[status] += 1

    def timed(self, kind: str, call):
        """Run ``call()`` (a request), record it, return the response."""
        t = time.perf_counter()
        r = call()
        self.record(kind, time.perf_counter() - t, r.status_code)
        if r.status_code >= 500:
            with self.lock:
                self.errors.append(f"{kind}: {r.status_code} {r.text[:200]}")
        return r


def client_loop(
    url: str,
    key: str,
    deadline: float,
    rec: Recorder,
    rng: random.Random,
    images: list[bytes],
    bad_share: float,
    turns: Iterator[int],
) -> None:
    """One simulated user until ``deadline``: one-shots, labelling sessions and bad requests.

    ``turns`` is shared by every client: the kinds of bad request go in turn across all of them,
    so the first len(BAD) bad requests of a run cover every kind, however the clients' shares fall
    (with a turn per client, two clients starting at random kinds could miss one in a short run)."""
    while time.monotonic() < deadline:
        roll = rng.random()
        image = rng.choice(images)
        try:
            if roll < bad_share:
                name = sorted(BAD)[next(turns) % len(BAD)]  # every kind in turn (itertools.count: thread-safe)
                try:
                    rec.timed(f"bad: {name}", lambda name=name: BAD[name](url, key))
                except requests.ConnectionError:  # refused before the body was read: the server may close
                    rec.record(f"bad: {name}", 0.0, 499)  # the connection under a client still sending
            elif roll < bad_share + 0.35:
                rec.timed(
                    "one-shot",
                    lambda image=image: requests.post(
                        f"{url}/v1/matte", files={"image": ("p.png", image)}, headers=_auth(key), timeout=120
                    ),
                )
            else:
                session(url, key, rec, rng, image)
        except requests.RequestException as exc:  # a connection the server dropped is a failure too
            rec.record("connection", 0.0, 599)
            with rec.lock:
                rec.errors.append(f"connection: {exc}")


def session(url: str, key: str, rec: Recorder, rng: random.Random, image: bytes) -> None:
    """Create, label twice, read, fetch the cutout, delete; a 404 or a wrong round is a lost session."""
    r = rec.timed(
        "create",
        lambda: requests.post(f"{url}/v1/sessions", files={"image": ("p.png", image)}, headers=_auth(key), timeout=120),
    )
    if r.status_code != 201:
        return
    view = r.json()
    try:
        _label_and_read(url, key, rec, rng, view)
    finally:
        rec.timed("delete", lambda: requests.delete(f"{url}/v1/sessions/{view['id']}", headers=_auth(key), timeout=60))


def _label_and_read(url: str, key: str, rec: Recorder, rng: random.Random, view: dict) -> None:
    for expected_round in (2, 3):
        n = len(view["proposals"])
        labels = [{"index": i, "label": rng.choice(["fg", "bg", "transition"])} for i in range(min(2, n))]
        labels = labels or [{"box": [0, 0, 4, 4], "label": "bg"}]
        for _ in range(5):  # a 429 (rate limit) is waited out, as a client should
            r = rec.timed(
                "label",
                lambda view=view, labels=labels: requests.post(
                    f"{url}/v1/sessions/{view['id']}/labels", json={"labels": labels}, headers=_auth(key), timeout=120
                ),
            )
            if r.status_code != 429:
                break
            time.sleep(float(r.headers.get("retry-after", 1)))
        if r.status_code != 200 or r.json()["round"] != expected_round:
            with rec.lock:
                rec.lost.append(f"{view['id']}: label -> {r.status_code} {r.text[:120]}")
            return
        view = r.json()
    got = rec.timed("get", lambda: requests.get(f"{url}/v1/sessions/{view['id']}", headers=_auth(key), timeout=60))
    if got.status_code != 200 or got.json()["round"] != view["round"]:
        with rec.lock:
            rec.lost.append(f"{view['id']}: get -> {got.status_code}")
    rec.timed(
        "cutout png",
        lambda: requests.get(f"{url}/v1/sessions/{view['id']}/cutout.png", headers=_auth(key), timeout=120),
    )


SERVE_PROCESSES = ("ray::ServeReplica:", "ray::ProxyActor", "ray::ServeController")


def replica_memory() -> dict[str, int]:
    """Resident bytes of every Serve process on this machine (replicas, the HTTP proxy, the
    controller), by name and pid, read from /proc (Ray names its worker processes ``ray::...``)."""
    out = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not title.startswith(SERVE_PROCESSES):
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), None)
        if kb is not None:
            name = title.split()[0].removeprefix("ray::").removeprefix("ServeReplica:").split(".")[0]  # not the method
            out[f"{name}#{proc.name}"] = kb * 1024
    return out


def health_watch(url: str, stop: threading.Event, rec: Recorder) -> None:
    """``GET /v1/health`` every second until ``stop``, recorded as kind "health" (a 503 there is a failure)."""
    while not stop.is_set():
        try:
            rec.timed("health", lambda: requests.get(f"{url}/v1/health", timeout=30))
        except requests.RequestException as exc:
            rec.record("health", 30.0, 599)
            with rec.lock:
                rec.errors.append(f"health: {exc}")
        stop.wait(1.0)


def sampler(stop: threading.Event, every: float, t0: float, samples: list) -> None:
    """Append (seconds since start, {replica: bytes}) every ``every`` seconds until ``stop``."""
    while not stop.is_set():
        try:
            samples.append((time.monotonic() - t0, replica_memory()))
        except Exception as exc:  # noqa: BLE001 - a sample lost is not a failure of the app
            print(f"{PROG}: memory sample failed: {exc}", file=sys.stderr)
        stop.wait(every)


def memory_table(samples: list, mark_s: float) -> dict:
    """Per replica: bytes at the sample nearest ``mark_s``, at the end, their ratio, and the peak."""
    if not samples:
        return {}
    mark = min(samples, key=lambda s: abs(s[0] - mark_s))[1]
    end = samples[-1][1]
    table = {}
    for name in sorted(set(mark) | set(end)):
        series = [s[1][name] for s in samples if name in s[1]]
        first, last = mark.get(name), end.get(name)
        minutes = {}
        for t, values in samples:  # one value per minute: the shape of the curve (growing or flat)
            if name in values:
                minutes.setdefault(int(t // 60), _mb(values[name]))
        table[name] = {
            "at_mark_mb": _mb(first),
            "end_mb": _mb(last),
            "peak_mb": _mb(max(series)),
            "end_over_mark": round(last / first, 3) if first and last else None,
            "per_minute_mb": list(minutes.values()),
        }
    return table


def _mb(b):
    return None if b is None else round(b / 2**20, 1)


def percentiles(xs: list[float]) -> dict:
    """p50 / p95 / p99 in seconds (None when nothing was measured)."""
    if not xs:
        return {"n": 0}
    q = np.percentile(np.asarray(xs), [50, 95, 99])
    return {
        "n": len(xs),
        "p50_s": round(float(q[0]), 3),
        "p95_s": round(float(q[1]), 3),
        "p99_s": round(float(q[2]), 3),
    }


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model URI (default: the shipped one)")
    p.add_argument("--seconds", type=float, default=900, help="how long the load runs (default 900)")
    p.add_argument("--clients", type=int, default=4, help="concurrent simulated users (default 4)")
    p.add_argument("--bad-share", type=float, default=0.15, help="share of bad requests (default 0.15)")
    p.add_argument("--size", type=int, default=320, help="side of the synthetic photos (default 320)")
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray")
    p.add_argument("--sample-s", type=float, default=5.0, help="memory sampling period (default 5 s)")
    p.add_argument("--mark-s", type=float, default=60.0, help="the reference memory sample's time (default 60 s)")
    p.add_argument("--max-growth", type=float, default=1.10, help="end / mark memory bound per replica (default 1.10)")
    p.add_argument(
        "--max-health-p99", type=float, default=0.5, help="bound on the p99 of GET /v1/health (default 0.5 s)"
    )
    p.add_argument("--no-keys", action="store_true", help="run the server without API keys (clients send none)")
    p.add_argument("--json", help="write the report here too")
    p.add_argument("--seed", type=int, default=0)
    return p


def start_app(args, keys: list[str], prog: str = PROG) -> str:
    """Ray, Serve and the app on a free local port, keys on unless --no-keys; its URL."""
    # the server's side only here: Ray and Serve (serve.app imports both), FastAPI (serve.access) and
    # torch (.serving); the rest of the module is an HTTP client, which the tests import for its report
    import ray
    from ray import serve

    from serve.access import set_proxy_env
    from serve.app import build

    from .serving import free_port

    port = free_port()
    storage = tempfile.mkdtemp(prefix="dugray-soak-")
    set_malloc_env()  # Ray's workers (the HTTP proxy included) inherit it
    set_proxy_env()  # as dugray serve: the proxy believes no X-Forwarded-For
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    t = time.perf_counter()
    serve.run(
        build(
            {
                "model": args.model,
                "torch_threads": 1,
                "api_keys": [] if args.no_keys else keys,
                "rate_limit_per_s": 0 if args.no_keys else 20.0,
                "session_storage": storage,
                "max_sessions_per_owner": 4,
            }
        ),
        name="dugray-soak",
        route_prefix="/",
    )
    url = f"http://127.0.0.1:{port}"
    print(
        f"{prog}: app ready in {time.perf_counter() - t:.0f} s at {url}; {args.clients} clients for {args.seconds:g} s",
        flush=True,
    )
    return url


def drive(url: str, keys: list[str], args) -> tuple:
    """Every client's loop until --seconds, memory sampled and health watched meanwhile: (recorder, samples, wall s)."""
    images = [picture(i, args.size) for i in range(6)]
    rec, samples, stop = Recorder(), [], threading.Event()
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    watcher = threading.Thread(target=sampler, args=(stop, args.sample_s, t0, samples), daemon=True)
    watcher.start()
    checker = threading.Thread(target=health_watch, args=(url, stop, rec), daemon=True)
    checker.start()
    turns = itertools.count()
    threads = [
        threading.Thread(
            target=client_loop,
            args=(url, key, deadline, rec, random.Random(args.seed + i), images, args.bad_share, turns),
        )
        for i, key in enumerate(keys)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t0
    stop.set()
    watcher.join()
    checker.join()
    samples.append((wall, replica_memory()))
    return rec, samples, wall


def is_dugray_replica(name: str) -> bool:
    """A replica of the app's deployments (``app:Deployment#id``), not Ray Serve's own ProxyActor or
    ServeController: the memory bound is on this project's code (issue 30); Ray's processes are
    reported beside it (``ray_grown``; the proxy's growth under the full mix: docs/serving.md)."""
    return ":" in name.split("#")[0]


def soak_report(rec: Recorder, samples: list, wall: float, health: dict, args) -> dict:
    """The report: requests, latency, statuses, lost sessions, memory growth; ``passed`` as the module
    docstring says."""
    total = sum(rec.status.values())
    server_errors = sum(n for s, n in rec.status.items() if s >= 500)
    memory = memory_table(samples, args.mark_s)
    over = {
        k: v["end_over_mark"]
        for k, v in memory.items()
        if v["end_over_mark"] is not None and v["end_over_mark"] > args.max_growth
    }
    grown = {k: r for k, r in over.items() if is_dugray_replica(k)}  # the bound is on this project's code
    ray_grown = {k: r for k, r in over.items() if not is_dugray_replica(k)}  # Ray's proxy, controller: reported
    report = {
        "seconds": round(wall, 1),
        "clients": args.clients,
        "requests": total,
        "requests_per_s": round(total / wall, 2),
        "latency": {kind: percentiles(xs) for kind, xs in sorted(rec.latency.items())},
        "all": percentiles([x for xs in rec.latency.values() for x in xs]),
        "status": {str(k): v for k, v in sorted(rec.status.items())},
        "server_errors": server_errors,
        "lost_sessions": len(rec.lost),
        "lost": rec.lost[:20],
        "errors": rec.errors[:20],
        "memory": memory,
        "memory_mark_s": args.mark_s,
        "grown": grown,
        "ray_grown": ray_grown,
        "store_at_end": health.get("store"),
    }
    memory_checked = wall >= 2 * args.mark_s
    health_p99 = report["latency"].get("health", {}).get("p99_s")
    report["health_p99_ok"] = health_p99 is not None and health_p99 < args.max_health_p99
    report["passed"] = (
        server_errors == 0 and not rec.lost and (not memory_checked or (not grown and report["health_p99_ok"]))
    )
    return report


def main(argv=None, prog: str = PROG) -> int:
    """Run the soak and print its report; 0 when it passed (see the module docstring), 1 when not."""
    args = build_parser(prog).parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        print(f"{prog}: error: need --clients >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    import ray
    from ray import serve

    keys = [f"soak-client-{i:02d}-" + "k" * 12 for i in range(args.clients)]
    url = start_app(args, keys, prog)
    try:
        rec, samples, wall = drive(url, keys, args)
        health = requests.get(f"{url}/v1/health", timeout=30).json()
    finally:
        serve.shutdown()
        ray.shutdown()
    report = soak_report(rec, samples, wall, health, args)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
