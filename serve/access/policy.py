"""The limits one ingress replica enforces, built from its ServeSettings (configuration, no traffic state
but the rate buckets)."""

from __future__ import annotations

from serve.access.browser import host_allowed
from serve.access.keys import KeyRing
from serve.access.proxies import Networks
from serve.access.rates import RateLimiter


class Policy:
    """The limits one ingress replica enforces (from its ServeSettings)."""

    def __init__(
        self,
        keys,
        rate: float,
        burst: float,
        max_upload_bytes: int,
        max_json_bytes: int,
        trusted_proxies=(),
        allowed_hosts=("localhost",),
    ):
        self.keys = KeyRing(keys)
        self.limiter = RateLimiter(rate, burst)
        self.max_upload_bytes, self.max_json_bytes = max_upload_bytes, max_json_bytes
        self.proxies = Networks(trusted_proxies)
        self.allowed_hosts = {h.lower().strip("[]") for h in allowed_hosts}

    @classmethod
    def from_settings(cls, settings) -> Policy:
        """The policy of a :class:`serve.settings.ServeSettings`."""
        return cls(
            settings.api_keys,
            settings.rate_limit_per_s,
            settings.rate_burst,
            settings.max_upload_bytes,
            settings.max_json_bytes,
            settings.trusted_proxies,
            settings.allowed_hosts,
        )

    def host_allowed(self, host: str | None) -> bool:
        """Whether a ``Host`` header names this server (:func:`serve.access.browser.host_allowed`)."""
        return host_allowed(self.allowed_hosts, host)
