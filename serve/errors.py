"""Errors as JSON ``{"error": ..., "detail": ...}`` with the right status, never a bare 500.

:class:`ApiError` is raised anywhere in the request path for a client mistake;
:func:`install_error_handlers` turns it, FastAPI's validation errors and Starlette's
404/405 into that shape, and any other exception into a 500 that names no internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("ray.serve")


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, a short ``error``, optional ``detail``."""

    def __init__(self, status: int, error: str, detail=None, headers: dict | None = None):
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


SAVE_ERRORS = {  # the session store's refusals (serve/store.py) as HTTP
    "missing": (404, "session expired or deleted"),
    "conflict": (409, "session changed meanwhile; reload it and retry"),
    "too_large": (413, "session state too large for the store"),
    "quota": (
        429,
        "too many live sessions",
        "delete one of yours (DELETE /v1/sessions/{id}) or wait for one to expire",
    ),
    "share": (
        429,
        "session store share used up",
        "your sessions hold your share of the store's bytes; delete one of "
        "yours (DELETE /v1/sessions/{id}) or wait for one to expire",
    ),
    "storage": (503, "session storage failed", "the session could not be written; retry"),
}


def save_error(reason: str, sid: str, ttl_s: float) -> ApiError:
    """The refusal for a session the store would not save (``reason`` from SessionTable.put)."""
    status, error, detail = (SAVE_ERRORS[reason] + (None,))[:3]
    headers = {"Retry-After": str(min(60, int(ttl_s)))} if status == 429 else None
    return ApiError(status, error, detail if detail is not None else sid, headers=headers)


def unknown_session(sid: str) -> ApiError:
    """The 404 for a session id the store does not hold (never created, expired or deleted)."""
    return ApiError(404, "unknown session", sid)


def error_response(status: int, error: str, detail=None, headers: dict | None = None) -> JSONResponse:
    """The JSON error ``{"error", "detail"}`` with HTTP ``status`` (``detail`` made JSON-safe)."""
    return JSONResponse({"error": error, "detail": jsonable_encoder(detail)}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error shape on ``app`` for every kind of failure."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        detail = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]
        return error_response(422, "invalid request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception):
        log.exception("unhandled error in request", exc_info=exc)
        return error_response(500, "internal error", type(exc).__name__)
