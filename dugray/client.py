"""A small typed client for dugray's HTTP API (``serve/app.py``, routes under ``/v1``).

    from dugray.client import DugrayClient

    with DugrayClient("http://127.0.0.1:8000") as api:
        s = api.create_session("photo.png")                 # round 1: matte + proposals
        s = api.label(s.id, [(0, "fg"), (1, "bg"), ((10, 20, 40, 60), "transition")])
        s = api.undo(s.id)                                  # back to round 1, exactly
        s = api.label(s.id, [(0, "fg"), (1, "bg")])
        s = api.refine(s.id)
        open("cutout.png", "wb").write(api.png(s.id, "cutout"))
        api.delete(s.id)
        open("alpha.png", "wb").write(api.cutout("photo.png", output="alpha"))   # one shot

A server with API keys needs one: ``DugrayClient(url, api_key=KEY)``, or the
``DUGRAY_API_KEY`` environment variable (sent as ``Authorization: Bearer KEY``).

Images (and trimaps / masks) are a file path, the file's bytes, or an RGB uint8 array
(encoded to PNG here). A refused request raises :class:`DugrayApiError` with the API's
``{"error", "detail"}``; a server that cannot be reached raises :class:`ServerUnreachable`.
It needs only ``requests`` (and OpenCV for arrays), not torch or Ray.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import requests

if TYPE_CHECKING:
    import numpy as np

ImageInput = Union[str, Path, bytes, "np.ndarray"]
API_KEY_ENV = "DUGRAY_API_KEY"
"""The API key the client (and the CLI) send when none is given explicitly."""
OUTPUTS = ("image", "alpha", "cutout", "epistemic", "aleatoric")


class DugrayApiError(Exception):
    """The API refused a request: HTTP ``status``, its short ``error`` and ``detail``."""

    def __init__(self, status: int, error: str, detail: Any = None):
        super().__init__(f"{status} {error}" + (f": {detail}" if detail not in (None, "", []) else ""))
        self.status, self.error, self.detail = status, error, detail


class ServerUnreachable(ConnectionError):
    """No answer from the server (refused, DNS, timeout): nothing was done there."""


@dataclass(frozen=True)
class Proposal:
    """A patch the server asks about: ``box`` = (y0, x0, y1, x1) in full-resolution pixels."""

    index: int
    box: tuple[int, int, int, int]
    score: float


@dataclass(frozen=True)
class SessionView:
    """A session as the API shows it (``GET /v1/sessions/{id}``); ``raw`` is the whole JSON."""

    id: str
    width: int
    height: int
    round: int
    proposals: list[Proposal]
    uncertainty: dict[str, float | None]
    labels: int
    refined: bool
    timings: dict[str, float]
    raw: dict = field(repr=False, compare=False)

    @property
    def solve(self) -> dict:
        """The session's solve: ``enabled`` and, after a solve, band_fraction, iterations, guard, seconds."""
        return self.raw.get("solve", {"enabled": False})

    @classmethod
    def from_json(cls, d: dict) -> SessionView:
        """The view of the API's session JSON (``labels``, ``refined`` and ``timings`` optional)."""
        props = [Proposal(int(p["index"]), tuple(p["box"]), float(p["score"])) for p in d["proposals"]]
        return cls(
            d["id"],
            d["width"],
            d["height"],
            d["round"],
            props,
            d["uncertainty"],
            d.get("labels", 0),
            d.get("refined", False),
            d.get("timings", {}),
            d,
        )


class DugrayClient:
    """One API endpoint (``base_url`` as printed by ``dugray serve``), one HTTP connection pool."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", timeout: float = 300.0, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool (done on leaving a ``with`` block too)."""
        self.http.close()

    # ---- the API

    def health(self) -> dict:
        """``GET /v1/health``: status, the model served and the session store's counters."""
        return self._call("GET", "/v1/health").json()

    def create_session(
        self,
        image: ImageInput,
        trimap: ImageInput | None = None,
        mask: ImageInput | None = None,
        solve: bool | None = None,
    ) -> SessionView:
        """Upload an image (and a trimap, or a binary mask); the server runs round 1.

        ``solve`` switches the uncertainty-guided solve for this session (None: the server's default).
        """
        return SessionView.from_json(
            self._call("POST", "/v1/sessions", params=_solve_param(solve), files=_files(image, trimap, mask)).json()
        )

    def set_solve(self, sid: str, enabled: bool) -> SessionView:
        """Switch the uncertainty-guided solve of a session on or off."""
        return SessionView.from_json(self._call("PATCH", f"/v1/sessions/{sid}", json={"solve": bool(enabled)}).json())

    def get(self, sid: str) -> SessionView:
        """The session's current view (``GET /v1/sessions/{id}``); DugrayApiError 404 if unknown or expired."""
        return SessionView.from_json(self._call("GET", f"/v1/sessions/{sid}").json())

    def label(self, sid: str, labels: Sequence[tuple]) -> SessionView:
        """Answer proposals: ``[(index or (y0, x0, y1, x1), "fg" | "bg" | "transition" | "unknown"), ...]``."""
        body = {"labels": [_label_item(target, label) for target, label in labels]}
        return SessionView.from_json(self._call("POST", f"/v1/sessions/{sid}/labels", json=body).json())

    def undo(self, sid: str) -> SessionView:
        """Back to the round before, exactly as it was shown (its refinement dropped); at round 1
        :class:`DugrayApiError` 409 "nothing to undo"."""
        return SessionView.from_json(self._call("POST", f"/v1/sessions/{sid}/undo").json())

    def refine(self, sid: str) -> SessionView:
        """Refine the session's matte where aleatoric uncertainty is high (until the next round)."""
        return SessionView.from_json(self._call("POST", f"/v1/sessions/{sid}/refine").json())

    def png(self, sid: str, output: str = "cutout") -> bytes:
        """PNG bytes of ``alpha``, ``cutout`` (RGBA), ``epistemic``, ``aleatoric`` or ``image`` (the input)
        at full size."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        return self._call("GET", f"/v1/sessions/{sid}/{output}.png").content

    def delete(self, sid: str) -> None:
        """Delete the session on the server; DugrayApiError 404 if it is unknown."""
        self._call("DELETE", f"/v1/sessions/{sid}")

    def cutout(
        self,
        image: ImageInput,
        output: str = "rgba",
        trimap: ImageInput | None = None,
        mask: ImageInput | None = None,
        refine: bool | None = None,
        solve: bool | None = None,
        bg_color: str | None = None,
        format: str | None = None,
        crop: bool = False,
        crop_margin: str | int | None = None,
        max_side: int | None = None,
    ) -> bytes:
        """One shot, no session: the file bytes of the RGBA cutout (``rgba``) or the alpha matte (``alpha``).

        As background-removal services deliver it: ``bg_color`` (hex) composites over a colour,
        ``format`` is png (default), jpg or webp, ``crop`` (with ``crop_margin``: pixels, "12px"
        or "10%") crops to the object, ``max_side`` returns a preview size. ``refine`` and ``solve``
        left None take the server's one-shot defaults (solved, not refined), those of ``dugray cutout``.
        """
        if output not in ("rgba", "alpha"):
            raise ValueError(f"output must be 'rgba' or 'alpha', got {output!r}")
        params = {"output": output, **_solve_param(solve)}
        if refine is not None:
            params["refine"] = str(bool(refine)).lower()
        extra = {"bg_color": bg_color, "format": format, "crop_margin": crop_margin, "max_side": max_side}
        params.update({k: str(v) for k, v in extra.items() if v is not None})
        if crop:
            params["crop"] = "true"
        return self._call("POST", "/v1/matte", params=params, files=_files(image, trimap, mask)).content

    # ---- plumbing

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            r = self.http.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServerUnreachable(f"no answer from {self.base_url}: {type(exc).__name__}") from exc
        if r.status_code < 400:
            return r
        try:
            body = r.json()
        except ValueError:  # not JSON: a proxy in between, a crash page
            body = None
        if isinstance(body, dict) and "error" in body:
            raise DugrayApiError(r.status_code, str(body["error"]), body.get("detail"))
        raise DugrayApiError(r.status_code, r.reason or "error", r.text[:200])


def _solve_param(solve: bool | None) -> dict:
    return {} if solve is None else {"solve": str(bool(solve)).lower()}


def _label_item(target, label: str) -> dict:
    if isinstance(target, int) and not isinstance(target, bool):
        return {"index": target, "label": label}
    values = [int(v) for v in target]
    if len(values) not in (2, 4):
        raise ValueError(
            f"a label target is a proposal index, a (y, x) point or a (y0, x0, y1, x1) box, got {target!r}"
        )
    return {"box" if len(values) == 4 else "point": values, "label": label}


def _files(image, trimap, mask) -> dict:
    if trimap is not None and mask is not None:
        raise ValueError("give either trimap or mask, not both")
    parts = {"image": image, "trimap": trimap, "mask": mask}
    return {
        name: (f"{name}.png", _image_bytes(value), "application/octet-stream")
        for name, value in parts.items()
        if value is not None
    }


def _image_bytes(image: ImageInput) -> bytes:
    """An upload's bytes: a file's contents, bytes as they are, an RGB/grey uint8 array as PNG."""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, (str, Path)):
        return Path(image).expanduser().read_bytes()
    import numpy as np

    from dugray.data.io import encode_png

    try:
        return encode_png(image)
    except OSError:
        a = np.asarray(image)
        raise ValueError(f"cannot encode an array of shape {a.shape} and dtype {a.dtype} as PNG") from None
