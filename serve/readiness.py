"""Whether every deployment of the graph can serve: what ``/v1/health`` answers.

The ingress starts in a second and is reachable long before the model replicas have
loaded their networks and run their warm-up; a health check that only proves the ingress
is up sends the first users to a server that makes them wait a minute. Readiness here is
the Serve controller's view (``serve.status()``): every deployment of this application
has at least one replica RUNNING, i.e. past its constructor and its warm-up. A deployment
that loses its last replica makes the app not ready again until one is back.

:func:`not_ready` reads a status (plain data, tested without Ray); :class:`Readiness` asks
the controller at most once per ``ttl_s`` from a worker thread (``serve.status()`` blocks),
shared by concurrent health checks, so a load balancer polling often costs the controller
little and never blocks the ingress's event loop. The answer is refreshed in the
background: a health check waits for the controller only when the last answer is older
than ``max_age_s`` (the controller is slow on a busy machine; health must not be).
"""

from __future__ import annotations

import asyncio
import time


def not_ready(status, app: str, deployments) -> list[str]:
    """The names in ``deployments`` of app ``app`` that have no RUNNING replica in ``status``
    (a :class:`ray.serve.schema.ServeStatus`); every name when the app is unknown."""
    overview = status.applications.get(app)
    if overview is None:
        return list(deployments)
    out = []
    for name in deployments:
        d = overview.deployments.get(name)
        states = {str(getattr(k, "value", k)): n for k, n in (d.replica_states.items() if d is not None else ())}
        if states.get("RUNNING", 0) < 1:
            out.append(name)
    return out


class Readiness:
    """``await check()`` -> the deployments that cannot serve yet (``[]`` when all can).

    ``fetch`` returns a ServeStatus (default ``serve.status``). An answer younger than
    ``ttl_s`` is reused; one younger than ``max_age_s`` is reused while a fresh one is
    fetched in the background; an older one (or none) is waited for. A failing fetch counts
    as "nothing is known to be ready".
    """

    def __init__(
        self, app: str, deployments, fetch=None, ttl_s: float = 1.0, max_age_s: float = 5.0, clock=time.monotonic
    ):
        self.app, self.deployments, self.ttl_s, self.max_age_s, self.clock = (
            app,
            list(deployments),
            ttl_s,
            max_age_s,
            clock,
        )
        self.fetch = fetch or _serve_status
        self.ever_ready = False
        self._at, self._value, self._inflight = -1e18, list(self.deployments), None

    async def check(self) -> list[str]:
        """The deployments without a RUNNING replica."""
        age = self.clock() - self._at
        if age <= self.ttl_s:
            return self._value
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._refresh())
        if age <= self.max_age_s:
            return self._value  # fresh enough; the refresh lands for the next check
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> list[str]:
        try:
            status = await asyncio.to_thread(self.fetch)
            value = not_ready(status, self.app, self.deployments)
        except Exception:  # noqa: BLE001 - the controller unreachable: nothing is known to be ready
            value = list(self.deployments)
        self._at, self._value = self.clock(), value
        self.ever_ready = self.ever_ready or not value
        return value


def _serve_status():
    from ray import serve

    return serve.status()
