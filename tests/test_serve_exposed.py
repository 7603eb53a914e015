"""The app as an operator exposes it: API keys, sessions owned by keys, limits on every input,
quotas and rate limits, and sessions that survive the death of the store and model replicas.

Real Serve on a real local Ray, through HTTP (slow)."""

import time

import cv2
import numpy as np
import pytest
import requests

from app_on_loopback import app_on_loopback
from dugray.cli import main
from dugray.client import DugrayApiError, DugrayClient

pytestmark = pytest.mark.slow
KEY_A, KEY_B, KEY_C = "alice-" + "a" * 20, "bob-" + "b" * 20, "carol-" + "c" * 20
APP = "dugray-exposed"


@pytest.fixture(scope="module")
def base_url(tiny_model):
    settings = {"api_keys": [KEY_A, KEY_B, KEY_C], "max_sessions_per_owner": 2, "max_json_bytes": 4096,
                "rate_limit_per_s": 4, "rate_burst": 12, "retry_s": 120, "max_pixels": 1_000_000}
    with app_on_loopback(tiny_model, APP, settings) as url:
        yield url


def picture(h=64, w=80, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (230, 200, 40), -1)
    return cv2.imencode(".png", img)[1].tobytes()


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def test_every_route_but_health_needs_a_key(base_url):
    for method, path in [("POST", "/v1/sessions"), ("GET", "/v1/sessions/" + "0" * 32), ("POST", "/v1/matte"),
                         ("DELETE", "/v1/sessions/" + "0" * 32), ("PATCH", "/v1/sessions/" + "0" * 32)]:
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
    assert requests.get(base_url + "/", timeout=30).status_code == 200  # the page asks for the key itself


def test_a_session_belongs_to_the_key_that_made_it(base_url):
    with DugrayClient(base_url, api_key=KEY_A) as alice, DugrayClient(base_url, api_key=KEY_B) as bob:
        view = alice.create_session(picture())
        for call in (lambda: bob.get(view.id), lambda: bob.label(view.id, [(0, "fg")]), lambda: bob.png(view.id, "alpha"),
                     lambda: bob.refine(view.id), lambda: bob.set_solve(view.id, False), lambda: bob.delete(view.id)):
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
    r = requests.post(f"{base_url}/v1/matte?output=alpha", files={"image": ("x.tiff", ok)}, headers=auth(KEY_A), timeout=60)
    assert r.status_code == 200 and cv2.imdecode(np.frombuffer(r.content, np.uint8), -1).shape == (40, 50)


def test_a_key_holds_a_bounded_number_of_sessions(base_url):
    with DugrayClient(base_url, api_key=KEY_B) as bob:
        ids = [bob.create_session(picture(seed=i)).id for i in range(2)]
        r = requests.post(f"{base_url}/v1/sessions", files={"image": ("i.png", picture())}, headers=auth(KEY_B), timeout=60)
        assert r.status_code == 429 and r.json()["error"] == "too many live sessions" and int(r.headers["retry-after"]) > 0
        with DugrayClient(base_url, api_key=KEY_A) as alice:  # the others are not affected
            alice.delete(alice.create_session(picture()).id)
        bob.delete(ids[0])
        ids[0] = bob.create_session(picture()).id
        for sid in ids:
            bob.delete(sid)


def test_a_client_that_floods_gets_429_with_retry_after(base_url):
    codes, retry = [], None
    for _ in range(30):
        r = requests.get(f"{base_url}/v1/sessions/{'0' * 32}", headers=auth(KEY_C), timeout=30)
        codes.append(r.status_code)
        retry = retry or r.headers.get("retry-after")
    assert codes[0] == 404 and 429 in codes and int(retry) >= 1, codes
    time.sleep(3)  # the bucket refills
    assert requests.get(f"{base_url}/v1/sessions/{'0' * 32}", headers=auth(KEY_C), timeout=30).status_code == 404


def test_the_cli_sends_its_key(base_url, tmp_path, capsys):
    image = tmp_path / "p.png"
    image.write_bytes(picture())
    out = tmp_path / "cut.png"
    assert main(["cutout", str(image), "-o", str(out), "--server", base_url, "--api-key", KEY_A]) == 0
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (64, 80, 4)
    assert main(["cutout", str(image), "-o", str(out), "--server", base_url, "--api-key", "wrong" * 4]) == 2
    assert "401 invalid API key" in capsys.readouterr().err


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
        print(f"continued {time.monotonic() - t0:.1f} s after the kills")
        alice.delete(view.id)
