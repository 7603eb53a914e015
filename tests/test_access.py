"""Who may call the API and how much (serve/access.py), and sessions that outlive their store
(serve/store.py on serve/blobs.py): plain Python, no Ray."""

import asyncio
import json

import pytest

from serve.access import KeyRing, Policy, RateLimiter, RequestGuard, key_id, presented_key
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


def _call(policy, path, headers=(), body=b"", client=("10.0.0.1", 5)):
    """Run RequestGuard around a tiny app; returns (status, headers, json body, owner the app saw)."""
    seen = {}

    async def app(scope, receive, send):
        seen["owner"] = scope["state"]["owner"]
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    RequestGuard.install(policy)
    guard = RequestGuard(app)
    sent = []
    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive():
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "client": client,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}

    async def run():
        try:
            await guard(scope, receive, send)
        except ApiError as exc:  # raised while the app reads the body: FastAPI's handler answers it
            return exc.status, exc.headers or {}, {"error": exc.error}, seen.get("owner")
        start, body_msg = sent
        return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body_msg["body"]), seen.get("owner")

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
    assert _call(policy, "/v1/matte", upload, big)[0] == 200  # uploads have their own, larger limit
    assert _call(policy, "/v1/matte", upload, b"x" * 20_000)[0] == 413


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
    with pytest.raises(ValueError, match="split the sessions"):
        ServeSettings(replicas={"SessionStore": 2}, session_storage="none")
    assert ServeSettings(replicas={"SessionStore": 2}, session_storage="/tmp/shared").replicas["SessionStore"] == 2


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
    # two live replicas: a write by one is seen by the other, a stale write is refused
    assert second.put("aa", b"state-2", {}, expect_version=1, owner=key_id(KEY_A))["ok"]
    assert first.get("aa", key_id(KEY_A))[2] == 2
    assert first.put("aa", b"late", {}, expect_version=1, owner=key_id(KEY_A)) == {"ok": False, "error": "conflict"}
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
    SessionTable(2, ttl_s=10, max_bytes=10**6, clock=clock, blobs=FileBlobs(str(tmp_path)), wall=wall).put("d", b"1", {})
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


def test_serving_on_all_interfaces_without_keys_warns(capsys):
    from app_on_loopback import free_port
    from dugray.cli import main

    port = str(free_port())
    assert main(["serve", "--host", "0.0.0.0", "--port", port, "--cpus", "1"]) == 2  # stops at the CPU check
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0 without API keys" in err and "reserves" in err
    assert main(["serve", "--host", "0.0.0.0", "--port", port, "--cpus", "1", "--api-key", KEY_A]) == 2
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
