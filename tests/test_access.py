"""Who may call the API and how much (serve/access/), and sessions that outlive their store
(serve/store.py on serve/blobs.py): plain Python, no Ray."""

import asyncio
import json

import pytest

from serve.access import Gate, KeyRing, Policy, RateLimiter, RequestGuard, key_id, presented_key
from serve.blobs import FileBlobs, MemoryBlobs, open_blobs
from serve.errors import ApiError
from serve.settings import ServeSettings
from serve.store import SessionTable

KEY_A, KEY_B = "a" * 16 + "-alice", "b" * 16 + "-bob"


class Clock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


# --------------------------------------------------------------------------- keys and rates


def test_keys_are_read_from_either_header_and_checked():
    assert presented_key({"authorization": "Bearer  xyz "}) == "xyz"
    assert presented_key({"authorization": "bearer xyz"}) == "xyz"
    assert presented_key({"x-api-key": "k"}) == "k" and presented_key({}) is None
    ring = KeyRing([KEY_A, KEY_B])
    assert ring.owner(KEY_A) == key_id(KEY_A) != ring.owner(KEY_B)
    assert key_id(KEY_A).startswith("key:") and KEY_A not in key_id(KEY_A)  # keys never travel on
    for bad in (None, "nope", KEY_A + "x"):
        with pytest.raises(ApiError) as err:
            ring.owner(bad)
        assert err.value.status == 401


def test_the_token_bucket_allows_the_burst_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("x") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("x") == pytest.approx(0.5)  # empty: one token every 1/rate s
    assert limiter.acquire("y") == 0.0  # another client has its own bucket
    clock.t = 0.5
    assert limiter.acquire("x") == 0.0 and limiter.acquire("x") > 0
    assert RateLimiter(rate=0, burst=0).acquire("x") == 0.0  # 0 turns it off


def test_the_limiter_keeps_a_bounded_number_of_clients():
    limiter = RateLimiter(rate=1.0, burst=1, max_owners=100)
    for i in range(1000):
        limiter.acquire(f"addr:{i}")
    assert len(limiter._buckets) == 100


def _call(policy, path, headers=(), body=b"", client=("10.0.0.1", 5), method="GET", root_path=""):
    """Run RequestGuard around a tiny app; returns (status, headers, json body, owner the app saw)."""
    seen = {}

    async def app(scope, receive, send):
        seen["owner"] = scope["state"]["owner"]
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = RequestGuard(app, Gate(policy))
    sent = []
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive():
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "path": root_path + path,
        "root_path": root_path,
        "client": client,
        "method": method,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }

    async def run():
        try:
            await guard(scope, receive, send)
        except ApiError as exc:  # raised while the app reads the body: FastAPI's handler answers it
            return exc.status, exc.headers or {}, {"error": exc.error}, seen.get("owner")
        start, body_msg = sent
        return (
            start["status"],
            {k.decode(): v.decode() for k, v in start["headers"]},
            json.loads(body_msg["body"]),
            seen.get("owner"),
        )

    return asyncio.run(run())


def test_the_guard_refuses_before_the_app_runs():
    policy = Policy([KEY_A], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000)
    status, headers, body, owner = _call(policy, "/v1/sessions")
    assert status == 401 and headers["www-authenticate"] == "Bearer" and owner is None
    assert _call(policy, "/v1/health")[0] == 200  # open: health checks need no key
    assert _call(policy, "/")[0] == 200  # the page itself (it asks for the key)
    status, _, _, owner = _call(policy, "/v1/sessions", [("Authorization", f"Bearer {KEY_A}")])
    assert status == 200 and owner == key_id(KEY_A)
    # a JSON body over its limit: refused on the declared length, and on the bytes when undeclared
    big = b"x" * 3_000
    status, _, body, _ = _call(policy, "/v1/sessions/x/labels", [("X-API-Key", KEY_A), ("Content-Length", "3000")], big)
    assert status == 413 and body["error"] == "request body too large"
    assert _call(policy, "/v1/sessions/x/labels", [("X-API-Key", KEY_A)], big)[0] == 413
    upload = [("X-API-Key", KEY_A), ("Content-Type", "multipart/form-data; boundary=x")]
    assert _call(policy, "/v1/matte", upload, big, method="POST")[0] == 200  # uploads have their own, larger limit
    assert _call(policy, "/v1/matte", upload, b"x" * 20_000, method="POST")[0] == 413


def test_the_guard_rate_limits_per_client_with_retry_after():
    policy = Policy([], rate=1.0, burst=2, max_upload_bytes=10_000, max_json_bytes=2_000)
    codes = [_call(policy, "/v1/sessions/abc")[0] for _ in range(3)]
    assert codes == [200, 200, 429]
    status, headers, body, _ = _call(policy, "/v1/sessions/abc")
    assert status == 429 and int(headers["retry-after"]) >= 1 and body["error"] == "too many requests"
    assert _call(policy, "/v1/sessions/abc", client=("10.0.0.2", 1))[0] == 200  # others are not slowed down


def test_settings_for_exposure():
    s = ServeSettings.from_args({}, environ={"DUGRAY_API_KEYS": f"{KEY_A}, {KEY_B}"})
    assert s.api_keys == [KEY_A, KEY_B]
    with pytest.raises(ValueError, match="at least 16"):
        ServeSettings(api_keys=["short"])
    for storage in ("none", "/tmp/shared"):  # a second store replica would expire what the first serves
        with pytest.raises(ValueError, match="exactly one replica"):
            ServeSettings(replicas={"SessionStore": 2}, session_storage=storage)


# --------------------------------------------------------------------------- the store


def test_sessions_belong_to_the_key_that_made_them():
    table = SessionTable(10, 100, 10**6)
    a, b = key_id(KEY_A), key_id(KEY_B)
    assert table.put("s1", b"1", {"id": "s1"}, owner=a)["ok"]
    assert table.get("s1", a) and table.get("s1", b) is None and table.view("s1", b) is None
    assert table.put("s1", b"2", {}, expect_version=0, owner=b) == {"ok": False, "error": "missing"}
    assert not table.delete("s1", b) and table.delete("s1", a)
    table.put("s2", b"1", {}, owner="addr:1.2.3.4")  # made without keys: anyone may use it
    assert table.get("s2", "addr:5.6.7.8")


def test_one_client_cannot_evict_everyone_else():
    table = SessionTable(max_sessions=4, ttl_s=100, max_bytes=10**6, max_per_owner=2)
    table.put("other", b"1", {}, owner="addr:2")
    assert table.put("m1", b"1", {}, owner="addr:1")["ok"] and table.put("m2", b"1", {}, owner="addr:1")["ok"]
    assert table.put("m3", b"1", {}, owner="addr:1") == {"ok": False, "error": "quota"}
    assert table.get("other") is not None
    table.delete("m1", "addr:1")
    assert table.put("m3", b"1", {}, owner="addr:1")["ok"]


@pytest.mark.parametrize("location", ["folder", "uri"])
def test_a_new_store_on_the_same_storage_serves_every_live_session(tmp_path, location):
    where = str(tmp_path / "s") if location == "folder" else (tmp_path / "s").as_uri()
    wall = Clock(1000.0)
    first = SessionTable(10, ttl_s=100, max_bytes=10**6, blobs=open_blobs(where), wall=wall)
    first.put("aa", b"state-0", {"round": 1}, owner=key_id(KEY_A))
    assert first.put("aa", b"state-1", {"round": 2}, expect_version=0, owner=key_id(KEY_A))["ok"]
    first.put("bb", b"x", {})
    first.delete("bb")
    # the replica dies; a new one (or a second one) starts on the same storage
    second = SessionTable(10, ttl_s=100, max_bytes=10**6, blobs=open_blobs(where), wall=wall)
    assert second.get("aa", key_id(KEY_A)) == (b"state-1", {"round": 2}, 1)
    assert second.get("aa", key_id(KEY_B)) is None and second.get("bb") is None
    assert second.stats()["sessions"] == 1 and second.stats()["storage"] == "local folder"
    assert second.put("aa", b"state-2", {}, expect_version=1, owner=key_id(KEY_A))["ok"]
    assert second.put("aa", b"late", {}, expect_version=1, owner=key_id(KEY_A)) == {"ok": False, "error": "conflict"}
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == ["aa.2.npz", "aa.meta.json"]  # superseded states and deleted sessions leave no files


def test_expiry_and_eviction_clean_the_storage(tmp_path):
    clock, wall = Clock(), Clock(0.0)
    table = SessionTable(2, ttl_s=10, max_bytes=10**6, clock=clock, blobs=FileBlobs(str(tmp_path)), wall=wall)
    for sid in ("a", "b", "c"):  # c evicts a
        table.put(sid, b"1", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.0.npz", "b.meta.json", "c.0.npz", "c.meta.json"]
    clock.t = wall.t = 20
    assert table.stats()["sessions"] == 0 and list(tmp_path.iterdir()) == []
    # a store that starts after the TTL has passed drops what it finds
    SessionTable(2, ttl_s=10, max_bytes=10**6, clock=clock, blobs=FileBlobs(str(tmp_path)), wall=wall).put(
        "d", b"1", {}
    )
    wall.t = 100
    late = SessionTable(2, ttl_s=10, max_bytes=10**6, blobs=FileBlobs(str(tmp_path)), wall=wall)
    assert late.stats()["sessions"] == 0 and list(tmp_path.iterdir()) == []


def test_a_half_written_state_is_ignored(tmp_path):
    blobs = FileBlobs(str(tmp_path))
    table = SessionTable(5, 100, 10**6, blobs=blobs)
    table.put("a", b"good", {})
    (tmp_path / "a.1.npz").write_bytes(b"half")  # a crash after the state, before the meta
    (tmp_path / "b.0.npz.part-1-x").write_bytes(b"tmp")
    again = SessionTable(5, 100, 10**6, blobs=FileBlobs(str(tmp_path)))
    assert again.get("a")[0] == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.0.npz", "a.meta.json"]


def test_memory_blobs_and_ids_that_are_not_file_names(tmp_path):
    assert isinstance(open_blobs("none"), MemoryBlobs) and not open_blobs(None).persistent
    blobs = FileBlobs(str(tmp_path / "s"))
    assert blobs.meta("../../etc/passwd") is None  # never a path outside the folder
    with pytest.raises(ValueError, match="invalid session id"):
        blobs.write("../x", 0, b"1", {})


def test_serving_on_all_interfaces_without_keys_warns(capsys, tmp_path):
    from app_on_loopback import free_port

    from dugray.cli import main

    port = str(free_port())
    assert main(["serve", "--host", "0.0.0.0", "--port", port, "--cpus", "1"]) == 2  # stops at the CPU check
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0 without API keys" in err and "reserves" in err
    keys = tmp_path / "keys"
    keys.write_text(f"# one key per line\n{KEY_A}\n")
    assert main(["serve", "--host", "0.0.0.0", "--port", port, "--cpus", "1", "--api-key-file", str(keys)]) == 2
    assert "warning" not in capsys.readouterr().err


def test_memory_helpers():
    from serve.memory import MALLOC_ENV, set_malloc_env, trim

    env = {"MALLOC_ARENA_MAX": "4"}
    set_malloc_env(env)
    assert env == {**MALLOC_ENV, "MALLOC_ARENA_MAX": "4"}  # the operator's value wins
    env = {}
    set_malloc_env(env)
    assert env == MALLOC_ENV
    import platform

    assert trim() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


# --------------------------------------------------------------------------- issue 23: the guard on the route path


def test_every_decision_is_on_the_route_path_under_any_prefix():
    """Under route_prefix /dugray (root_path), API routes need a key and get an owner; only the
    page, its files and health are open; anything unknown is closed."""
    keyed = Policy([KEY_A], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000)
    for root in ("", "/dugray", "/a/b"):
        status, _, body, owner = _call(keyed, "/v1/sessions", root_path=root, method="POST")
        assert status == 401 and body["error"] == "API key required", root
        status, _, _, owner = _call(keyed, "/v1/sessions", [("X-API-Key", KEY_A)], root_path=root, method="POST")
        assert status == 200 and owner == key_id(KEY_A), root
        for open_path in ("/", "/v1/health", "/static/app.js"):
            assert _call(keyed, open_path, root_path=root)[0] == 200, (root, open_path)
        for closed in ("/openapi.json", "/v2/sessions", "/V1/sessions", "/v1/health/", "/static/a/b", "/x"):
            assert _call(keyed, closed, root_path=root)[0] == 401, (root, closed)
    keyless = Policy([], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000)
    assert _call(keyless, "/v1/sessions", root_path="/dugray", method="POST")[3] == "addr:10.0.0.1"  # quota applies


def test_docs_are_off_with_keys_and_every_response_forbids_frames():
    keyed = Policy([KEY_A], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000)
    status, headers, body, _ = _call(keyed, "/docs", root_path="/dugray")
    assert status == 404 and "off" in body["detail"]
    assert _call(keyed, "/openapi.json", [("X-API-Key", KEY_A)])[0] == 200
    for path in ("/", "/v1/sessions", "/docs"):  # refusals and answers alike
        headers = _call(keyed, path)[1]
        assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
        assert "https:" not in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"
    keyless = Policy([], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000)
    status, headers, _, _ = _call(keyless, "/docs")
    csp = headers["content-security-policy"]
    assert status == 200 and "'unsafe-inline'" in csp  # swagger-ui's start-up script, no key to steal
    assert "http" not in csp and "cdn" not in csp  # its files are this app's own (serve/docs.py)


def test_without_keys_other_sites_cannot_use_a_local_server():
    """A foreign page's POST (Origin) and a DNS name that is not ours (Host: rebinding) get 403;
    the server's own page, IP addresses and allowed names pass; reads stay open."""
    policy = Policy([], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000)
    own = [("Host", "127.0.0.1:8000"), ("Origin", "http://127.0.0.1:8000")]
    assert _call(policy, "/v1/matte", own, method="POST")[0] == 200
    assert _call(policy, "/v1/matte", [("Host", "localhost:8000")], method="POST")[0] == 200
    assert _call(policy, "/v1/matte", [("Host", "[::1]:8000")], method="POST")[0] == 200
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999"):
        status, _, body, owner = _call(
            policy, "/v1/matte", [("Host", "127.0.0.1:8000"), ("Origin", origin)], method="POST"
        )
        assert status == 403 and body["error"] == "cross-origin request refused" and owner is None, origin
    assert _call(policy, "/v1/sessions/x", [("Host", "127.0.0.1:8000"), ("Origin", "http://evil.example")])[0] == 200
    status, _, body, _ = _call(policy, "/", [("Host", "evil.example:8000")])
    assert status == 403 and body["error"] == "unknown host"
    named = Policy([], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000, allowed_hosts=["matte.lan"])
    assert _call(named, "/", [("Host", "matte.lan:8000")])[0] == 200
    keyed = Policy([KEY_A], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000)
    assert _call(keyed, "/", [("Host", "matte.example.com")])[0] == 200  # with keys the key decides


def test_one_content_type_and_the_limit_of_the_route():
    policy = Policy([KEY_A], rate=100, burst=100, max_upload_bytes=10_000, max_json_bytes=2_000)
    key = ("X-API-Key", KEY_A)
    twice = [key, ("Content-Type", "application/json"), ("Content-Type", "multipart/form-data; boundary=x")]
    status, _, body, _ = _call(policy, "/v1/sessions/x/labels", twice, b"{}", method="POST")
    assert status == 400 and body["error"] == "duplicate header" and "content-type" in body["detail"]
    lengths = [key, ("Content-Length", "2"), ("Content-Length", "2000")]
    assert _call(policy, "/v1/sessions/x/labels", lengths, b"{}", method="POST")[0] == 400
    multipart = [key, ("Content-Type", "multipart/form-data; boundary=x")]
    assert _call(policy, "/v1/sessions/x/labels", multipart, b"x" * 3_000, method="POST")[0] == 413  # the route's limit
    assert _call(policy, "/v1/sessions", [key], b"x" * 3_000, method="POST")[0] == 200  # an upload route: its limit


def _fastapi_app(policy):
    """A FastAPI app with the guard, the JSON errors and a JSON body route, as the ingress has them."""
    from fastapi import FastAPI

    from serve.errors import install_error_handlers
    from serve.schemas import LabelRequest

    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestGuard, gate=Gate(policy))

    @app.post("/v1/sessions/{sid}/labels")
    async def label(sid: str, body: LabelRequest) -> dict:
        return {"n": len(body.labels)}

    return app


def test_an_over_limit_json_body_is_413_streamed_or_not_and_two_content_types_are_400():
    import httpx

    policy = Policy([KEY_A], rate=100, burst=100, max_upload_bytes=100_000, max_json_bytes=2_000)
    labels = json.dumps({"labels": [{"index": 0, "label": "fg"}] * 200}).encode()  # > 2000 bytes, valid JSON

    async def run():
        transport = httpx.ASGITransport(app=_fastapi_app(policy))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            key = {"X-API-Key": KEY_A, "content-type": "application/json"}

            async def chunks():
                for i in range(0, len(labels), 500):
                    yield labels[i : i + 500]

            streamed = await client.post("/v1/sessions/x/labels", content=chunks(), headers=key)
            small = await client.post(
                "/v1/sessions/x/labels", content=b'{"labels": [{"index": 0, "label": "fg"}]}', headers=key
            )
            twice = await client.post(
                "/v1/sessions/x/labels",
                content=labels,
                headers=[
                    ("X-API-Key", KEY_A),
                    ("content-type", "application/json"),
                    ("content-type", "multipart/form-data; boundary=x"),
                ],
            )
            return streamed, small, twice

    streamed, small, twice = asyncio.run(run())
    assert streamed.status_code == 413 and streamed.json()["error"] == "request body too large", streamed.text
    assert small.status_code == 200 and small.json() == {"n": 1}
    assert twice.status_code == 400 and twice.json()["error"] == "duplicate header", twice.text


# --------------------------------------------------------------------------- issue 23: fair quotas


def test_rotating_x_forwarded_for_does_not_escape_the_rate_limit():
    policy = Policy([], rate=1.0, burst=3, max_upload_bytes=10_000, max_json_bytes=2_000)
    # Ray's proxy (uvicorn) believes X-Forwarded-For from loopback unless told otherwise: it then hands us
    # the header's address as the client; every such request shares one bucket
    rewritten = [
        _call(policy, "/v1/sessions/a", [("X-Forwarded-For", f"10.9.8.{i}")], client=(f"10.9.8.{i}", 0))[0]
        for i in range(6)
    ]
    assert rewritten.count(429) >= 3, rewritten
    # a peer that is not a configured proxy cannot choose its address
    direct = [
        _call(policy, "/v1/sessions/a", [("X-Forwarded-For", f"10.7.0.{i}")], client=("10.0.0.7", 5))[0]
        for i in range(6)
    ]
    assert direct.count(429) >= 3, direct
    # a configured proxy's forwarded address is the client's
    proxied = Policy(
        [], rate=1.0, burst=3, max_upload_bytes=10_000, max_json_bytes=2_000, trusted_proxies=["10.1.0.0/16"]
    )
    owners = {
        _call(proxied, "/v1/sessions/a", [("X-Forwarded-For", f"203.0.113.{i}, 10.1.0.9")], client=("10.1.0.2", 5))[3]
        for i in range(3)
    }
    assert owners == {"addr:203.0.113.0", "addr:203.0.113.1", "addr:203.0.113.2"}


def test_owner_ids_are_short_whatever_the_client_sends():
    from serve.access import address_owner, client_address

    assert address_owner("2001:db8:0:0:0:0:0:1") == "addr:2001:db8::/64"
    assert len(address_owner("x" * 100_000)) <= 50 and address_owner("x" * 10) != address_owner("y" * 10)
    proxied = Policy([], rate=0, burst=1, max_upload_bytes=10_000, max_json_bytes=2_000, trusted_proxies=["127.0.0.1"])
    owner = _call(proxied, "/v1/sessions/a", [("X-Forwarded-For", "z" * 5000)], client=("127.0.0.1", 5))[3]
    assert owner.startswith("addr:#") and len(owner) <= 50
    assert client_address("127.0.0.1", [], proxied.proxies) == "127.0.0.1"


def test_a_burst_below_one_request_is_refused():
    with pytest.raises(ValueError, match="rate_burst"):
        ServeSettings(rate_burst=0.5)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(rate=1.0, burst=0)
    with pytest.raises(ValueError, match="trusted_proxies"):
        ServeSettings(trusted_proxies=["not-an-address"])
    assert ServeSettings(trusted_proxies="10.0.0.1, 10.2.0.0/16").trusted_proxies == ["10.0.0.1", "10.2.0.0/16"]


def test_one_owner_cannot_fill_the_store_with_bytes():
    """Each owner has a byte share: past it a new session or a growing one is refused ("share",
    429 over HTTP) and nobody else's session is evicted."""
    table = SessionTable(max_sessions=100, ttl_s=100, max_bytes=100, max_per_owner=50, max_bytes_per_owner=40)
    assert table.put("other", b"x" * 30, {}, owner="key:b")["ok"]
    assert table.put("m1", b"x" * 30, {}, owner="key:a")["ok"]
    assert table.put("m2", b"x" * 20, {}, owner="key:a") == {"ok": False, "error": "share"}
    assert table.put("m1", b"x" * 41, {}, expect_version=0, owner="key:a") == {"ok": False, "error": "share"}
    assert table.put("m1", b"x" * 40, {}, expect_version=0, owner="key:a")["ok"]  # growing within the share
    assert table.get("other", "key:b") is not None and table.stats()["evicted"] == 0
    assert table.owned_bytes("key:a") == 40


def test_keys_can_come_from_a_file_never_the_command_line(tmp_path, capsys):
    from dugray.cli import main

    keys = tmp_path / "keys"
    keys.write_text(f"{KEY_A}\n\n# comment\n{KEY_B}\n")
    s = ServeSettings.from_args({}, environ={"DUGRAY_API_KEYS_FILE": str(keys)})
    assert s.api_keys == [KEY_A, KEY_B]
    assert main(["cutout", "x.png", "--server", "http://127.0.0.1:9", "--api-key", KEY_A]) == 2
    assert "visible to every user" in capsys.readouterr().err
    assert main(["serve", "--api-key", KEY_A, "--port", "1"]) == 2
    assert "--api-key-file" in capsys.readouterr().err


# --------------------------------------------------------------------------- issue 23: a store that survives bad files


def _meta(sid, **fields):
    meta = {"sid": sid, "owner": None, "written": 1000.0, "size": 4, "view": {}, "version": 0}
    meta.update(fields)
    return json.dumps(meta)


def test_a_store_starts_past_unreadable_files_and_quarantines_them(tmp_path, caplog):
    good = SessionTable(10, ttl_s=10**9, max_bytes=10**6, blobs=FileBlobs(str(tmp_path)))
    assert good.put("good", b"fine", {"round": 1})["ok"]
    bad = {
        "notjson": "{",
        "badid": _meta("../../x"),
        "other": _meta("someone-else"),
        "when": _meta("when", written="yesterday"),
        "nan": _meta("nan").replace("1000.0", "NaN"),
        "version": _meta("version", version="1"),
        "nostate": _meta("nostate"),
        "short": _meta("short", size=400),
    }
    for sid, text in bad.items():
        (tmp_path / f"{sid}.meta.json").write_text(text)
        if sid != "nostate":
            (tmp_path / f"{sid}.0.npz").write_bytes(b"1234")
    (tmp_path / "bad id.meta.json").write_text(_meta("bad id"))
    with caplog.at_level("WARNING", logger="ray.serve"):
        again = SessionTable(10, ttl_s=10**9, max_bytes=10**6, blobs=FileBlobs(str(tmp_path)))
    assert again.get("good") == (b"fine", {"round": 1}, 0) and again.stats()["sessions"] == 1
    quarantined = {p.name for p in (tmp_path / "quarantine").iterdir()}
    assert {f"{sid}.meta.json" for sid in bad} | {"bad id.meta.json"} <= quarantined
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["good.0.npz", "good.meta.json"]
    assert caplog.text.count("quarantined") >= len(bad)


def test_a_truncated_or_empty_state_is_gone_not_a_crash(tmp_path):
    table = SessionTable(10, ttl_s=100, max_bytes=10**6, blobs=FileBlobs(str(tmp_path)))
    for sid in ("cut", "empty", "fine"):
        table.put(sid, b"0123456789", {})
    (tmp_path / "cut.0.npz").write_bytes(b"01234")
    (tmp_path / "empty.0.npz").write_bytes(b"")
    for sid in ("cut", "empty"):
        assert "gone" in table.get(sid)  # the ingress answers 410
        assert table.get(sid) is None  # then it is unknown: 404
    assert table.get("fine")[0] == b"0123456789" and table.stats()["lost"] == 2
    assert {"cut.0.npz", "empty.0.npz"} <= {p.name for p in (tmp_path / "quarantine").iterdir()}
    table.quarantine("fine", "unreadable state (the ingress could not load it)")
    assert table.get("fine") is None and (tmp_path / "quarantine" / "fine.meta.json").exists()


class SlowBlobs(MemoryBlobs):
    """Blobs whose writes wait for ``release`` (a slow disk or bucket)."""

    def __init__(self):
        super().__init__()
        import threading

        self.writing, self.release = threading.Event(), threading.Event()

    def write(self, sid, version, blob, meta, replaces=None):
        self.writing.set()
        assert self.release.wait(10)
        super().write(sid, version, blob, meta, replaces)


def test_blob_io_happens_outside_the_lock_and_in_flight_writes_are_safe():
    import threading

    blobs = SlowBlobs()
    table = SessionTable(10, ttl_s=100, max_bytes=10**6, blobs=blobs)
    blobs.release.set()
    table.put("a", b"1", {"v": 0})
    table.put("b", b"1", {})
    blobs.release.clear()
    results = {}
    writer = threading.Thread(
        target=lambda: results.setdefault("put", table.put("a", b"22", {"v": 1}, expect_version=0))
    )
    writer.start()
    assert blobs.writing.wait(5)
    # while a write waits on storage, other requests are answered at once
    done = threading.Event()
    threading.Thread(target=lambda: (table.view("b"), table.stats(), table.get("b"), done.set())).start()
    assert done.wait(2), "a read waited for another session's write"
    assert table.put("a", b"333", {}, expect_version=0) == {"ok": False, "error": "conflict"}  # one write at a time
    blobs.release.set()
    writer.join(5)
    assert results["put"] == {"ok": True, "version": 1} and table.get("a")[0] == b"22"
    # a session deleted while its write is in flight: the write reports it and leaves nothing behind
    blobs.release.clear()
    blobs.writing.clear()
    writer = threading.Thread(target=lambda: results.__setitem__("late", table.put("a", b"4444", {}, expect_version=1)))
    writer.start()
    assert blobs.writing.wait(5)
    assert table.delete("a")
    blobs.release.set()
    writer.join(5)
    assert results["late"] == {"ok": False, "error": "missing"} and blobs.meta("a") is None and table.get("a") is None


def test_draining_refuses_new_requests_and_waits_for_those_in_flight():
    """A clean stop: requests in flight finish, new ones get 503 "stopping" (a load balancer moves on)."""
    policy = Policy([], rate=0, burst=1, max_upload_bytes=10_000, max_json_bytes=2_000)
    release = asyncio.Event()
    sent = []

    async def app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    def sender(box):
        async def send(message):
            box.append(message)

        return send

    async def run():
        gate = Gate(policy)
        guard = RequestGuard(app, gate)
        scope = {
            "type": "http",
            "path": "/v1/sessions/a",
            "root_path": "",
            "client": ("127.0.0.1", 1),
            "method": "GET",
            "headers": [],
        }
        slow = asyncio.ensure_future(guard(dict(scope), receive, sender(sent)))
        await asyncio.sleep(0.05)
        drained = asyncio.ensure_future(gate.drain(5.0))
        await asyncio.sleep(0.05)
        late = []
        await guard(dict(scope), receive, sender(late))
        assert not drained.done()  # still waiting for the slow one
        release.set()
        await slow
        return await drained, late

    left, late = asyncio.run(run())  # the gate is this test's own: nothing to reset
    assert left == 0 and sent[0]["status"] == 200
    assert late[0]["status"] == 503 and json.loads(late[1]["body"])["error"] == "stopping"
