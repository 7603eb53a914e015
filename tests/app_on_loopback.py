"""The real Serve app (tiny checkpoints: conftest's ``tiny_model``) on a free loopback port, for the HTTP
and browser tests (one place, so both test the same set-up). One Ray and one Serve serve the apps of
every module in turn, until a test shuts Ray down (the cluster tests join clusters of their own)."""

import os
import socket
import tempfile
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SERVE: dict = {}
"""The Serve instance this process started: {"port": its HTTP port, "node": the id of the Ray node it
runs on}, kept from one app to the next while that Ray lives (tests/conftest.py's session fixture,
or Ray's exit hook, shuts it down with Ray)."""


def _serve_on_this_ray() -> int:
    """The HTTP port of Serve on this process's Ray: the one started for an earlier app when this is
    still the Ray it was started on (a module of another app follows), else a new one on a free port.
    Starting Serve (its controller, its proxy) and Ray again for every module cost about 15 s each
    on 2 shared cores."""
    import ray
    from ray import serve
    from ray.serve import context as serve_context

    node = ray.get_runtime_context().get_node_id()  # a new Ray (or a test's own cluster): a new node id
    if _SERVE.get("node") == node:
        return _SERVE["port"]
    # Serve's cached controller client outlives ray.shutdown(), and Ray's own staleness check compares
    # job ids, which every new local Ray starts again at 01000000: on another Ray it would call the
    # dead controller ("Can't find actor"). Forget it, then start Serve here.
    serve_context._disconnect()
    port = free_port()
    # one proxy, on the head: a second node of a test cluster (the same machine) could not bind the port too
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    _SERVE.update(port=port, node=node)
    return port


@contextmanager
def app_on_loopback(model: str, name: str, settings: dict, route_prefix: str = "/"):
    """Yield the base URL of ``serve.app.build(model=model, **settings)`` on 127.0.0.1 (under ``route_prefix``).

    Starts a private local Ray (2 CPUs) unless this process already has one (or is connected to a
    test cluster), and Serve on it unless an earlier app left it running; afterwards deletes the app
    and leaves Ray and Serve to the next app (each app is new: its own replicas and session storage)."""
    import ray
    from ray import serve

    from serve.app import build

    if not ray.is_initialized():  # replicas import the installed serve.app
        from serve.access import set_proxy_env

        set_proxy_env()  # as dugray serve: Ray's proxy believes no X-Forwarded-For (the app decides)
        os.environ.setdefault(
            "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60"
        )  # a busy 2-core CI: the proxy starts slowly
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = _serve_on_this_ray()
    storage = tempfile.mkdtemp(prefix="dugray-sessions-")  # each app its own: no test sees another's sessions
    serve.run(
        build({"model": model, "torch_threads": 1, "session_storage": storage, **settings}),
        name=name,
        route_prefix=route_prefix,
    )
    try:
        yield f"http://127.0.0.1:{port}" + route_prefix.rstrip("/")
    finally:
        serve.delete(name)
