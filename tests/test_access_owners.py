"""Issue 30: owners are counted as a network operator counts clients (IPv6 by /64, IPv4-mapped
as IPv4), and wrong keys are rate-limited like any other request."""

import ipaddress

from test_access import KEY_A, _call

from serve.access import Policy, address_owner


def test_ipv6_clients_are_grouped_by_their_64_and_ipv4_mapped_is_ipv4():
    net = ipaddress.ip_network("2001:db8:1:2::/64")
    owners = {address_owner(str(net[i * 7919 + 1])) for i in range(2000)}
    assert owners == {"addr:2001:db8:1:2::/64"}
    assert address_owner("2001:db8:1:3::1") == "addr:2001:db8:1:3::/64" != address_owner("2001:db8:1:2::1")
    assert address_owner("::ffff:1.2.3.4") == address_owner("1.2.3.4") == "addr:1.2.3.4"
    assert address_owner("[::ffff:1.2.3.4]") == "addr:1.2.3.4"
    assert len(address_owner("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")) <= 50


def test_a_new_ipv6_address_per_request_does_not_escape_the_rate_limit():
    """49,999 addresses of one /64 each got a fresh bucket (and quotas); now they share one."""
    policy = Policy([], rate=1.0, burst=5, max_upload_bytes=10_000, max_json_bytes=2_000)
    codes = [_call(policy, "/v1/sessions/a", client=(f"2001:db8:1:2::{i:x}", 5))[0] for i in range(1, 21)]
    assert codes[:5] == [200] * 5 and codes[5:].count(429) >= 14, codes
    assert _call(policy, "/v1/sessions/a", client=("2001:db8:9:9::1", 5))[0] == 200  # another subscriber
    owner = _call(policy, "/v1/sessions/a", client=("::ffff:10.0.0.9", 5))[3]
    assert owner == "addr:10.0.0.9"


def test_wrong_keys_are_rate_limited_per_address():
    """1,000 wrong keys from one address were 1,000 x 401; now 429 once its bucket is empty, and
    neither another address nor a right key from the same address is held up by it."""
    policy = Policy([KEY_A], rate=1.0, burst=10, max_upload_bytes=10_000, max_json_bytes=2_000)
    codes = [_call(policy, "/v1/sessions/a", [("X-API-Key", f"guess-{i:012d}")])[0] for i in range(40)]
    assert codes[:10] == [401] * 10 and codes[10:].count(429) >= 29, codes
    assert _call(policy, "/v1/sessions/a", [("X-API-Key", "guess")], client=("10.0.0.2", 5))[0] == 401
    assert _call(policy, "/v1/sessions/a", [("X-API-Key", KEY_A)])[0] == 200
    status, headers, body, _ = _call(policy, "/v1/sessions/a", [("X-API-Key", "another-guess")])
    assert status == 429 and int(headers["retry-after"]) >= 1
