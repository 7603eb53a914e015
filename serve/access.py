"""Who may call the API and how much: API keys, per-client rate limits, body limits.

Plain Python (no Ray, no FastAPI state), tested on its own; :mod:`serve.app` installs
:class:`RequestGuard` as an ASGI middleware in front of every route, so nothing (not
even a JSON body's parsing) runs for a request that is refused:

- **API keys** (``ServeSettings.api_keys`` or ``DUGRAY_API_KEYS``): every ``/v1`` route
  except ``/v1/health`` needs ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (401
  otherwise). The request is then owned by ``key:<sha256 of the key, 16 hex>``: the
  sessions it creates belong to that key. Without keys, the owner is the client address
  (``addr:1.2.3.4``), used for quotas only.
- **rate limit**: a token bucket per owner (``rate_limit_per_s``, ``rate_burst``); 429
  with ``Retry-After`` when it is empty. Per ingress replica.
- **body limits**: ``max_upload_bytes`` for multipart uploads, ``max_json_bytes`` for
  everything else (label lists), enforced on the declared length and on the bytes as
  they arrive (413).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections import OrderedDict

from serve.errors import ApiError

OPEN_PATHS = ("/v1/health",)
"""API paths anyone may call (no key): health checks of load balancers and orchestrators."""


def key_id(key: str) -> str:
    """The owner id of an API key: a hash, so keys never appear in logs, views or storage."""
    return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request presents (``Authorization: Bearer`` or ``X-API-Key``), or None."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key", "").strip() or None


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


class Policy:
    """The limits one ingress replica enforces (from its ServeSettings)."""

    def __init__(self, keys, rate: float, burst: float, max_upload_bytes: int, max_json_bytes: int):
        self.keys = KeyRing(keys)
        self.limiter = RateLimiter(rate, burst)
        self.max_upload_bytes, self.max_json_bytes = max_upload_bytes, max_json_bytes

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        """The policy of a :class:`serve.settings.ServeSettings`."""
        return cls(settings.api_keys, settings.rate_limit_per_s, settings.rate_burst, settings.max_upload_bytes,
                   settings.max_json_bytes)


class RequestGuard:
    """ASGI middleware: key check, rate limit and body limit before any route runs.

    The policy is the replica's (:meth:`install`, called by the ingress when it starts: the
    FastAPI app itself is built before any settings exist). The owner id is put in
    ``scope["state"]["owner"]`` (``request.state.owner`` in a route).
    """

    policy: Policy | None = None

    def __init__(self, app):
        self.app = app

    @classmethod
    def install(cls, policy: Policy) -> None:
        """Use ``policy`` for every request of this process."""
        cls.policy = policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.policy is None:
            return await _send_error(send, ApiError(503, "starting", "the server is not ready yet"))
        return await self.policy_call(self.policy, scope, receive, send)

    async def policy_call(self, policy: Policy, scope, receive, send):
        """Check one request against ``policy``, then pass it on (or answer the refusal)."""
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            owner = None
            if path.startswith("/v1/") and path not in OPEN_PATHS:
                client = scope.get("client") or ("unknown", 0)
                owner = policy.keys.owner(presented_key(headers)) if policy.keys else f"addr:{client[0]}"
                wait = policy.limiter.acquire(owner)
                if wait > 0:
                    raise ApiError(429, "too many requests", f"retry after {math.ceil(wait)} s",
                                   headers={"Retry-After": str(math.ceil(wait))})
            multipart = headers.get("content-type", "").startswith("multipart/")
            limit = policy.max_upload_bytes if multipart else policy.max_json_bytes
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ApiError(413, "request body too large", f"{declared} bytes; the limit is {limit}")
        except ApiError as exc:
            return await _send_error(send, exc)
        scope.setdefault("state", {})["owner"] = owner
        return await self.app(scope, _counting(receive, limit), send)


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


async def _send_error(send, exc: ApiError) -> None:
    body = json.dumps({"error": exc.error, "detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in (exc.headers or {}).items()]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
