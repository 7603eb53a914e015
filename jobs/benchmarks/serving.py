"""What serving costs over the bare network: in-process, over HTTP, and with 1 vs 2 replicas.

    python jobs/bench_serve.py                              # shipped default model
    python jobs/bench_serve.py --model runs/exp1 --size 512 --repeats 8 --load-requests 48

Measured on this machine at --size x --size (a synthetic sample), with --threads torch
threads everywhere (the in-process process and every Matting replica), so the ratios
compare like with like:

1. in process: one bare forward pass ``model(x, u)`` vs one ``MattingSession.label``
   round (labels + forward + fusion + proposals), medians;
2. over HTTP (Serve on a local Ray of --cpus CPUs, 127.0.0.1 only): p50 / p95 of
   ``POST /v1/sessions`` (create) and ``POST /v1/sessions/{id}/labels`` (label);
3. throughput: --concurrency clients, each creating a session, labelling it twice and
   deleting it, until --load-requests rounds or --load-seconds, with 1 then 2 Matting
   replicas (rounds per second);
4. one shot: p50 / p95 of ``POST /v1/matte`` (RGBA cut-out) on a --matte-size photo,
   with the uncertainty-guided solve and without it (``?solve=false``), interleaved;
5. click to fix: p50 / p95 of one click round (``POST .../labels`` with one ``point``, what
   the web page's click mode sends) on the --matte-size photo, the clicks those of the
   corrective-click user (:mod:`dugray.evaluation.clicks`, reading the sample's true alpha),
   and the same rounds in process.

6. the label round at --matte-size over HTTP vs in process (sessions of 4 rounds each), and
   the bytes a round moves through the object store, before and after the graph sent
   working-resolution arrays instead of the session state (``--only-label``: only this).

Goals: label round <= 1.5x a forward in process and <= 2x over HTTP; at 800x600 the HTTP
label round <= 1.25x the in-process one; 2 replicas >= 1.6x the throughput of 1. Numbers on a
shared machine are noisy: the table says what ran.
"""

from __future__ import annotations

import argparse
import pickle
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import replace

import cv2
import numpy as np
import torch

from dugray.data.synthetic import generate_sample
from dugray.evaluation.clicks import run_clicks
from dugray.evaluation.evaluate_job import parse_session_set
from dugray.models import load_networks
from dugray.nig import NIG
from dugray.session import MattingSession, SessionConfig, fused_nig, working_float
from dugray.session.network import capped_forward
from serve.settings import ServeSettings


def percentile(xs, q):
    """The ``q``-th percentile of ``xs``; NaN when there are none."""
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def bench_in_process(model, image, repeats, config: SessionConfig | None = None):
    """(forward seconds list, label-round seconds list) in this process."""
    session = MattingSession(image, model, config=config).start()
    x = torch.from_numpy(working_float(session.state).transpose(2, 0, 1).copy())[None]
    u = torch.from_numpy(session.state.user_map.copy())[None, None]
    forward = []
    with torch.inference_mode():  # the forward a session runs (at most at the model's infer_max_side)
        capped_forward(model, x, u)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            capped_forward(model, x, u)
            forward.append(time.perf_counter() - t)
    rounds = []
    for i in range(repeats):
        t = time.perf_counter()
        session.label([(0, "fg" if i % 2 else "bg")])
        rounds.append(time.perf_counter() - t)
    return forward, rounds


class Client:
    """The HTTP calls the benchmark makes (requests, one Session per thread)."""

    def __init__(self, base, png):
        self.base, self.png = base, png
        self.local = threading.local()

    @property
    def http(self):
        if not hasattr(self.local, "s"):
            import requests

            self.local.s = requests.Session()
        return self.local.s

    def create(self):
        """``POST /v1/sessions`` with the benchmark image; the new session's id."""
        return self.create_from(self.png)

    def label(self, sid, i):
        """``POST /v1/sessions/{sid}/labels``: proposal 0 as bg or fg (alternating with ``i``), one round."""
        body = {"labels": [{"index": 0, "label": "fg" if i % 2 else "bg"}]}
        r = self.http.post(f"{self.base}/v1/sessions/{sid}/labels", json=body, timeout=300)
        r.raise_for_status()
        return r.json()["timings"]

    def delete(self, sid):
        """``DELETE /v1/sessions/{sid}`` (the response is not checked)."""
        self.http.delete(f"{self.base}/v1/sessions/{sid}", timeout=60)

    def create_from(self, png):
        """``POST /v1/sessions`` with ``png``; the new session's id."""
        r = self.http.post(f"{self.base}/v1/sessions", files={"image": ("i.png", png, "image/png")}, timeout=300)
        r.raise_for_status()
        return r.json()["id"]

    def alpha(self, sid) -> np.ndarray:
        """The session's alpha matte (``GET .../alpha.png``)."""
        r = self.http.get(f"{self.base}/v1/sessions/{sid}/alpha.png", timeout=300)
        r.raise_for_status()
        return cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)

    def matte(self, png, solve: bool):
        """``POST /v1/matte`` of ``png`` (one-shot RGBA cut-out) with the solve on or off."""
        r = self.http.post(
            f"{self.base}/v1/matte?solve={str(solve).lower()}",
            files={"image": ("i.png", png, "image/png")},
            timeout=300,
        )
        r.raise_for_status()


def timed(fn, *a):
    """(seconds, result) of one call ``fn(*a)``."""
    t = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - t, out


def bench_latency(client, repeats, labels_per_session=4, hops: list | None = None):
    """(create seconds, label seconds) over HTTP after a warm-up session: sessions of at most
    ``labels_per_session`` label rounds until ``repeats`` rounds are timed. ``hops`` gets each
    label round's (wall seconds, the view's timings) for :func:`hop_table`.
    """
    creates, labels = [], []
    hops = [] if hops is None else hops
    client.delete(client.create())  # warm-up: handles, numba, first batch
    while len(labels) < repeats:
        dt, sid = timed(client.create)
        creates.append(dt)
        for i in range(min(labels_per_session, repeats - len(labels))):
            dt, timings = timed(client.label, sid, i)
            labels.append(dt)
            hops.append((dt, timings))
        client.delete(sid)
    return creates, labels


def hop_table(hops: list) -> list[tuple[str, float]]:
    """Where an HTTP label round's time goes (medians, seconds), from the client's wall time and
    the timings the ingress returns: HTTP and Serve's proxy (wall - request_s), the session store's
    put with serialising (request_s - total_s), the labels with the store's get (label_s), then the
    round's own steps: Fusion is asked for a reference (fuse_s), and the fusion itself runs while
    Proposer and Solver wait for it (propose_solve_s, of which solve_s is the solve's own time)."""

    def med(f):
        return statistics.median(f(wall, t) for wall, t in hops)

    return [
        ("HTTP + proxy", med(lambda w, t: w - t["request_s"])),
        ("store put", med(lambda w, t: t["request_s"] - t["total_s"])),
        ("store get + labels", med(lambda w, t: t.get("label_s", 0.0))),
        ("network (or its reuse)", med(lambda w, t: t["predict_s"])),
        ("fusion asked", med(lambda w, t: t["fuse_s"])),
        ("the solve in its replica", med(lambda w, t: t.get("solve_s", 0.0))),
        ("fusion, proposals and hand-offs", med(lambda w, t: t["propose_solve_s"] - t.get("solve_s", 0.0))),
    ]


def bench_one_shot(client, png, repeats):
    """{solve: [seconds of POST /v1/matte]} with and without the solve, interleaved after a warm-up each."""
    out = {True: [], False: []}
    for solve in out:
        client.matte(png, solve)
    for _ in range(repeats):
        for solve in out:
            out[solve].append(timed(client.matte, png, solve)[0])
    return out


def bench_clicks(client, png, gt, repeats):
    """Seconds of the corrective-click user's rounds over HTTP on ``png`` (its true alpha ``gt``):
    the label request alone (the matte it then reads is not timed)."""
    out = []
    while len(out) < repeats:
        sid = client.create_from(png)

        def label(click, sid=sid):  # called by run_clicks below, in this iteration
            t = time.perf_counter()
            client.http.post(
                f"{client.base}/v1/sessions/{sid}/labels",
                timeout=300,
                json={"labels": [{"point": [click.y, click.x], "label": click.label}]},
            ).raise_for_status()
            out.append(time.perf_counter() - t)
            return client.alpha(sid)

        if not run_clicks(client.alpha(sid), label, gt, min(10, repeats - len(out))).clicks:
            raise RuntimeError("the benchmark photo's matte needs no click: nothing to time")
        client.delete(sid)
    return out[:repeats]


def clicks_in_process(model, refiner, photo, gt, repeats, config: SessionConfig | None = None):
    """Seconds of the same user's rounds in process (``MattingSession.label`` with the point)."""
    out = []
    while len(out) < repeats:
        s = MattingSession(photo, model, refiner, config).start()

        def label(click, s=s):  # called by run_clicks below, in this iteration
            out.append(timed(s.label, [((click.y, click.x), click.label)])[0])
            return s.alpha_u8

        if not run_clicks(s.alpha_u8, label, gt, min(10, repeats - len(out))).clicks:
            raise RuntimeError("the benchmark photo's matte needs no click: nothing to time")
    return out[:repeats]


def bench_throughput(client, concurrency, max_rounds, max_seconds):
    """Rounds per second under ``concurrency`` clients doing create, label, label, delete."""
    done, lock, stop_at = [0], threading.Lock(), time.monotonic() + max_seconds

    def take() -> bool:
        with lock:
            if done[0] >= max_rounds or time.monotonic() > stop_at:
                return False
            done[0] += 1
            return True

    def worker():
        while take():
            sid = client.create()
            for i in range(2):
                if not take():
                    break
                client.label(sid, i)
            client.delete(sid)

    # warm-up: as many concurrent sessions as clients, so every replica has run its first
    # (slow) forward before the clock starts, not only the one that got a single request
    warm = [threading.Thread(target=lambda: client.delete(client.create())) for _ in range(concurrency)]
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.perf_counter() - t0), done[0]


def deploy(build_args, port, cpus):
    """Deploy the app as dugray-bench (replacing any earlier one), say how long it took; exit past ``cpus`` CPUs."""
    # Ray and Serve (serve.app imports both) only where the app is deployed: the in-process benchmarks
    # of this module, which bench_cluster_serve.py imports too, run without them
    from ray import serve

    from serve.app import build, required_cpus

    settings = ServeSettings.from_args(build_args)
    need = required_cpus(settings)
    if need > cpus:  # Serve would wait for the CPUs forever
        raise SystemExit(
            f"bench_serve.py: error: {build_args.get('replicas')} reserves {need:g} CPUs, more than --cpus {cpus}"
        )

    t = time.perf_counter()
    serve.run(build(settings), name="dugray-bench", route_prefix="/")
    print(f"  deployed {build_args.get('replicas')} in {time.perf_counter() - t:.0f} s", flush=True)


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_rounds_in_process(
    model, image, repeats, labels_per_session=4, config: SessionConfig | None = None, hops: list | None = None
):
    """Seconds of label rounds in process, in sessions like :func:`bench_latency`'s (proposal 0, at
    most ``labels_per_session`` rounds each), after a warm-up session; ``hops`` gets each round's
    timings (the same keys as the server's)."""
    rounds = []
    hops = [] if hops is None else hops
    MattingSession(image, model, config=config).start().label([(0, "bg")])  # warm-up
    while len(rounds) < repeats:
        session = MattingSession(image, model, config=config).start()
        for i in range(min(labels_per_session, repeats - len(rounds))):
            rounds.append(timed(session.label, [(0, "fg" if i % 2 else "bg")])[0])
            hops.append(session.state.timings[-1])
    return rounds


def bytes_per_round(model, image, config: SessionConfig | None = None, rounds: int = 4) -> dict:
    """Serialised bytes the last label round of a ``rounds``-round session moves through the object
    store (pickle protocol 5, what Ray's object store holds; the store's blobs as written).

    ``before``, stop 37's graph: the session store's get and put of the whole state (full-size
    image and every round's arrays, also the copies of the network's one round), the working
    state pickled for Fusion and again (without rounds) for Proposer and Solver. ``now``: the
    state without its image and with each distinct round once, and the working state put once
    per round and read by every step. Both count the network's input and output when the round
    runs it (``network_rounds`` "every"), the fused posterior and the solved matte."""
    session = MattingSession(image, model, config=config).start()
    for i in range(rounds - 1):
        session.label([(i % max(1, len(session.proposals)), "bg")])
    state = session.state

    def size(obj) -> int:
        return len(pickle.dumps(obj, protocol=5))

    copies = replace(state, rounds=[NIG(*(a.copy() for a in r)) for r in state.rounds])  # the old blob's rounds
    network = state.rounds[-1] is not state.rounds[0]
    common = size(fused_nig(state.working())) + size(state.solved)
    if network:
        common += size((working_float(state), state.user_map)) + size(state.rounds[-1])
    before = common + size(copies.working()) + 2 * size(copies.working(False)) + 2 * len(copies.to_bytes())
    now = common + size(state.working()) + 2 * len(state.to_bytes(image=False))
    return {"before": before, "now": now}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="'default', a checkpoint, a training folder or models:/...")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in process and per Matting replica")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--repeats", type=int, default=8, help="samples per latency figure")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--load-requests", type=int, default=48, help="rounds per throughput run")
    ap.add_argument("--load-seconds", type=float, default=120, help="time cap per throughput run")
    ap.add_argument("--matte-size", default="800x600", help="WxH of the one-shot /v1/matte photo (default 800x600)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument(
        "--session-set",
        nargs="+",
        action="append",
        metavar="FIELD=VALUE",
        help="SessionConfig fields, in process and in the app's settings (as evaluate.py's)",
    )
    ap.add_argument(
        "--only-label",
        action="store_true",
        help="only the label round at --matte-size, HTTP vs in "
        "process, and its bytes per round (no throughput, one-shot or click figures)",
    )
    return ap


def _photo(matte_size: str) -> tuple:
    """(image, true alpha, PNG bytes) of a synthetic photo of ``WxH`` pixels."""
    mw, mh = (int(v) for v in matte_size.lower().split("x"))
    sample = generate_sample(1, size=max(mw, mh), seed=1)
    photo = cv2.resize(sample["image"], (mw, mh), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(sample["alpha"], (mw, mh), interpolation=cv2.INTER_AREA)
    return photo, gt, cv2.imencode(".png", photo[..., ::-1])[1].tobytes()


def _one_replica_figures(args, client, model, rows, ratios, rnd, f50) -> None:
    """Everything measured with one Matting replica: first requests, latency, label round at
    --matte-size, one shot and clicks (into ``rows`` and ``ratios``)."""
    photo, photo_gt, photo_png = _photo(args.matte_size)
    if not args.only_label:
        first = [timed(client.matte, photo_png, True)[0] for _ in range(10)]  # the app's very first requests
        rows += [("matte, 1st request after start", first[:1]), ("matte, 10th request", first[-1:])]
        ratios["1st / 10th request after start"] = first[0] / first[-1]
        creates, labels = bench_latency(client, args.repeats)
        rows += [("create, HTTP", creates), ("label, HTTP", labels)]
        ratios["label HTTP / forward in process"] = statistics.median(labels) / f50
        ratios["label HTTP / label in process"] = statistics.median(labels) / statistics.median(rnd)
    photo_client = Client(client.base, photo_png)
    hops: list = []
    http_rounds = bench_latency(photo_client, args.repeats, hops=hops)[1]
    args.hops = hop_table(hops)
    local_hops: list = []
    local_rounds = label_rounds_in_process(model, photo, args.repeats, config=args.session_config, hops=local_hops)
    args.local_hops = [
        (name, statistics.median(t.get(key, 0.0) for t in local_hops))
        for name, key in (("fusion", "fuse_s"), ("the solve", "solve_s"), ("proposals and solve", "propose_solve_s"))
    ]
    rows += [(f"label {args.matte_size}, HTTP", http_rounds), (f"label {args.matte_size}, in process", local_rounds)]
    ratios[f"label {args.matte_size} HTTP / in process"] = statistics.median(http_rounds) / statistics.median(
        local_rounds
    )
    if args.only_label:
        return
    shots = bench_one_shot(client, photo_png, args.repeats)
    rows += [(f"matte {args.matte_size}, solve", shots[True]), (f"matte {args.matte_size}, no solve", shots[False])]
    ratios["matte with / without the solve"] = statistics.median(shots[True]) / statistics.median(shots[False])
    clicks = bench_clicks(client, photo_png, photo_gt, args.repeats)
    local = clicks_in_process(model, None, photo, photo_gt, args.repeats, args.session_config)
    rows += [(f"click {args.matte_size}, HTTP", clicks), (f"click {args.matte_size}, in process", local)]
    ratios["click HTTP / click in process"] = statistics.median(clicks) / statistics.median(local)


def _http_figures(args, model, image, rows, ratios, rnd, f50) -> dict:
    """Serve on a private local Ray: one replica's figures, then throughput with 1 and 2 (unless
    --only-label); returns {replicas: (rounds/s, rounds)}."""
    import ray
    from ray import serve

    throughput = {}
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        client = Client(f"http://127.0.0.1:{port}", cv2.imencode(".png", image[..., ::-1])[1].tobytes())
        base_args = {
            "model": args.model,
            "torch_threads": args.threads,
            "max_rounds": 64,
            "rate_limit_per_s": 0,
            "session_storage": tempfile.mkdtemp(prefix="dugray-bench-"),
            "max_sessions_per_owner": 64,
            "session": args.session,
        }
        for replicas in (1,) if args.only_label else (1, 2):
            deploy({**base_args, "replicas": {"Matting": replicas}}, port, args.cpus)
            if replicas == 1:
                _one_replica_figures(args, client, model, rows, ratios, rnd, f50)
            if not args.only_label:
                throughput[replicas] = bench_throughput(client, args.concurrency, args.load_requests, args.load_seconds)
    finally:
        serve.shutdown()
        ray.shutdown()
    return throughput


def main(argv=None):
    """Parse the flags, run the in-process, HTTP latency, throughput and one-shot measurements, print the table."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.session = parse_session_set(args.session_set, "bench_serve.py")  # the app's settings take the dict
    try:
        args.session_config = SessionConfig.from_dict(args.session)  # a bad field fails here, before any work
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(args.threads)
    image = generate_sample(0, size=args.size, seed=0)["image"]
    model = load_networks(args.model, "none", parts=("matting",))[0]
    fwd, rnd = bench_in_process(model, image, args.repeats, args.session_config)
    rows = [("forward, in process", fwd), ("label round, in process", rnd)]
    f50 = statistics.median(fwd)
    ratios = {"label round / forward (in process)": statistics.median(rnd) / f50}
    moved = bytes_per_round(model, _photo(args.matte_size)[0], args.session_config)
    throughput = {} if args.skip_http else _http_figures(args, model, image, rows, ratios, rnd, f50)

    print(
        f"\ndugray serving benchmark: {args.size}x{args.size}, model {args.model}, {args.threads} torch thread(s), "
        f"{args.cpus} CPUs, session {args.session or 'defaults'}"
    )
    print(f"{'what':<28}{'p50 s':>9}{'p95 s':>9}{'n':>5}")
    for name, xs in rows:
        print(f"{name:<28}{percentile(xs, 50):>9.3f}{percentile(xs, 95):>9.3f}{len(xs):>5}")
    print()
    for name, value in ratios.items():
        print(f"{name:<40}{value:>7.2f}x")
    print(
        f"bytes per label round {args.matte_size}: before {moved['before'] / 1e6:.2f} MB, "
        f"now {moved['now'] / 1e6:.2f} MB ({moved['now'] / moved['before']:.2f}x)"
    )
    if getattr(args, "hops", None):
        print(
            f"label {args.matte_size} over HTTP, where the time goes (p50 s): "
            + ", ".join(f"{name} {sec:.3f}" for name, sec in args.hops)
        )
    if getattr(args, "local_hops", None):
        print(f"label {args.matte_size} in process (p50 s): " + ", ".join(f"{n} {v:.3f}" for n, v in args.local_hops))
    for replicas, (rate, n) in throughput.items():
        print(
            f"throughput, {replicas} Matting replica(s){'':<10}{rate:>7.2f} rounds/s "
            f"({n} rounds, {args.concurrency} clients)"
        )
    if len(throughput) == 2 and throughput[1][0] > 0:
        print(f"{'2 replicas / 1 replica':<40}{throughput[2][0] / throughput[1][0]:>7.2f}x")
    elif len(throughput) == 2:  # no round finished within --load-seconds: nothing to divide by
        print(f"2 replicas / 1 replica: n/a (no round finished in --load-seconds {args.load_seconds:g}; raise it)")


if __name__ == "__main__":
    main()
