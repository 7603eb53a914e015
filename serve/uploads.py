"""Request bodies: size-capped reading, and multipart/form-data parsed by python-multipart.

The parser is python-multipart's streaming ``MultipartParser`` (what Starlette's own form
parsing uses), with its limits on the headers of a part (count and line length) and ours
on the parts: a request carries at most :data:`MAX_PARTS` parts, each part's headers are
bounded, and every named part is kept in memory (no temporary files: the body is already
bounded by ``max_upload_bytes``). Parsing is CPU work, so
:func:`read_form` runs it in a worker thread: no upload can stall the event loop that
answers ``/v1/health``. Everything the client may get wrong raises
:class:`serve.errors.ApiError`.
"""

from __future__ import annotations

import asyncio

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from serve.errors import ApiError

MAX_PARTS = 8
"""Parts one upload may have (image, trimap, mask and a few the client adds): more is refused."""
MAX_HEADER_COUNT = 8
"""Headers per part (python-multipart's limit)."""
MAX_HEADER_SIZE = 4096
"""Bytes per part header line (python-multipart's limit): a longer Content-Disposition is refused."""
CHUNK = 64 * 1024
"""The body is fed to the parser in pieces of this size."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "request body too large", f"{declared} bytes; the limit is {limit}")
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise ApiError(413, "request body too large", f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int) -> dict[str, bytes]:
    """The multipart fields of a request, by name (see :func:`parse_form`), parsed off the event loop."""
    content_type = request.headers.get("content-type", "")
    boundary(content_type)  # 415 before reading a body that is not multipart
    body = await read_body(request, limit)
    return await asyncio.to_thread(parse_form, body, content_type)


def upload_openapi(*names: str, required: tuple[str, ...] = ("image",)) -> dict:
    """OpenAPI ``requestBody`` for a multipart upload of the named files (for /docs)."""
    schema = {
        "type": "object",
        "required": list(required),
        "properties": {n: {"type": "string", "format": "binary"} for n in names},
    }
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def parse_form(body: bytes, content_type: str) -> dict[str, bytes]:
    """Parts of a multipart/form-data ``body`` by field name (first part wins per name)."""
    collector = _Parts()
    try:
        parser = MultipartParser(
            boundary(content_type),
            collector.callbacks(),
            max_header_count=MAX_HEADER_COUNT,
            max_header_size=MAX_HEADER_SIZE,
        )
        for i in range(0, len(body), CHUNK):
            parser.write(body[i : i + CHUNK])
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, "malformed multipart body", str(exc).splitlines()[0][:200] if str(exc) else None) from None
    if not collector.ended:
        raise ApiError(400, "malformed multipart body", "missing boundary delimiters or the closing delimiter")
    return collector.fields


def boundary(content_type: str) -> bytes:
    """The boundary of a multipart/form-data content type; 415 for another type, 400 without one."""
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise ApiError(415, "expected multipart/form-data", f"got content type {content_type[:100]!r}")
    value = params.get(b"boundary")
    if not value:
        raise ApiError(400, "malformed multipart body", "the content type has no boundary")
    return value


class _Parts:
    """python-multipart callbacks that keep each named part's bytes (at most MAX_PARTS parts)."""

    def __init__(self):
        self.fields: dict[str, bytes] = {}
        self.ended = False
        self._parts = 0
        self._name: str | None = None
        self._data = bytearray()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition: bytes | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_val,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_end": self._end,
        }

    def _begin(self):
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ApiError(400, "malformed multipart body", f"more than {MAX_PARTS} parts")
        self._name, self._data, self._disposition = None, bytearray(), None

    def _header_field(self, data, start, end):
        self._header_name += data[start:end]

    def _header_val(self, data, start, end):
        self._header_value += data[start:end]

    def _header_end(self):
        if bytes(self._header_name).strip().lower() == b"content-disposition" and self._disposition is None:
            self._disposition = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_done(self):
        kind, params = parse_options_header(self._disposition)
        name = params.get(b"name")
        self._name = name.decode("latin-1") if kind == b"form-data" and name is not None else None

    def _part_data(self, data, start, end):
        if self._name is not None:
            self._data += data[start:end]

    def _part_end(self):
        if self._name is not None and self._name not in self.fields:
            self.fields[self._name] = bytes(self._data)
        self._data = bytearray()

    def _end(self):
        self.ended = True
