"""Request bodies within the route's limit: a JSON body is read whole before FastAPI parses it,
an upload is counted as it streams; either is refused with 413 past the limit."""

from __future__ import annotations

from serve.errors import ApiError


def check_declared(headers: dict[str, str], limit: int) -> None:
    """413 at once for a ``Content-Length`` over ``limit`` (no byte of it is read)."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "request body too large", f"{declared} bytes; the limit is {limit}")


async def buffered(receive, limit: int):
    """Read the whole body now (at most ``limit`` bytes, else 413); a ``receive`` that replays it."""
    chunks, seen = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            return replay([message], receive)
        seen += len(message.get("body", b""))
        if seen > limit:
            raise ApiError(413, "request body too large", f"more than {limit} bytes")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)


def replay(messages: list, receive):
    """``receive`` that hands out ``messages`` first, then reads on."""

    async def replayed():
        return messages.pop(0) if messages else await receive()

    return replayed


def counting(receive, limit: int):
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
