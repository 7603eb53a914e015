"""What the ingress answers besides running steps: the JSON of a session (no arrays leave the server),
its state to and from bytes off the event loop, ids, owners and the web page's files."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import numpy as np
from fastapi import Request
from fastapi.responses import FileResponse

from dugray.nig import NIG
from dugray.session import OUTPUTS, SessionState, image_from_bytes, image_to_bytes, uncertainty_maps
from serve.blobs import SID
from serve.docs import doc_file
from serve.errors import ApiError, unknown_session

WEB_FILES = ("index.html", "app.js", "style.css")


def uncertainty_summary(nig: NIG) -> dict:
    """Mean epistemic and aleatoric uncertainty over the finite pixels of a (fused) NIG."""
    maps = uncertainty_maps(nig)
    return {f"{k}_mean": _finite_mean(maps[k]) for k in ("epistemic", "aleatoric")}


def session_view(sid: str, state: SessionState, uncertainty: dict, prefix: str = "/v1/sessions") -> dict:
    """What clients see: sizes, round, proposals (full-resolution boxes), summaries, timings."""
    h, w = state.full_shape
    wh, ww = state.work_shape
    return {
        "id": sid,
        "width": w,
        "height": h,
        "work_width": ww,
        "work_height": wh,
        "round": len(state.rounds),
        "proposals": [{"index": i, "box": list(p.box), "score": float(p.score)} for i, p in enumerate(state.proposals)],
        "uncertainty": uncertainty,
        "labels": len(state.label_log),
        "refined": state.refined is not None,
        "solve": {"enabled": state.config.solve, **state.solve_info},
        "timings": dict(state.timings[-1]) if state.timings else {},
        "links": {name: f"{prefix}/{sid}/{name}.png" for name in OUTPUTS},
    }


def with_request_time(view: dict, t0: float) -> dict:
    """``view`` with the request's wall time since ``t0`` (perf_counter) added to its timings."""
    return {**view, "timings": {**view["timings"], "request_s": time.perf_counter() - t0}}


async def state_to_bytes(state: SessionState) -> bytes:
    """The state without its full-size image (stored once, apart: :func:`image_bytes`), serialised in a
    worker thread: never on the event loop that answers /v1/health."""
    return await asyncio.to_thread(state.to_bytes, image=False)


async def image_bytes(state: SessionState) -> bytes:
    """The session's full-size image as stored beside its state, when the session is made."""
    return await asyncio.to_thread(image_to_bytes, state.image)


async def state_from_bytes(blob: bytes, image: bytes | None = None) -> SessionState:
    """:meth:`SessionState.from_bytes` in a worker thread, with the stored ``image`` when the caller
    needs it (the outputs; a round reads everything but the image)."""

    def load():
        return SessionState.from_bytes(blob, None if image is None else image_from_bytes(image))

    return await asyncio.to_thread(load)


def _finite_mean(a: np.ndarray) -> float | None:
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a)
    return float(a[ok].mean()) if ok.any() else None


def owner_of(request: Request) -> str | None:
    """Who makes the request (set by serve.access.RequestGuard): ``key:...`` or ``addr:...``."""
    return getattr(request.state, "owner", None)


def checked_sid(sid: str) -> str:
    """A session id that can be one (else 404 before any work): the store's ids are 32 hex digits."""
    if not SID.fullmatch(sid):
        raise unknown_session(sid[:64])
    return sid


def model_id(uri: str) -> str:
    """'default', or a short hash of the model's URI: /v1/health tells versions apart without paths."""
    return uri if uri == "default" else "sha256:" + hashlib.sha256(uri.encode()).hexdigest()[:12]


def web_file(name: str) -> FileResponse:
    """A file of the web page, looked up beside this module where the replica imported it.

    A module-level function is pickled by reference, so the path is the replica's own,
    not the one of the process that built the app.
    """
    if name not in WEB_FILES:
        docs = doc_file(name)  # Swagger UI's files, for /docs (serve/docs.py)
        if docs is None:
            raise ApiError(404, "not found", name)
        return docs
    return FileResponse(Path(__file__).parent / "static" / name, headers={"cache-control": "no-cache"})
