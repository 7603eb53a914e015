"""Serving across nodes: Matting replicas on two nodes of a Ray cluster, the session store's folder
seen by every node (here one machine's temporary folder stands in for shared storage), and one of
those nodes killed in the middle of a labelling session driven over HTTP.

The cluster is Ray's test cluster (``ray.cluster_utils.Cluster``: every node a set of processes on
this machine): a head node with the ingress, the store, the controller and the other deployments,
and two worker nodes that each declare one ``dugray_matting`` slot.
"""

import os
import threading
import time

import cv2
import numpy as np
import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

APP = "dugray-cluster"
HEAD, MATTING_NODE = "dugray_head", "dugray_matting"
ON_HEAD = ("Fusion", "Proposer", "Solver", "Refinement", "SessionStore", "APIIngress")
H, W = 192, 256  # big enough that a round spends a while in the network

from app_on_loopback import app_on_loopback  # noqa: E402


def within(seconds, what, condition, every=0.25):
    """Poll ``condition()`` until it is truthy, for at most ``seconds``; its value (else the test fails on ``what``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"not within {seconds} s: {what}")


def replica_nodes(deployment: str) -> list[str]:
    """Node ids of the live replicas of ``deployment`` (the GCS's actor table: Serve's status has no nodes)."""
    from ray._private.state import actors

    return [
        a["Address"]["NodeID"]
        for a in actors().values()
        if a["State"] == "ALIVE" and f"{APP}#{deployment}#" in (a.get("Name") or "")
    ]


def placement_settings() -> dict:
    """Two Matting replicas, one per node with a ``dugray_matting`` slot; everything else on the head.
    Every label round runs the network (``network_rounds: every``), so the rounds in flight when a
    Matting node dies are ones that need it."""
    return {
        "replicas": {"Matting": 2},
        "retry_s": 90,
        "max_rounds": 40,
        "rate_limit_per_s": 0,
        "session": {"network_rounds": "every"},
        "placement": {"Matting": {"resources": {MATTING_NODE: 1}}, **{d: {"resources": {HEAD: 0.01}} for d in ON_HEAD}},
    }


@pytest.fixture
def cluster():
    """A head and two Matting nodes, this process connected to them; everything shut down afterwards
    (a local Ray of an earlier test is shut down first: conftest's ray_local starts it again)."""
    import ray
    from ray.cluster_utils import Cluster

    from serve.access import set_proxy_env

    ray.shutdown()
    set_proxy_env()  # the nodes' processes inherit this environment, as under dugray serve
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    # the killed node found dead in ~3 s, not Ray's default ~15 s (5 failed health checks 3 s apart), as in
    # tests/test_batch.py: Serve replaces the lost replica only after that verdict
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {HEAD: 1},
            "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
        },
    )
    try:
        for _ in range(2):
            c.add_node(num_cpus=1, resources={MATTING_NODE: 1})
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False, configure_logging=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def box_label(i: int) -> dict:
    """The i-th label of a session: a 6x6 box of its own (fg on even i, bg on odd), none overlapping."""
    y, x = 6 + 10 * (i % 6), 6 + 12 * (i // 6 % 7)
    return {"box": [y, x, y + 6, x + 6], "label": "fg" if i % 2 == 0 else "bg"}


class Labeller:
    """One user's session over HTTP: every label it sent and every response it got, in order."""

    def __init__(self, url: str, image: np.ndarray):
        self.url, self.http, self.sent, self.responses = url, requests.Session(), [], []
        r = self.http.post(
            f"{url}/v1/sessions", files={"image": ("i.png", cv2.imencode(".png", image)[1].tobytes())}, timeout=120
        )
        assert r.status_code == 201, r.text
        self.sid = r.json()["id"]

    def label(self) -> requests.Response:
        """One label round with the next box."""
        self.sent.append(box_label(len(self.sent)))
        r = self.http.post(f"{self.url}/v1/sessions/{self.sid}/labels", json={"labels": [self.sent[-1]]}, timeout=180)
        self.responses.append(r)
        return r

    def drive(self, stop: threading.Event, most: int) -> threading.Thread:
        """Label rounds back to back on a thread until ``stop`` (or ``most`` rounds): the kill may land on
        one in flight."""

        def run():
            while not stop.is_set() and len(self.sent) < most:
                self.label()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def alpha(self) -> np.ndarray:
        r = self.http.get(f"{self.url}/v1/sessions/{self.sid}/alpha.png", timeout=120)
        return cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)


def test_a_labelling_session_survives_the_loss_of_a_matting_node(cluster, tiny_model):
    from ray import serve

    t_start = time.monotonic()
    image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    with app_on_loopback(tiny_model, APP, placement_settings()) as url:
        head = cluster.head_node.node_id
        workers = {node.node_id: node for node in cluster.worker_nodes}
        matting = within(
            60,
            "two Matting replicas",
            lambda: sorted(replica_nodes("Matting")) if len(replica_nodes("Matting")) == 2 else None,
        )
        assert set(matting) == set(workers), "one Matting replica on each worker node"
        assert all(replica_nodes(d) == [head] for d in ON_HEAD), {d: replica_nodes(d) for d in ON_HEAD}

        user, other = Labeller(url, image), Labeller(url, image)  # the other keeps both replicas busy
        assert user.label().status_code == 200
        stop = threading.Event()
        drivers = [user.drive(stop, 30), other.drive(stop, 30)]
        try:
            within(60, "a second label round", lambda: len(user.responses) >= 2)
            killed, before = matting[0], len(user.responses)
            cluster.remove_node(workers[killed], allow_graceful=False)  # a crash, not a drain
            t_kill = time.monotonic()
            within(120, "three label rounds after the kill", lambda: len(user.responses) >= before + 3)
        finally:
            stop.set()
            for thread in drivers:
                thread.join(timeout=200)
        print(
            f"{len(user.responses)} label rounds, {before} before the kill; "
            f"three after it took {time.monotonic() - t_kill:.1f} s"
        )

        for who in (user, other):
            assert [r.status_code for r in who.responses] == [200] * len(who.responses), [
                r.text[:200] for r in who.responses if r.status_code != 200
            ]
            assert [r.json()["round"] for r in who.responses] == list(range(2, len(who.responses) + 2)), (
                "each round once, in order"
            )

        replacement = cluster.add_node(num_cpus=1, resources={MATTING_NODE: 1})  # the dead node's replacement machine
        cluster.wait_for_nodes()

        def replaced():
            status = serve.status().applications[APP].deployments["Matting"]
            nodes = replica_nodes("Matting")
            return status.status == "HEALTHY" and len(set(nodes)) == 2 and killed not in nodes

        within(120, "Matting HEALTHY again with one replica on each live Matting node", replaced)
        assert replacement.node_id in replica_nodes("Matting")

        assert user.label().status_code == 200  # and the session goes on
        view = user.http.get(f"{url}/v1/sessions/{user.sid}", timeout=60).json()
        assert (view["round"], view["labels"]) == (len(user.sent) + 1, len(user.sent))
        alpha = user.alpha()
        for item in user.sent:  # every label, before and after the kill, is in the matte
            y0, x0, y1, x1 = item["box"]
            assert np.all(alpha[y0:y1, x0:x1] == (255 if item["label"] == "fg" else 0)), item
    print(f"cluster test: {time.monotonic() - t_start:.0f} s")
