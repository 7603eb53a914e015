"""Which routes are open and which take uploads, by the path within the app (whatever the prefix):
what is not named open is closed."""

from __future__ import annotations

import re

OPEN_PATHS = ("/", "/v1/health")
"""Route paths anyone may call (no key): the web page, and health checks of load balancers."""
STATIC = re.compile(r"/static/[^/]+")
"""The web page's files (serve/static), open like the page."""
DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
"""FastAPI's interactive docs: off on a server with keys (their page runs an inline script)."""
UPLOAD_ROUTES = (("POST", "/v1/sessions"), ("POST", "/v1/matte"))
"""The routes that take a multipart upload (limit ``max_upload_bytes``); every other takes
at most ``max_json_bytes``."""


def route_path(scope) -> str:
    """The path within the app: ``path`` less ``root_path`` (where Serve puts the route prefix)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def is_open(route: str) -> bool:
    """Whether anyone may call ``route`` (no key, no rate limit): the page, its files, health."""
    return route in OPEN_PATHS or bool(STATIC.fullmatch(route))
