"""The app as an operator exposes it: API keys, sessions owned by keys, limits on every input,
quotas and rate limits, and sessions that survive the death of the store and model replicas;
health that tells the truth. (``dugray serve`` stopping cleanly on SIGTERM and SIGINT: the servers
of tests/test_client.py and tests/test_wheel.py, through tests/clean_stop.py.)

Real Serve on a real local Ray, through HTTP (slow). The app runs under route_prefix /dugray:
every check below holds under a prefix."""

import os
import threading
import time

import cv2
import numpy as np
import pytest
import requests
from app_on_loopback import app_on_loopback

from dugray.cli import main
from dugray.client import DugrayApiError, DugrayClient

pytestmark = pytest.mark.slow
KEY_A, KEY_B, KEY_C, KEY_D = "alice-" + "a" * 20, "bob-" + "b" * 20, "carol-" + "c" * 20, "dave-" + "d" * 20
APP = "dugray-exposed"
PREFIX = "/dugray"


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("exposed-sessions")


@pytest.fixture(scope="module")
def base_url(tiny_model, storage):
    settings = {
        "api_keys": [KEY_A, KEY_B, KEY_C, KEY_D],
        "max_sessions_per_owner": 2,
        "max_json_bytes": 4096,
        "rate_limit_per_s": 4,
        "rate_burst": 12,
        "retry_s": 120,
        "max_pixels": 1_000_000,
        "session_storage": str(storage),
    }
    with app_on_loopback(tiny_model, APP, settings, route_prefix=PREFIX) as url:
        yield url


def picture(h=64, w=80, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (230, 200, 40), -1)
    return cv2.imencode(".png", img)[1].tobytes()


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def test_every_route_but_health_needs_a_key(base_url):
    for method, path in [
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions/" + "0" * 32),
        ("POST", "/v1/matte"),
        ("DELETE", "/v1/sessions/" + "0" * 32),
        ("PATCH", "/v1/sessions/" + "0" * 32),
    ]:
        r = requests.request(method, base_url + path, timeout=30)
        assert r.status_code == 401 and r.json()["error"] == "API key required", (method, path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        bad = requests.request(method, base_url + path, headers={"X-API-Key": "x" * 20}, timeout=30)
        assert bad.status_code == 401 and bad.json()["error"] == "invalid API key"
    health = requests.get(f"{base_url}/v1/health", timeout=30)
    assert health.status_code == 200 and health.json()["auth"] is True
    text = health.text
    assert "/tmp" not in text and "dugray-sessions" not in text and "tiny_model" not in text  # no paths
    assert health.json()["model"].startswith("sha256:")
    page = requests.get(base_url + "/", timeout=30)
    assert page.status_code == 200  # the page asks for the key itself
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"] and "https:" not in page.text
    assert base_url.endswith(PREFIX)  # all of the above under the app's route prefix
    assert requests.get(base_url + "/openapi.json", timeout=30).status_code == 401
    assert requests.get(base_url + "/openapi.json", headers=auth(KEY_A), timeout=30).json()["info"]["title"] == "dugray"
    docs = requests.get(base_url + "/docs", headers=auth(KEY_A), timeout=30)
    assert docs.status_code == 404 and "cdn" not in docs.text  # no third-party script on the origin of the key


def test_a_session_belongs_to_the_key_that_made_it(base_url):
    with DugrayClient(base_url, api_key=KEY_A) as alice, DugrayClient(base_url, api_key=KEY_B) as bob:
        view = alice.create_session(picture())
        for call in (
            lambda: bob.get(view.id),
            lambda: bob.label(view.id, [(0, "fg")]),
            lambda: bob.png(view.id, "alpha"),
            lambda: bob.refine(view.id),
            lambda: bob.set_solve(view.id, False),
            lambda: bob.delete(view.id),
        ):
            with pytest.raises(DugrayApiError) as err:
                call()
            assert err.value.status == 404
        same = requests.get(f"{base_url}/v1/sessions/{view.id}", headers={"X-API-Key": KEY_A}, timeout=30)
        assert same.status_code == 200 and same.json()["round"] == 1  # the other header works too
        alice.delete(view.id)


def test_limits_on_json_bodies_and_images(base_url):
    with DugrayClient(base_url, api_key=KEY_A) as alice:
        sid = alice.create_session(picture()).id
        labels = {"labels": [{"box": [0, 0, 5, 5], "label": "fg"}] * 200}  # > 4096 bytes of JSON
        r = requests.post(f"{base_url}/v1/sessions/{sid}/labels", json=labels, headers=auth(KEY_A), timeout=30)
        assert r.status_code == 413 and r.json()["error"] == "request body too large", r.text
        alice.delete(sid)
    bomb = cv2.imencode(".tiff", np.zeros((8000, 8000), np.uint8), [cv2.IMWRITE_TIFF_COMPRESSION, 8])[1].tobytes()
    cases = {
        "tiff bomb": (bomb, 413),
        "jpeg bomb": (cv2.imencode(".jpg", np.zeros((4000, 4000), np.uint8))[1].tobytes(), 413),
        "int16 tiff": (cv2.imencode(".tiff", np.full((40, 50, 3), -5, np.int16))[1].tobytes(), 422),
        "float tiff out of range": (cv2.imencode(".tiff", np.full((40, 50, 3), 7.5, np.float32))[1].tobytes(), 422),
        "hdr": (cv2.imencode(".hdr", np.zeros((40, 50, 3), np.float32))[1].tobytes(), 415),
    }
    for name, (data, status) in cases.items():
        r = requests.post(f"{base_url}/v1/matte", files={"image": ("x", data)}, headers=auth(KEY_A), timeout=60)
        assert r.status_code == status and set(r.json()) == {"error", "detail"}, (name, r.text)
    ok = cv2.imencode(".tiff", np.random.default_rng(0).random((40, 50, 3)).astype(np.float32))[1].tobytes()
    r = requests.post(
        f"{base_url}/v1/matte?output=alpha", files={"image": ("x.tiff", ok)}, headers=auth(KEY_A), timeout=60
    )
    assert r.status_code == 200 and cv2.imdecode(np.frombuffer(r.content, np.uint8), -1).shape == (40, 50)


def test_a_key_holds_a_bounded_number_of_sessions(base_url):
    with DugrayClient(base_url, api_key=KEY_B) as bob:
        ids = [bob.create_session(picture(seed=i)).id for i in range(2)]
        r = requests.post(
            f"{base_url}/v1/sessions", files={"image": ("i.png", picture())}, headers=auth(KEY_B), timeout=60
        )
        assert (
            r.status_code == 429 and r.json()["error"] == "too many live sessions" and int(r.headers["retry-after"]) > 0
        )
        with DugrayClient(base_url, api_key=KEY_A) as alice:  # the others are not affected
            alice.delete(alice.create_session(picture()).id)
        bob.delete(ids[0])
        ids[0] = bob.create_session(picture()).id
        for sid in ids:
            bob.delete(sid)


def test_a_client_that_floods_gets_429_with_retry_after(base_url):
    from concurrent.futures import ThreadPoolExecutor

    def one(_):
        r = requests.get(f"{base_url}/v1/sessions/{'0' * 32}", headers=auth(KEY_C), timeout=60)
        return r.status_code, r.headers.get("retry-after")

    with ThreadPoolExecutor(6) as pool:  # faster than the bucket refills (4/s) even on a busy machine
        answers = list(pool.map(one, range(40)))
    codes = [code for code, _ in answers]
    retry = next(r for code, r in answers if code == 429) if 429 in codes else None
    assert codes.count(404) >= 12 and 429 in codes and int(retry) >= 1, codes
    time.sleep(3)  # the bucket refills
    assert requests.get(f"{base_url}/v1/sessions/{'0' * 32}", headers=auth(KEY_C), timeout=30).status_code == 404


def test_the_cli_sends_its_key_from_a_file_or_the_environment(base_url, tmp_path, capsys, monkeypatch):
    image = tmp_path / "p.png"
    image.write_bytes(picture())
    out = tmp_path / "cut.png"
    keyfile, wrong = tmp_path / "key", tmp_path / "wrong"
    keyfile.write_text(KEY_A + "\n")
    wrong.write_text("wrong" * 4)
    assert main(["cutout", str(image), "-o", str(out), "--server", base_url, "--api-key-file", str(keyfile)]) == 0
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (64, 80, 4)
    assert main(["cutout", str(image), "-o", str(out), "--server", base_url, "--api-key-file", str(wrong)]) == 2
    assert "401 invalid API key" in capsys.readouterr().err
    monkeypatch.setenv("DUGRAY_API_KEY", KEY_A)
    assert main(["cutout", str(image), "-o", str(out), "--server", base_url]) == 0


def _kill(fragment: str) -> int:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if f"{APP}#{fragment}#" in a["name"]]
    for name in names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return len(names)


def test_a_labelling_session_survives_the_death_of_its_store_and_model_replicas(base_url):
    """Chaos: ray.kill the SessionStore replica and the Matting replica between two rounds; the
    session continues through the HTTP API with its labels and rounds intact."""
    with DugrayClient(base_url, api_key=KEY_A, timeout=300) as alice:
        view = alice.create_session(picture(seed=7))
        view = alice.label(view.id, [(0, "fg"), ((0, 0, 8, 8), "bg")])
        assert (view.round, view.labels) == (2, 2)
        assert _kill("SessionStore") == 1 and _kill("Matting") >= 1
        t0 = time.monotonic()
        after = alice.get(view.id)  # served by the new store replica, from storage
        assert (after.round, after.labels, after.proposals) == (view.round, view.labels, view.proposals)
        view3 = alice.label(view.id, [(1, "transition")])
        assert (view3.round, view3.labels) == (3, 3)
        assert alice.png(view.id, "cutout")[:8] == b"\x89PNG\r\n\x1a\n"
        other = alice.create_session(picture(seed=8))  # a first round: the replaced Matting replica's forward
        assert other.round == 1
        print(f"continued {time.monotonic() - t0:.1f} s after the kills")
        alice.delete(view.id)
        alice.delete(other.id)


# --------------------------------------------------------------------------- issue 23


def _post_raw(url: str, path: str, headers: list, body: bytes) -> tuple[int, dict]:
    """POST with headers exactly as given (requests cannot send one twice): (status, JSON body)."""
    import json

    from jobs.benchmarks.hostile import raw_post

    r = raw_post(url, path, headers, body, timeout=120)
    return r.status_code, json.loads(r.text or "{}")


def test_bad_bodies_get_a_clear_4xx_and_never_stall_health(base_url):
    key = ("Authorization", f"Bearer {KEY_D}")
    labels = b'{"labels": [' + b'{"index": 0, "label": "fg"},' * 800 + b'{"index": 0, "label": "fg"}]}'  # 23 kB
    status, body = _post_raw(
        base_url,
        f"/v1/sessions/{'0' * 32}/labels",
        [key, ("Content-Type", "application/json"), ("Content-Type", "multipart/form-data; boundary=x")],
        labels,
    )
    assert status == 400 and body["error"] == "duplicate header", body
    r = requests.post(
        f"{base_url}/v1/sessions/{'0' * 32}/labels",
        data=(labels[i : i + 1000] for i in range(0, len(labels), 1000)),
        headers={**auth(KEY_D), "content-type": "application/json"},
        timeout=60,
    )  # chunked
    assert r.status_code == 413 and r.json()["error"] == "request body too large", r.text
    # a multipart part header of 4 MB of quoted ";" (the old parser: ~2 s of event loop per 480 kB, quadratic)
    bomb = (
        b'--xyz\r\nContent-Disposition: form-data; name="image"; x="'
        + b'";"' * 1_400_000
        + b'"\r\n\r\nabc\r\n--xyz--\r\n'
    )
    result = {}
    t0 = time.perf_counter()
    sender = threading.Thread(
        target=lambda: result.update(
            r=_post_raw(base_url, "/v1/matte", [key, ("Content-Type", "multipart/form-data; boundary=xyz")], bomb),
            s=time.perf_counter() - t0,
        )
    )
    sender.start()
    worst = 0.0
    while sender.is_alive():
        t = time.perf_counter()
        assert requests.get(f"{base_url}/v1/health", timeout=60).status_code == 200
        worst = max(worst, time.perf_counter() - t)
    sender.join()
    assert result["r"][0] == 400 and result["r"][1]["error"] == "malformed multipart body", result
    assert result["s"] < 10 and worst < 10, (result["s"], worst)  # minutes with the old parser
    images = {
        "pnm with a CR comment": (b"P5\n# x\r6000 6000\n# \n64 64\n255\n" + bytes(64 * 64), 413),
        "tiff with two widths": (_tiff_twice(), 415),
        "jpeg with 3000 scans": (_many_scans(3000), 413),
    }
    for name, (data, expected) in images.items():
        r = requests.post(f"{base_url}/v1/matte", files={"image": ("x", data)}, headers=auth(KEY_D), timeout=60)
        assert r.status_code == expected and set(r.json()) == {"error", "detail"}, (name, r.text)


def _tiff_twice() -> bytes:
    from test_serve_parts import _tiff_with_tag_twice

    return _tiff_with_tag_twice(256, 6000)


def _many_scans(n: int) -> bytes:
    from test_serve_parts import _progressive_jpeg

    return _progressive_jpeg(n)


def test_a_corrupt_stored_state_is_gone_and_the_server_keeps_serving(base_url, storage):
    """A state cut short (store: size check) and one of the right size but garbage (ingress: it
    cannot load it) each answer 410 once, then 404; both go to quarantine; nothing else is hurt."""
    with DugrayClient(base_url, api_key=KEY_D) as dave:
        cut, garbage = dave.create_session(picture(seed=3)).id, dave.create_session(picture(seed=4)).id
    (storage / f"{cut}.0.npz").write_bytes(b"PK\x03\x04")
    size = (storage / f"{garbage}.0.npz").stat().st_size
    (storage / f"{garbage}.0.npz").write_bytes(os.urandom(size))
    for sid in (cut, garbage):
        r = requests.post(f"{base_url}/v1/sessions/{sid}/refine", headers=auth(KEY_D), timeout=60)
        assert r.status_code == 410 and r.json()["error"] == "session lost", r.text
        assert requests.get(f"{base_url}/v1/sessions/{sid}", headers=auth(KEY_D), timeout=60).status_code == 404
    quarantined = {p.name for p in (storage / "quarantine").iterdir()}
    assert {f"{cut}.meta.json", f"{garbage}.meta.json"} <= quarantined
    health = requests.get(f"{base_url}/v1/health", timeout=30)
    assert health.status_code == 200 and health.json()["store"]["lost"] >= 2
    with DugrayClient(base_url, api_key=KEY_D) as dave:  # the quota was given back, the store serves
        dave.delete(dave.create_session(picture()).id)


def test_health_is_503_until_every_deployment_can_serve(base_url, tiny_model):
    """An app whose Matting can never be placed: its ingress answers, and health says 503
    "starting" naming Matting (and only it, once the others have warmed up)."""
    from ray import serve

    from serve.app import APIIngress, Fusion, Matting, Proposer, Refinement, SessionStore, Solver, ingress_options
    from serve.settings import ServeSettings

    s = ServeSettings.from_args({"model": tiny_model, "torch_threads": 1, "session_storage": "none"}, environ={})
    zero, never = {"num_cpus": 0}, {"num_cpus": 0, "resources": {"no-such-resource": 1}}
    app = APIIngress.options(ray_actor_options={**ingress_options(s), **zero}).bind(
        Matting.options(ray_actor_options=never).bind(s),
        Fusion.options(ray_actor_options=zero).bind(s),
        Proposer.options(ray_actor_options=zero).bind(s),
        Solver.options(ray_actor_options=zero).bind(s),
        Refinement.options(ray_actor_options=zero).bind(s),
        SessionStore.options(ray_actor_options=zero).bind(s),
        s,
    )
    serve.run_many(
        [serve.RunTarget(app, name="dugray-starting", route_prefix="/starting")], wait_for_applications_running=False
    )
    url = base_url[: -len(PREFIX)] + "/starting"
    seen = []
    try:
        deadline = time.monotonic() + 240  # the others warm up in seconds; a broken one must not stall CI
        while time.monotonic() < deadline:
            try:
                r = requests.get(url + "/v1/health", timeout=10)
                body = r.json()
            except (requests.RequestException, ValueError):
                time.sleep(1)
                continue
            if "status" in body:
                seen.append((r.status_code, body.get("not_ready")))
                if r.status_code == 200 or body.get("not_ready") == ["Matting"]:
                    break
            time.sleep(1)
        assert seen and all(code == 503 for code, _ in seen), seen
        assert seen[-1] == (503, ["Matting"]) and body["status"] == "starting" and int(r.headers["retry-after"]) > 0
        assert all("Matting" in names for _, names in seen)
    finally:
        serve.delete("dugray-starting")


def test_health_is_503_while_a_deployment_cannot_serve(base_url):
    assert requests.get(f"{base_url}/v1/health", timeout=30).status_code == 200
    assert _kill("Matting") >= 1
    seen, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:
        r = requests.get(f"{base_url}/v1/health", timeout=30)
        seen.append(r.status_code)
        if r.status_code == 503:
            assert r.json()["status"] == "unavailable" and "Matting" in r.json()["not_ready"], r.text
        elif 503 in seen:
            break
        time.sleep(0.5)
    assert 503 in seen and seen[-1] == 200, seen
