"""API keys: which key a request presents, and whose it is (a hash, never the key itself)."""

from __future__ import annotations

import hashlib
import hmac

from serve.errors import ApiError


def key_id(key: str) -> str:
    """The owner id of an API key: a hash, so keys never appear in logs, views or storage."""
    return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request presents (``Authorization: Bearer`` or ``X-API-Key``), or None."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key", "").strip() or None


class KeyRing:
    """The server's API keys; ``owner`` checks one in constant time per key."""

    def __init__(self, keys):
        self._keys = [k.encode("utf-8") for k in keys if k]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def owner(self, presented: str | None) -> str:
        """The owner id of a valid key; ApiError 401 for a missing or unknown one."""
        if presented is None:
            raise ApiError(401, "API key required", "send Authorization: Bearer KEY or X-API-Key: KEY")
        given = presented.encode("utf-8")
        if not any(hmac.compare_digest(given, k) for k in self._keys):
            raise ApiError(401, "invalid API key")
        return key_id(presented)
