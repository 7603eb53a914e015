"""Who may call the API and how much: API keys, per-client rate limits, body limits, origins.

Plain Python (no Ray, no FastAPI state), tested on its own; :mod:`serve.app` installs
:class:`RequestGuard` as an ASGI middleware in front of every route, so nothing (not
even a JSON body's parsing) runs for a request that is refused. Every decision is made on
the **route path within the app** (the path less the ASGI ``root_path``, which holds
Serve's ``route_prefix`` and a proxy's root path), and what is not named open is closed:

- **open** (no key, no rate limit): ``/`` (the web page), ``/static/NAME`` and
  ``/v1/health``. Everything else, ``/openapi.json`` and unknown paths included, is an
  API route.
- **API keys** (``ServeSettings.api_keys`` or ``DUGRAY_API_KEYS``): an API route needs
  ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (401 otherwise). The request is then
  owned by ``key:<sha256 of the key, 16 hex>``: the sessions it creates belong to that key.
  The interactive docs (``/docs``) are off (404): their page runs an inline script, and the
  web page keeps its key on this origin. A missing or wrong key costs the client's address a
  token of the rate limit (429 past it), so keys cannot be guessed at full speed. Without keys,
  the owner is the client address (``addr:1.2.3.4``; IPv6 by its /64, ``addr:2001:db8::/64``,
  and an IPv4-mapped address as its IPv4), used for quotas only: the peer's address, or the one a configured
  proxy (``trusted_proxies``) forwarded in ``X-Forwarded-For``; a forwarded address from
  anyone else is never believed.
- **browsers** (without keys): a request must name this server in ``Host`` (an IP address
  or one of ``allowed_hosts``: no DNS rebinding), and a request that changes something
  must come from a page of this origin (``Origin``), so another web site cannot make a
  visitor's browser use a local server (403).
- **rate limit**: a token bucket per owner and ingress replica (``rate_limit_per_s``, ``rate_burst``); 429.
- **bodies**: one ``Content-Type`` and one ``Content-Length`` (400 for two). The limit
  is the route's: ``max_upload_bytes`` for the upload routes (:data:`UPLOAD_ROUTES`),
  ``max_json_bytes`` for every other; a JSON body is read whole here, streamed or not,
  and refused with 413 past its limit before FastAPI parses it.
- **headers**: every response carries a Content-Security-Policy (no frames, nothing
  from other origins) and its companions (:data:`SECURITY_HEADERS`).
- **draining**: the guard counts the requests in flight; once :meth:`RequestGuard.drain`
  was called (a clean stop), new requests get 503 "stopping" and the caller waits for the
  ones in flight to finish before Serve shuts down.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import re
import threading
import time
from collections import Counter, OrderedDict
from urllib.parse import urlsplit

from serve.errors import ApiError

OPEN_PATHS = ("/", "/v1/health")
"""Route paths anyone may call (no key): the web page, and health checks of load balancers."""
STATIC = re.compile(r"/static/[^/]+")
"""The web page's files (serve/static), open like the page."""
DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
"""FastAPI's interactive docs: off on a server with keys (their page runs an inline script)."""
UPLOAD_ROUTES = (("POST", "/v1/sessions"), ("POST", "/v1/matte"))
"""The routes that take a multipart upload (limit ``max_upload_bytes``); every other takes
at most ``max_json_bytes``."""
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
"""Methods a foreign page's request may use (they change nothing); others need the page's Origin."""
UNIQUE_HEADERS = (b"content-type", b"content-length", b"host", b"authorization", b"x-api-key", b"origin")
"""Headers a request may send once: two of them would be read one way here and another way by the route."""

PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""The page and the API: only this origin's own files, never in a frame (no clickjacking)."""
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self' 'unsafe-inline'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
"""/docs (only on a server without keys): swagger-ui from this app's own files (serve/docs.py) and
its inline start-up script; nothing from another origin."""
SECURITY_HEADERS = ((b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"))


def key_id(key: str) -> str:
    """The owner id of an API key: a hash, so keys never appear in logs, views or storage."""
    return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


IPV6_OWNER_PREFIX = 64
"""IPv6 clients are grouped by their /64: one subscriber gets a whole /64 (2**64 addresses), so an
address per request would be a new owner per request (a fresh rate bucket, session and byte quotas)."""


def address_owner(address: str) -> str:
    """The owner id of a client address, at most 50 characters: ``addr:`` and the address as a
    network operator counts clients: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6 by its
    /64 (``addr:2001:db8:1:2::/64``); a hash of anything else (never a string a client chose)."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return "addr:#" + hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:16]
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return "addr:" + ipaddress.ip_network(f"{ip}/{IPV6_OWNER_PREFIX}", strict=False).compressed
    return "addr:" + ip.compressed


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request presents (``Authorization: Bearer`` or ``X-API-Key``), or None."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key", "").strip() or None


def route_path(scope) -> str:
    """The path within the app: ``path`` less ``root_path`` (where Serve puts the route prefix)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):] or "/"
    return path


class KeyRing:
    """The server's API keys; ``owner`` checks one in constant time per key."""

    def __init__(self, keys):
        self._keys = [k.encode("utf-8") for k in keys if k]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def owner(self, presented: str | None) -> str:
        """The owner id of a valid key; ApiError 401 for a missing or unknown one."""
        if presented is None:
            raise ApiError(401, "API key required", "send Authorization: Bearer KEY or X-API-Key: KEY")
        given = presented.encode("utf-8")
        if not any(hmac.compare_digest(given, k) for k in self._keys):
            raise ApiError(401, "invalid API key")
        return key_id(presented)


class RateLimiter:
    """Token buckets per owner: ``rate`` requests per second on average, ``burst`` at once.

    Bounded: at most ``max_owners`` buckets are kept (least recently used dropped; a dropped
    owner starts again with a full bucket), so many clients cannot grow it without bound.
    """

    def __init__(self, rate: float, burst: float, clock=time.monotonic, max_owners: int = 10_000):
        if rate > 0 and burst < 1:
            raise ValueError(f"a rate limit needs a burst of at least 1 request, got {burst}")
        self.rate, self.burst, self.clock, self.max_owners = rate, burst, clock, max_owners
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, owner: str) -> float:
        """Take one token for ``owner``: 0.0 when granted, else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.pop(owner, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[owner] = (tokens - 1 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_owners:
                self._buckets.popitem(last=False)
            return wait


class Networks:
    """A set of IP networks (``trusted_proxies``): ``address in networks``."""

    def __init__(self, specs):
        self.nets = [ipaddress.ip_network(s.strip(), strict=False) for s in specs]

    def __bool__(self) -> bool:
        return bool(self.nets)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self.nets)


def client_address(peer: str, forwarded: list[str], proxies: Networks) -> str:
    """The address a request comes from, for quotas: the peer's, unless the peer is one of
    ``proxies`` and says in ``X-Forwarded-For`` whom it forwards (the right-most hop that is
    not a proxy). A peer that is not a proxy cannot choose its address; and a peer address
    that appears among the hops was put there by a server in front that believed the header
    (uvicorn trusts loopback unless FORWARDED_ALLOW_IPS says otherwise): all such requests
    share one address, so rotating the header gains nothing."""
    hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
    if not hops:
        return peer
    if peer in proxies:
        for hop in reversed(hops):
            if hop not in proxies:
                return hop
        return hops[0]
    if peer in hops or peer.strip("[]") in (h.strip("[]") for h in hops):
        return "forwarded-by-an-untrusted-proxy"
    return peer


class Policy:
    """The limits one ingress replica enforces (from its ServeSettings)."""

    def __init__(self, keys, rate: float, burst: float, max_upload_bytes: int, max_json_bytes: int,
                 trusted_proxies=(), allowed_hosts=("localhost",)):
        self.keys = KeyRing(keys)
        self.limiter = RateLimiter(rate, burst)
        self.max_upload_bytes, self.max_json_bytes = max_upload_bytes, max_json_bytes
        self.proxies = Networks(trusted_proxies)
        self.allowed_hosts = {h.lower().strip("[]") for h in allowed_hosts}

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        """The policy of a :class:`serve.settings.ServeSettings`."""
        return cls(settings.api_keys, settings.rate_limit_per_s, settings.rate_burst, settings.max_upload_bytes,
                   settings.max_json_bytes, settings.trusted_proxies, settings.allowed_hosts)

    def host_allowed(self, host: str | None) -> bool:
        """Whether a ``Host`` header names this server: an IP address (no DNS name to rebind), a
        name in ``allowed_hosts``, or any with ``*`` there; a request without one is let through."""
        if host is None or "*" in self.allowed_hosts:
            return True
        try:
            name = urlsplit("//" + host).hostname
        except ValueError:
            return False
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in self.allowed_hosts


class RequestGuard:
    """ASGI middleware: key check, rate limit, origin and body limit before any route runs.

    The policy is the replica's (:meth:`install`, called by the ingress when it starts: the
    FastAPI app itself is built before any settings exist). The owner id is put in
    ``scope["state"]["owner"]`` (``request.state.owner`` in a route).
    """

    policy: Policy | None = None
    inflight = 0
    draining = False

    def __init__(self, app):
        self.app = app

    @classmethod
    def install(cls, policy: Policy) -> None:
        """Use ``policy`` for every request of this process."""
        cls.policy, cls.draining = policy, False

    @classmethod
    async def drain(cls, timeout_s: float, clock=time.monotonic) -> int:
        """Refuse new requests (503 "stopping") and wait up to ``timeout_s`` for those in flight;
        returns how many were still running."""
        import asyncio

        cls.draining = True
        deadline = clock() + timeout_s
        while cls.inflight and clock() < deadline:
            await asyncio.sleep(0.05)
        return cls.inflight

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        docs = self.policy is not None and not self.policy.keys and route_path(scope) in DOC_PATHS
        send = _with_security_headers(send, DOCS_CSP if docs else PAGE_CSP)
        if self.policy is None:
            return await _send_error(send, ApiError(503, "starting", "the server is not ready yet"))
        if self.draining:
            return await _send_error(send, ApiError(503, "stopping", "the server is shutting down",
                                                    headers={"Connection": "close"}))
        RequestGuard.inflight += 1
        try:
            return await self.policy_call(self.policy, scope, receive, send)
        finally:
            RequestGuard.inflight -= 1

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
                _check_browser(policy, headers, method)
            owner = None
            if route in DOC_PATHS and policy.keys:
                raise ApiError(404, "not found", "the interactive docs are off on a server with API keys; "
                               "GET /openapi.json with your key")
            if route not in OPEN_PATHS and not STATIC.fullmatch(route):
                peer = (scope.get("client") or ("unknown", 0))[0]
                forwarded = [v.decode("latin-1") for k, v in raw if k == b"x-forwarded-for"]
                address = address_owner(client_address(peer, forwarded, policy.proxies))
                if policy.keys:
                    owner = _key_owner(policy, headers, address)
                else:
                    owner = address
                wait = policy.limiter.acquire(owner)
                if wait > 0:
                    raise ApiError(429, "too many requests", f"retry after {math.ceil(wait)} s",
                                   headers={"Retry-After": str(math.ceil(wait))})
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ApiError(413, "request body too large", f"{declared} bytes; the limit is {limit}")
            if not upload:
                receive = await _buffered(receive, limit)
        except ApiError as exc:
            return await _send_error(send, exc)
        scope.setdefault("state", {})["owner"] = owner
        return await self.app(scope, _counting(receive, limit) if upload else receive, send)


def _key_owner(policy: Policy, headers: dict[str, str], address: str) -> str:
    """The owner of the request's key; a refused key (401) costs its address a token, so guessing
    keys is rate-limited like any other request (429 once the address's bucket is empty)."""
    try:
        return policy.keys.owner(presented_key(headers))
    except ApiError:
        wait = policy.limiter.acquire("refused:" + address)
        if wait > 0:
            raise ApiError(429, "too many requests", f"retry after {math.ceil(wait)} s",
                           headers={"Retry-After": str(math.ceil(wait))}) from None
        raise


def _check_browser(policy: Policy, headers: dict[str, str], method: str) -> None:
    """403 for a request a foreign web page made a browser send (a server without keys)."""
    if not policy.host_allowed(headers.get("host")):
        raise ApiError(403, "unknown host", "this server answers to its IP address or to allowed_hosts")
    origin = headers.get("origin")
    if method not in SAFE_METHODS and origin is not None:
        try:
            same = urlsplit(origin).netloc.lower() == headers.get("host", "").lower()
        except ValueError:
            same = False
        if not same:
            raise ApiError(403, "cross-origin request refused", "only this server's own page may change sessions")


async def _buffered(receive, limit: int):
    """Read the whole body now (at most ``limit`` bytes, else 413); a ``receive`` that replays it."""
    chunks, seen = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            return _replay([message], receive)
        seen += len(message.get("body", b""))
        if seen > limit:
            raise ApiError(413, "request body too large", f"more than {limit} bytes")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)


def _replay(messages: list, receive):
    async def replayed():
        return messages.pop(0) if messages else await receive()

    return replayed


def _counting(receive, limit: int):
    """``receive`` that raises a 413 ApiError once more than ``limit`` body bytes have arrived."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ApiError(413, "request body too large", f"more than {limit} bytes")
        return message

    return wrapped


def _with_security_headers(send, csp: str):
    """``send`` that adds the CSP and its companions to the response's headers."""
    extra = [(b"content-security-policy", csp.encode()), *SECURITY_HEADERS]

    async def wrapped(message):
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            message = {**message, "headers": [*message.get("headers", []), *[h for h in extra if h[0] not in names]]}
        await send(message)

    return wrapped


async def _send_error(send, exc: ApiError) -> None:
    body = json.dumps({"error": exc.error, "detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in (exc.headers or {}).items()]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


PROXY_ENV = {"FORWARDED_ALLOW_IPS": ""}
"""Environment for Ray's HTTP proxy: uvicorn believes ``X-Forwarded-For`` from loopback unless
told otherwise; empty, it believes nobody and the guard sees the real peer (it trusts the
proxies of ``trusted_proxies`` itself). Set before Ray starts (its workers inherit it)."""


def set_proxy_env(environ=None) -> None:
    """Put :data:`PROXY_ENV` into ``environ`` (default ``os.environ``) before Ray starts."""
    import os

    (os.environ if environ is None else environ).update(PROXY_ENV)
