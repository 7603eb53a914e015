"""``dugray serve``: the Serve app on a private local Ray, ready when health says so, stopped cleanly."""

from __future__ import annotations

import argparse
import math
import sys
import time

from dugray.cli.common import (
    EXIT_CODES,
    EXIT_OK,
    PROG,
    UsageError,
    add_server_flags,
    key_file,
    no_key_on_the_command_line,
    session_overrides,
)

SERVE_DOC = """Start the dugray Serve app (the web page at /, the HTTP API under /v1) on a private
local Ray, wait until GET /v1/health says every deployment can serve (--wait), and print
its URL. SIGTERM or Ctrl-C (SIGINT) stops it cleanly: requests in flight finish, Serve and
Ray shut down, exit code 0; this is the command to run under a process manager (systemd,
a container). The same app as 'serve run serve.app:build' (the installed ``serve``
package). On a cluster, use 'serve deploy serve/config.yaml'.

API keys: --api-key-file FILE (one per line), or $DUGRAY_API_KEYS / $DUGRAY_API_KEYS_FILE;
never on the command line, where ps shows them to every user.

  dugray serve
  dugray serve --port 8080 --model runs/exp1 --set max_sessions=16 --set 'session={"n": 5}'
  DUGRAY_API_KEYS_FILE=/etc/dugray/keys dugray serve --host 0.0.0.0"""

STOP_SIGNALS = ("SIGTERM", "SIGINT")
"""What stops ``dugray serve`` cleanly (a process manager sends SIGTERM, a terminal SIGINT)."""


def add_parser(sub) -> None:
    """The ``serve`` subcommand's flags."""
    s = sub.add_parser(
        "serve",
        help="start the Serve app (web page, HTTP API) locally, print its URL",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=SERVE_DOC + "\n\n" + EXIT_CODES,
    )
    s.add_argument("--model", default="default", help="'default', a checkpoint, a training --out folder or models:/...")
    s.add_argument("--refiner", help="refiner URI, or 'none' (default: the one beside --model)")
    add_server_flags(s)
    s.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    """``dugray serve``: start Ray, Serve and the app locally, wait until it is ready, then block until
    SIGTERM or SIGINT and stop cleanly; returns 0 (3 when it did not become ready within --wait)."""
    with _stop_signals() as stopped:
        try:
            start_server(args, stopped)
        except _Stopped:  # stopped while starting: start_server has shut everything down
            print("stopped", flush=True)
            return EXIT_OK
        return serve_until_stopped(stopped)


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived while the server was starting."""


def start_server(args, stopped=None) -> str:
    """Start Ray + Serve + the app on host:port and wait until /v1/health says it is ready; the URL."""
    import socket

    settings = {"model": args.model, **dict(_key_value(s) for s in args.settings)}
    if args.refiner:
        settings["refiner"] = args.refiner
    no_key_on_the_command_line(args)
    if args.api_key_file:
        settings["api_keys"] = key_file(args.api_key_file)
    session = {k: v for k, v in session_overrides(args).items() if k != "solve"}  # interactive --web
    if session:
        settings.setdefault("session", session)
    from serve.settings import ServeSettings

    resolved = ServeSettings.from_args(settings)  # bad settings fail here, before Ray starts; keys from env or file too
    if args.host not in ("127.0.0.1", "localhost", "::1") and not resolved.api_keys:
        print(
            f"{PROG}: warning: listening on {args.host} without API keys: anyone who can reach this machine can use "
            "the server; pass --api-key-file (and put it behind a TLS proxy)",
            file=sys.stderr,
            flush=True,
        )
    with socket.socket() as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port"
            ) from None
    import ray
    from ray import serve

    from serve.app import build, required_cpus

    app = build(resolved)
    need = required_cpus(resolved)
    if args.cpus is not None and args.cpus < need:  # Serve would wait for the CPUs forever
        raise UsageError(f"the app reserves {need:g} CPUs for its replicas; pass --cpus {math.ceil(need)} or more")
    print(f"starting Ray and the dugray app (model {args.model}) ...", flush=True)
    from serve.access import set_proxy_env
    from serve.memory import set_malloc_env

    set_malloc_env()  # before Ray starts: its workers inherit it (flat memory under sustained load)
    set_proxy_env()  # Ray's HTTP proxy believes no X-Forwarded-For; the app trusts its trusted_proxies itself
    t0 = time.monotonic()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False)  # replicas import the installed serve.app
    if stopped is not None:
        stopped.install()  # ours again: Ray's handler would abort with a native trace instead of stopping cleanly
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    url = f"http://{host}:{args.port}"
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run_many([serve.RunTarget(app, name="dugray", route_prefix="/")], wait_for_applications_running=False)
        _wait_until_ready(url, args.wait, stopped)
    except BaseException:
        stop_server()
        raise
    print(
        f"dugray is serving {url}  (web page {url}/, API {url}/v1, docs {url}/docs); ready in "
        f"{time.monotonic() - t0:.0f} s",
        flush=True,
    )
    return url


def _wait_until_ready(url: str, seconds: float, stopped=None) -> None:
    """Poll GET /v1/health until it answers 200 (every deployment can serve): what a load balancer
    waits for. A failed deployment is a UsageError with Serve's reason; past ``seconds``, a
    :class:`dugray.client.ServerUnreachable` (exit 3)."""
    import requests
    from ray import serve

    from dugray.client import ServerUnreachable

    deadline, said = time.monotonic() + seconds, None
    while True:
        if stopped is not None and stopped.is_set():
            raise _Stopped
        app = serve.status().applications.get("dugray")
        if app is not None and app.status == "DEPLOY_FAILED":
            raise UsageError(f"the app did not start: {(app.message or 'a deployment failed').strip().splitlines()[0]}")
        try:
            r = requests.get(f"{url}/v1/health", timeout=5)
            if r.status_code == 200:
                return
            waiting = (
                r.json().get("not_ready") if r.headers.get("content-type", "").startswith("application/json") else None
            )
        except (requests.RequestException, ValueError):
            waiting = None
        if waiting and waiting != said:
            print(f"  waiting for {', '.join(waiting)} ...", flush=True)
            said = waiting
        if time.monotonic() > deadline:
            raise ServerUnreachable(
                f"the app was not ready within {seconds:g} s (--wait); still starting: "
                f"{', '.join(waiting or ['the HTTP proxy'])}"
            )
        time.sleep(0.5)


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
    return key, value


class _stop_signals:
    """While active (``with _stop_signals() as stopped``), SIGTERM and SIGINT only set a flag
    (``stopped.is_set()``, ``stopped.wait(s)``) instead of interrupting whatever Python runs
    (a Ray call cut in half leaves Ray half down); the old handlers come back afterwards.
    ``ray.init`` installs Ray's own handler (a native crash trace and an abort), so
    :func:`start_server` installs ours again after it (``stopped.install()``)."""

    def __enter__(self):
        import threading

        self._event, self._old = threading.Event(), {}
        self.install()
        return self

    def install(self) -> None:
        import signal

        for name in STOP_SIGNALS:
            sig = getattr(signal, name)
            self._old.setdefault(sig, signal.signal(sig, lambda signum, frame: self._event.set()))

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


def serve_until_stopped(stopped=None) -> int:
    """Block until SIGTERM or SIGINT, then drain and shut Serve and Ray down; returns 0."""
    if stopped is None:
        with _stop_signals() as own:
            return serve_until_stopped(own)
    print("SIGTERM or Ctrl-C stops it", flush=True)
    while not stopped.wait(1.0):
        pass
    print("stopping: finishing requests in flight, shutting Serve and Ray down ...", flush=True)
    stop_server(drain_s=30.0)  # further signals only set the flag again: the shutdown is never cut short
    print("stopped", flush=True)
    return EXIT_OK


def stop_server(drain_s: float = 0.0) -> None:
    """Shut Serve and Ray down; with ``drain_s``, first let the app finish the requests in flight
    (new ones get 503 meanwhile, so a load balancer moves on)."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    if drain_s > 0:
        try:
            left = serve.get_app_handle("dugray").drain.remote(drain_s).result(timeout_s=drain_s + 10)
            if left:
                print(f"{left} requests still running after {drain_s:g} s; stopping anyway", flush=True)
        except Exception as exc:  # noqa: BLE001 - no app to drain (it failed to start): just stop
            print(f"could not drain the app ({type(exc).__name__}); stopping", flush=True)
    serve.shutdown()
    ray.shutdown()


# --------------------------------------------------------------------------- eval, train
