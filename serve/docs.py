"""``/docs`` that works offline: Swagger UI's files served by this app, not fetched from a CDN.

FastAPI's own ``/docs`` page loads swagger-ui from cdn.jsdelivr.net, so it is blank on a machine
without internet. Here the page names the bundle, stylesheet and icon of the ``fastapi-offline``
package (a maintained PyPI package that ships Swagger UI's dist files for exactly this) under
``static/``, where the web page's files are served too (open, like them). Every URL is relative,
so the page works under a route prefix; the page's inline start-up script is what
``serve.access.DOCS_CSP`` allows, and nothing from another origin.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOC_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")
"""Swagger UI's files the docs page loads, by the names it asks ``static/`` for."""


def doc_file(name: str) -> FileResponse | None:
    """One of :data:`DOC_FILES` (cached a day: a package's files change only with its version), else None."""
    if name not in DOC_FILES:
        return None
    return FileResponse(ASSETS / name, headers={"cache-control": "public, max-age=86400"})


def install_docs(api: FastAPI) -> None:
    """Add ``GET /docs`` to ``api`` (made with ``docs_url=None``): Swagger UI from :func:`doc_file`."""

    @api.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{api.title}: API docs",
            swagger_js_url="static/swagger-ui-bundle.js",
            swagger_css_url="static/swagger-ui.css",
            swagger_favicon_url="static/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )  # no badge from swagger.io
