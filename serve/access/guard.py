"""The ASGI middleware that composes the parts: every request is checked before any route runs.

Its state is a :class:`Gate` (the replica's policy and requests in flight), found per request, not
kept on a class: ``serve.ingress`` runs a copy of the FastAPI app, which the ingress cannot reach
when it starts, so in Serve the guard asks the replica for its ingress object's ``gate``
(:func:`replica_gate`); a plain app passes its gate directly.
"""

from __future__ import annotations

import json
from collections import Counter

from serve.access.bodies import buffered, check_declared, counting
from serve.access.browser import DOCS_CSP, PAGE_CSP, check_browser, with_security_headers
from serve.access.drain import InFlight
from serve.access.keys import presented_key
from serve.access.policy import Policy
from serve.access.proxies import address_owner, client_address
from serve.access.rates import take
from serve.access.routes import DOC_PATHS, UPLOAD_ROUTES, is_open, route_path
from serve.errors import ApiError

UNIQUE_HEADERS = (b"content-type", b"content-length", b"host", b"authorization", b"x-api-key", b"origin")
"""Headers a request may send once: two of them would be read one way here and another way by the route."""


class Gate:
    """One ingress replica's access state: its :class:`Policy` and its requests in flight."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.flight = InFlight()

    async def drain(self, timeout_s: float) -> int:
        """A clean stop: new requests get 503 "stopping"; waits for those in flight (how many were left)."""
        return await self.flight.drain(timeout_s)


def replica_gate(scope) -> Gate | None:
    """The ``gate`` of this Serve replica's ingress object; None outside a replica or while it starts."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        ingress = serve.get_replica_context().servable_object
    except RayServeException:
        return None
    return getattr(ingress, "gate", None)


class RequestGuard:
    """ASGI middleware: key check, rate limit, origin and body limit before any route runs.

    ``gate`` (a :class:`Gate`) or ``find_gate`` (scope -> Gate or None: 503 "starting") gives the
    state. The owner id is put in ``scope["state"]["owner"]`` (``request.state.owner`` in a route).
    """

    def __init__(self, app, gate: Gate | None = None, find_gate=None):
        self.app = app
        self.find_gate = find_gate or (lambda scope: gate)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        gate = self.find_gate(scope)
        docs = gate is not None and not gate.policy.keys and route_path(scope) in DOC_PATHS
        send = with_security_headers(send, DOCS_CSP if docs else PAGE_CSP)
        if gate is None:
            return await send_error(send, ApiError(503, "starting", "the server is not ready yet"))
        if gate.flight.draining:
            return await send_error(
                send, ApiError(503, "stopping", "the server is shutting down", headers={"Connection": "close"})
            )
        with gate.flight.one():
            return await self.policy_call(gate.policy, scope, receive, send)

    async def policy_call(self, policy: Policy, scope, receive, send):
        """Check one request against ``policy``, then pass it on (or answer the refusal)."""
        route, method = route_path(scope), scope.get("method", "GET")
        raw = [(k.lower(), v) for k, v in scope.get("headers", [])]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
        upload = (method, route) in UPLOAD_ROUTES
        limit = policy.max_upload_bytes if upload else policy.max_json_bytes
        try:
            counts = Counter(k for k, _ in raw if k in UNIQUE_HEADERS)
            twice = sorted(k.decode() for k, n in counts.items() if n > 1)
            if twice:
                raise ApiError(400, "duplicate header", f"{', '.join(twice)} may be sent once")
            if not policy.keys:
                check_browser(policy.allowed_hosts, headers, method)
            owner = None
            if route in DOC_PATHS and policy.keys:
                raise ApiError(
                    404,
                    "not found",
                    "the interactive docs are off on a server with API keys; GET /openapi.json with your key",
                )
            if not is_open(route):
                peer = (scope.get("client") or ("unknown", 0))[0]
                forwarded = [v.decode("latin-1") for k, v in raw if k == b"x-forwarded-for"]
                address = address_owner(client_address(peer, forwarded, policy.proxies))
                owner = key_owner(policy, headers, address) if policy.keys else address
                take(policy.limiter, owner)
            check_declared(headers, limit)
            if not upload:
                receive = await buffered(receive, limit)
        except ApiError as exc:
            return await send_error(send, exc)
        scope.setdefault("state", {})["owner"] = owner
        return await self.app(scope, counting(receive, limit) if upload else receive, send)


def key_owner(policy: Policy, headers: dict[str, str], address: str) -> str:
    """The owner of the request's key; a refused key (401) costs its address a token, so guessing
    keys is rate-limited like any other request (429 once the address's bucket is empty)."""
    try:
        return policy.keys.owner(presented_key(headers))
    except ApiError:
        take(policy.limiter, "refused:" + address)
        raise


async def send_error(send, exc: ApiError) -> None:
    """Answer a refusal as the app's JSON errors look (``WWW-Authenticate`` with a 401)."""
    body = json.dumps({"error": exc.error, "detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in (exc.headers or {}).items()]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
