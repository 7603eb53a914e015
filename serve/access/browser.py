"""What keeps browsers safe: Host / Origin checks (another web site cannot drive a local server
through a visitor's browser) and the security headers of every response (no frames, no other origins)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from serve.errors import ApiError

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
"""Methods a foreign page's request may use (they change nothing); others need the page's Origin."""

PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The page and the API: only this origin's own files, never in a frame (no clickjacking)."""
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self' 'unsafe-inline'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""/docs (only on a server without keys): swagger-ui from this app's own files (serve/docs.py) and
its inline start-up script; nothing from another origin."""
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def host_allowed(allowed_hosts: set[str], host: str | None) -> bool:
    """Whether a ``Host`` header names this server: an IP address (no DNS name to rebind), a
    name in ``allowed_hosts``, or any with ``*`` there; a request without one is let through."""
    if host is None or "*" in allowed_hosts:
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
        return name in allowed_hosts


def check_browser(allowed_hosts: set[str], headers: dict[str, str], method: str) -> None:
    """403 for a request a foreign web page made a browser send (a server without keys)."""
    if not host_allowed(allowed_hosts, headers.get("host")):
        raise ApiError(403, "unknown host", "this server answers to its IP address or to allowed_hosts")
    origin = headers.get("origin")
    if method not in SAFE_METHODS and origin is not None:
        try:
            same = urlsplit(origin).netloc.lower() == headers.get("host", "").lower()
        except ValueError:
            same = False
        if not same:
            raise ApiError(403, "cross-origin request refused", "only this server's own page may change sessions")


def with_security_headers(send, csp: str):
    """``send`` that adds the CSP and its companions to the response's headers."""
    extra = [(b"content-security-policy", csp.encode()), *SECURITY_HEADERS]

    async def wrapped(message):
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            message = {**message, "headers": [*message.get("headers", []), *[h for h in extra if h[0] not in names]]}
        await send(message)

    return wrapped
