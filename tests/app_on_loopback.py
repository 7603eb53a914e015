"""The real Serve app (tiny checkpoints: conftest's ``tiny_model``) on a free loopback port, for the HTTP
and browser tests (one place, so both test the same set-up)."""

import os
import socket
import tempfile
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_on_loopback(model: str, name: str, settings: dict, route_prefix: str = "/"):
    """Yield the base URL of ``serve.app.build(model=model, **settings)`` on 127.0.0.1 (under ``route_prefix``).

    Starts a private local Ray (2 CPUs) unless this process already has one (or is connected to a
    test cluster); tears the app (and that Ray) down afterwards."""
    import ray
    from ray import serve

    from serve.app import build

    started = not ray.is_initialized()
    if started:  # replicas import the installed serve.app
        from serve.access import set_proxy_env

        set_proxy_env()  # as dugray serve: Ray's proxy believes no X-Forwarded-For (the app decides)
        os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")  # a busy 2-core CI: the proxy starts slowly
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    # one proxy, on the head: a second node of a test cluster (the same machine) could not bind the port too
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    storage = tempfile.mkdtemp(prefix="dugray-sessions-")  # each app its own: no test sees another's sessions
    serve.run(build({"model": model, "torch_threads": 1, "session_storage": storage, **settings}), name=name,
              route_prefix=route_prefix)
    try:
        yield f"http://127.0.0.1:{port}" + route_prefix.rstrip("/")
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
