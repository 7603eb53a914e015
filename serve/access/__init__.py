"""Who may call the API and how much: API keys, per-client rate limits, body limits, origins.

Plain Python (no Ray but :func:`replica_gate`), one concern a module: ``keys``, ``rates``,
``proxies`` (client address), ``browser`` (Host / Origin, security headers), ``bodies``,
``drain``, ``routes`` (what is open), ``policy`` (the limits) and ``guard`` (the middleware).
:mod:`serve.app` installs :class:`RequestGuard` in front of every route, so nothing (not even a
JSON body's parsing) runs for a request that is refused. Every decision is made on the **route
path within the app** (less the ASGI ``root_path``: Serve's ``route_prefix`` and a proxy's root
path), and what is not named open is closed:

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
  and an IPv4-mapped address as its IPv4), used for quotas only: the peer's address, or the one
  a configured proxy (``trusted_proxies``) forwarded in ``X-Forwarded-For``; a forwarded address
  from anyone else is never believed.
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
- **draining**: the guard counts the requests in flight; once :meth:`Gate.drain` was called
  (a clean stop), new requests get 503 "stopping" and the caller waits for the ones in flight
  to finish before Serve shuts down.

The state (policy, requests in flight) is the replica's :class:`Gate`, never a class's.
"""

from serve.access.bodies import buffered, counting
from serve.access.browser import DOCS_CSP, PAGE_CSP, SAFE_METHODS, SECURITY_HEADERS, check_browser, host_allowed
from serve.access.drain import InFlight
from serve.access.guard import UNIQUE_HEADERS, Gate, RequestGuard, replica_gate
from serve.access.keys import KeyRing, key_id, presented_key
from serve.access.policy import Policy
from serve.access.proxies import IPV6_OWNER_PREFIX, PROXY_ENV, Networks, address_owner, client_address, set_proxy_env
from serve.access.rates import RateLimiter
from serve.access.routes import DOC_PATHS, OPEN_PATHS, STATIC, UPLOAD_ROUTES, route_path

__all__ = [
    "DOCS_CSP",
    "DOC_PATHS",
    "IPV6_OWNER_PREFIX",
    "OPEN_PATHS",
    "PAGE_CSP",
    "PROXY_ENV",
    "SAFE_METHODS",
    "SECURITY_HEADERS",
    "STATIC",
    "UNIQUE_HEADERS",
    "UPLOAD_ROUTES",
    "Gate",
    "InFlight",
    "KeyRing",
    "Networks",
    "Policy",
    "RateLimiter",
    "RequestGuard",
    "address_owner",
    "buffered",
    "check_browser",
    "client_address",
    "counting",
    "host_allowed",
    "key_id",
    "presented_key",
    "replica_gate",
    "route_path",
    "set_proxy_env",
]
