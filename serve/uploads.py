"""Request bodies: size-capped reading and a small multipart/form-data parser.

FastAPI's ``File``/``Form`` parameters need the ``python-multipart`` package, which
``ray[serve]`` does not bring; image uploads are simple (a few named binary parts), so
the body is split on its boundary here. Everything the client may get wrong raises
:class:`serve.errors.ApiError`.
"""

from __future__ import annotations

from email.message import Message

from starlette.requests import Request

from serve.errors import ApiError


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
    """The multipart fields of a request, by name (see :func:`parse_form`)."""
    return parse_form(await read_body(request, limit), request.headers.get("content-type", ""))


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
    delimiter = b"\r\n--" + _boundary(content_type)
    chunks = (b"\r\n" + body).split(delimiter)  # a delimiter is CRLF--boundary, the first one without CRLF
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ApiError(400, "malformed multipart body", "missing boundary delimiters or the closing delimiter")
    fields: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ApiError(400, "malformed multipart body", "a part has no header/content separator")
        name = _field_name(head)
        if name is not None and name not in fields:
            fields[name] = content
    return fields


def _boundary(content_type: str) -> bytes:
    msg = Message()
    msg["content-type"] = content_type or ""
    if msg.get_content_type() != "multipart/form-data":
        raise ApiError(415, "expected multipart/form-data", f"got content type {content_type!r}")
    boundary = msg.get_param("boundary")
    if not boundary or not isinstance(boundary, str):
        raise ApiError(400, "malformed multipart body", "the content type has no boundary")
    return boundary.encode("latin-1")


def _field_name(head: bytes) -> str | None:
    msg = Message()
    for line in head.decode("latin-1").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            msg[key.strip()] = value.strip()
    disposition = msg.get("content-disposition")
    if disposition is None:
        return None
    name = msg.get_param("name", header="content-disposition")
    return name if isinstance(name, str) else None
