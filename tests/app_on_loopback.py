"""The real Serve app (tiny checkpoints: conftest's ``tiny_model``) on a free loopback port, for the HTTP
and browser tests (one place, so both test the same set-up)."""

import socket
import tempfile
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_on_loopback(model: str, name: str, settings: dict):
    """Yield the base URL of ``serve.app.build(model=model, **settings)`` on 127.0.0.1.

    Starts a private local Ray (2 CPUs) unless this process already has one; tears the
    app (and that Ray) down afterwards."""
    import ray
    from ray import serve

    from serve.app import build

    started = not ray.is_initialized()
    if started:  # replicas import the installed serve.app
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    storage = tempfile.mkdtemp(prefix="dugray-sessions-")  # each app its own: no test sees another's sessions
    serve.run(build({"model": model, "torch_threads": 1, "session_storage": storage, **settings}), name=name,
              route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
