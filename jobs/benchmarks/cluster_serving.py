"""Serve across nodes: label rounds per second with the Matting replicas on one node vs two, and
the bytes a label round moves between deployments (so between nodes when they are apart).

    python jobs/bench_cluster_serve.py --model default --size 256 --load-requests 24

One run, one Ray test cluster (``ray.cluster_utils.Cluster``: a head with the ingress, the store
and the light deployments, and two worker nodes, all processes of this machine), the same image
and the same clients: first both Matting replicas on one worker node, then one on each (the
``placement`` setting, serve/placement.py). On one machine the two nodes share its cores, so the
second node adds no compute: the figure shows what the placement costs, not what it gains.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import tempfile

import cv2

from dugray.data.synthetic import generate_sample
from dugray.models import load_networks
from dugray.session import MattingSession, fused_nig, working_float
from serve.access import set_proxy_env

from .serving import Client, bench_latency, bench_throughput, free_port

HEAD, ONE, ANY = "dugray_head", "dugray_matting_first", "dugray_matting"
ON_HEAD = ("Fusion", "Proposer", "Solver", "Refinement", "SessionStore", "APIIngress")
LAYOUTS = {
    1: {"resources": {ONE: 1}},  # only the first worker node has these slots: both replicas there
    2: {"resources": {ANY: 1}, "max_replicas_per_node": 1},  # one replica per worker node
}


def bytes_by_hop(model, image, rounds: int = 4) -> dict:
    """Pickled bytes (protocol 5, what Ray's object store holds) each hop of the graph carries in
    the last label round of a ``rounds``-round session, by the name of the hop. The ingress puts
    the round's working state in the object store once, and Fusion, Proposer and Solver read that
    copy; Proposer and Solver take the fused posterior from Fusion by reference (counted once, as
    Fusion's output); the store's get and put carry the state without its full-size image (stored
    once, when the session is made). The network's hops are 0 when the round reuses its first
    round (``SessionConfig.network_rounds`` "first", the default)."""
    session = MattingSession(image, model).start()
    for i in range(rounds - 1):
        session.label([(i % max(1, len(session.proposals)), "bg")])
    state = session.state

    def size(obj) -> int:
        return len(pickle.dumps(obj, protocol=5))

    network = state.rounds[-1] is not state.rounds[0]
    return {
        "ingress -> Matting": size((working_float(state), state.user_map)) if network else 0,
        "Matting -> ingress": size(state.rounds[-1]) if network else 0,
        "ingress -> Fusion, Proposer, Solver (one put)": size(state.working()),
        "Fusion -> Proposer, Solver": size(fused_nig(state.working())),
        "Solver -> ingress": size(state.solved),
        "SessionStore <-> ingress": 2 * len(state.to_bytes(image=False)),
    }


def start_cluster(cpus: int):
    """A head (``cpus`` CPUs, the ``dugray_head`` slot) and two Matting nodes (1 CPU each); this process connected."""
    import ray
    from ray.cluster_utils import Cluster

    set_proxy_env()
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": cpus, "resources": {HEAD: 1}, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1, resources={ANY: 2, ONE: 2})
    cluster.add_node(num_cpus=1, resources={ANY: 2})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    return cluster


def matting_nodes(app: str) -> int:
    """How many nodes the live Matting replicas of ``app`` are on (the GCS's actor table: Serve's status
    has no nodes)."""
    from ray._private.state import actors

    return len(
        {
            a["Address"]["NodeID"]
            for a in actors().values()
            if a["State"] == "ALIVE" and f"{app}#Matting#" in (a.get("Name") or "")
        }
    )


def measure(args, client: Client) -> dict:
    """{nodes: (rounds/s, rounds, label p50 s)} with two Matting replicas on 1, then 2 worker nodes."""
    # Ray and Serve (serve.app imports both) only where they run, as in the rest of this module
    from ray import serve

    from serve.app import build

    base = {
        "model": args.model,
        "torch_threads": args.threads,
        "max_rounds": 64,
        "rate_limit_per_s": 0,
        "max_sessions_per_owner": 64,
        "session_storage": tempfile.mkdtemp(prefix="dugray-bench-cluster-"),
        "replicas": {"Matting": 2},
    }
    out = {}
    for nodes, matting in LAYOUTS.items():
        placement = {"Matting": matting, **{d: {"resources": {HEAD: 0.01}} for d in ON_HEAD}}
        serve.run(build({**base, "placement": placement}), name="dugray-bench", route_prefix="/")
        if matting_nodes("dugray-bench") != nodes:
            raise RuntimeError(f"Matting replicas on {matting_nodes('dugray-bench')} node(s), not {nodes}")
        labels = bench_latency(client, args.repeats)[1]
        rate, n = bench_throughput(client, args.concurrency, args.load_requests, args.load_seconds)
        out[nodes] = (rate, n, statistics.median(labels))
        print(f"  {nodes} node(s): {rate:.2f} rounds/s", flush=True)
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="'default', a checkpoint, a training folder or models:/...")
    ap.add_argument("--size", type=int, default=256, help="side of the synthetic image")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per Matting replica")
    ap.add_argument("--cpus", type=int, default=2, help="logical CPUs of the head node")
    ap.add_argument("--repeats", type=int, default=6, help="label rounds timed one at a time")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--load-requests", type=int, default=24, help="rounds per throughput run")
    ap.add_argument("--load-seconds", type=float, default=120, help="time cap per throughput run")
    return ap


def main(argv=None):
    """Measure both layouts on one cluster, print rounds/s and the bytes per round by hop."""
    import ray
    from ray import serve

    args = _parser().parse_args(argv)
    image = generate_sample(0, size=args.size, seed=0)["image"]
    hops = bytes_by_hop(load_networks(args.model, "none", parts=("matting",))[0], image)
    cluster = start_cluster(args.cpus)
    try:
        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        figures = measure(args, Client(f"http://127.0.0.1:{port}", cv2.imencode(".png", image[..., ::-1])[1].tobytes()))
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    print(
        f"\ndugray serve across nodes: {args.size}x{args.size}, model {args.model}, 2 Matting replicas, "
        f"{args.concurrency} clients, {os.cpu_count()} cores on this machine"
    )
    for nodes, (rate, n, p50) in figures.items():
        print(f"Matting on {nodes} node(s): {rate:6.2f} rounds/s ({n} rounds), label p50 {p50:.3f} s")
    print(f"2 nodes / 1 node: {figures[2][0] / figures[1][0]:.2f}x")
    print("bytes per label round, by hop:")
    for hop, n in hops.items():
        print(f"  {hop:<28}{n / 1e3:10.1f} kB")
    across = hops["ingress -> Matting"] + hops["Matting -> ingress"]
    print(f"  {'total':<28}{sum(hops.values()) / 1e3:10.1f} kB; between nodes (Matting apart): {across / 1e3:.1f} kB")
