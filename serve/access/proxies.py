"""Who a request comes from, for quotas: the peer, or the client a trusted proxy forwarded.

A forwarded address from anyone but a configured proxy is never believed, and owner ids are
short and chosen by us (an IPv6 client by its /64), so a client cannot mint new quotas.
"""

from __future__ import annotations

import hashlib
import ipaddress

IPV6_OWNER_PREFIX = 64
"""IPv6 clients are grouped by their /64: one subscriber gets a whole /64 (2**64 addresses), so an
address per request would be a new owner per request (a fresh rate bucket, session and byte quotas)."""


def address_owner(address: str) -> str:
    """The owner id of a client address, at most 50 characters: ``addr:`` and the address as a
    network operator counts clients: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6 by its
    /64 (``addr:2001:db8:1:2::/64``); a hash of anything else (never a string a client chose)."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return "addr:#" + hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:16]
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return "addr:" + ipaddress.ip_network(f"{ip}/{IPV6_OWNER_PREFIX}", strict=False).compressed
    return "addr:" + ip.compressed


class Networks:
    """A set of IP networks (``trusted_proxies``): ``address in networks``."""

    def __init__(self, specs):
        self.nets = [ipaddress.ip_network(s.strip(), strict=False) for s in specs]

    def __bool__(self) -> bool:
        return bool(self.nets)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self.nets)


def client_address(peer: str, forwarded: list[str], proxies: Networks) -> str:
    """The address a request comes from, for quotas: the peer's, unless the peer is one of
    ``proxies`` and says in ``X-Forwarded-For`` whom it forwards (the right-most hop that is
    not a proxy). A peer that is not a proxy cannot choose its address; and a peer address
    that appears among the hops was put there by a server in front that believed the header
    (uvicorn trusts loopback unless FORWARDED_ALLOW_IPS says otherwise): all such requests
    share one address, so rotating the header gains nothing."""
    hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
    if not hops:
        return peer
    if peer in proxies:
        for hop in reversed(hops):
            if hop not in proxies:
                return hop
        return hops[0]
    if peer in hops or peer.strip("[]") in (h.strip("[]") for h in hops):
        return "forwarded-by-an-untrusted-proxy"
    return peer


PROXY_ENV = {"FORWARDED_ALLOW_IPS": ""}
"""Environment for Ray's HTTP proxy: uvicorn believes ``X-Forwarded-For`` from loopback unless
told otherwise; empty, it believes nobody and the guard sees the real peer (it trusts the
proxies of ``trusted_proxies`` itself). Set before Ray starts (its workers inherit it)."""


def set_proxy_env(environ=None) -> None:
    """Put :data:`PROXY_ENV` into ``environ`` (default ``os.environ``) before Ray starts."""
    import os

    (os.environ if environ is None else environ).update(PROXY_ENV)
