"""The real Serve app on loopback: interactive flow, isolation, bad input, replica death, eviction.

One module-scoped app (a local Ray with 2 CPUs, tiny checkpoints written here) serves
every test over HTTP on a free port of 127.0.0.1; it is torn down at the end.
"""

import struct
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MAX_SESSIONS = 4
MAX_PIXELS = 200_000
APP = "dugray-test"
ROOT = Path(__file__).resolve().parents[1]

from app_on_loopback import app_on_loopback  # noqa: E402


@pytest.fixture(scope="module")
def base_url(tiny_model):
    settings = {"max_sessions": MAX_SESSIONS, "max_pixels": MAX_PIXELS, "retry_s": 90}
    with app_on_loopback(tiny_model, APP, settings) as url:
        yield url


def png(a: np.ndarray) -> bytes:
    return cv2.imencode(".png", a)[1].tobytes()


def picture(h=72, w=96, seed=0) -> np.ndarray:
    """A bright disc on a textured background (BGR, as OpenCV writes it)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (230, 200, 40), -1)
    return img


def create(url, image=None, **files):
    files = {
        "image": ("i.png", png(picture()) if image is None else image),
        **{k: ("f.png", v) for k, v in files.items()},
    }
    return requests.post(f"{url}/v1/sessions", files=files, timeout=120)


def decoded(resp) -> np.ndarray:
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png", resp.text[:300]
    return cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_UNCHANGED)


def test_interactive_flow_gives_pngs_of_the_input_size(base_url):
    r = create(base_url, png(picture(75, 101)))
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["width"], s["height"], s["round"]) == (101, 75, 1)
    assert s["proposals"] and set(s["proposals"][0]) == {"index", "box", "score"}
    assert set(s["uncertainty"]) == {"epistemic_mean", "aleatoric_mean"} and s["timings"]["predict_s"] > 0
    sid = s["id"]
    for labels in (
        [{"index": 0, "label": "fg"}, {"box": [0, 0, 10, 10], "label": "bg"}],
        [{"index": 1, "label": "transition"}],
    ):
        r = requests.post(f"{base_url}/v1/sessions/{sid}/labels", json={"labels": labels}, timeout=120)
        assert r.status_code == 200, r.text
    assert r.json()["round"] == 3 and r.json()["labels"] == 3
    r = requests.post(f"{base_url}/v1/sessions/{sid}/refine", timeout=120)
    assert r.status_code == 200 and r.json()["refined"], r.text
    assert requests.get(f"{base_url}/v1/sessions/{sid}", timeout=30).json()["round"] == 3
    outputs = ("alpha", "cutout", "epistemic", "aleatoric")
    shapes = {
        name: decoded(requests.get(f"{base_url}/v1/sessions/{sid}/{name}.png", timeout=120)).shape for name in outputs
    }
    assert shapes == {"alpha": (75, 101), "cutout": (75, 101, 4), "epistemic": (75, 101, 3), "aleatoric": (75, 101, 3)}
    assert requests.delete(f"{base_url}/v1/sessions/{sid}", timeout=30).status_code == 204
    assert requests.get(f"{base_url}/v1/sessions/{sid}", timeout=30).status_code == 404


def shown(url: str, sid: str) -> dict:
    """What a round shows over HTTP: the view (less its timings) and the bytes of every output PNG."""
    view = requests.get(f"{url}/v1/sessions/{sid}", timeout=30).json()
    view.pop("timings"), view["solve"].pop("seconds", None)  # measured again by every request
    pngs = {
        name: requests.get(f"{url}/v1/sessions/{sid}/{name}.png", timeout=120).content
        for name in ("alpha", "cutout", "epistemic", "aleatoric")
    }
    return {"view": view, **pngs}


def test_undo_goes_back_round_by_round_then_409(base_url):
    sid = create(base_url).json()["id"]
    rounds = [shown(base_url, sid)]
    for labels in ([{"index": 0, "label": "fg"}, {"index": 1, "label": "bg"}], [{"point": [36, 48], "label": "bg"}]):
        r = requests.post(f"{base_url}/v1/sessions/{sid}/labels", json={"labels": labels}, timeout=120)
        assert r.status_code == 200, r.text
        rounds.append(shown(base_url, sid))
    assert rounds[2]["alpha"] != rounds[1]["alpha"] != rounds[0]["alpha"]  # each round changed the matte
    assert requests.post(f"{base_url}/v1/sessions/{sid}/refine", timeout=120).status_code == 200
    for back in (1, 0):
        r = requests.post(f"{base_url}/v1/sessions/{sid}/undo", timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["round"] == back + 1 and not r.json()["refined"]
        now = shown(base_url, sid)
        assert now["view"] == rounds[back]["view"]  # proposals, labels, uncertainty summary, round
        for name in ("alpha", "cutout", "epistemic", "aleatoric"):
            assert now[name] == rounds[back][name], (back, name)  # byte-identical PNGs
    r = requests.post(f"{base_url}/v1/sessions/{sid}/undo", timeout=120)
    assert r.status_code == 409 and r.json()["error"] == "nothing to undo" and "first round" in r.json()["detail"]
    assert shown(base_url, sid) == rounds[0]
    r = requests.post(f"{base_url}/v1/sessions/{'0' * 32}/undo", timeout=30)
    assert r.status_code == 404 and r.json()["error"]


def test_image_png_is_the_uploaded_image(base_url):
    """What the web page shows for a session it did not create (?session=ID): the input, pixel for pixel."""
    image = picture(75, 101, seed=3)
    s = create(base_url, png(image)).json()
    assert s["links"]["image"] == f"/v1/sessions/{s['id']}/image.png"
    assert np.array_equal(decoded(requests.get(f"{base_url}{s['links']['image']}", timeout=120)), image)
    rgba = np.dstack([image, np.full((75, 101), 7, np.uint8)])  # alpha dropped: the RGB the model sees
    sid = create(base_url, png(rgba)).json()["id"]
    assert np.array_equal(decoded(requests.get(f"{base_url}/v1/sessions/{sid}/image.png", timeout=120)), image)


def test_one_shot_matte(base_url):
    image = {"image": ("i.png", png(picture(50, 60)))}
    assert decoded(requests.post(f"{base_url}/v1/matte", files=image, timeout=120)).shape == (50, 60, 4)
    assert decoded(requests.post(f"{base_url}/v1/matte?output=alpha&refine=true", files=image, timeout=120)).shape == (
        50,
        60,
    )
    assert requests.post(f"{base_url}/v1/matte?output=jpeg", files=image, timeout=30).status_code == 422


def test_one_shot_matte_is_the_command_lines_bytes(base_url, tiny_model, tmp_path):
    """POST /v1/matte and `dugray cutout` (in this process, this process's threads; the replicas
    run one) give the same file bytes for the same image and options, with the same defaults."""
    from dugray.cli import main

    image, trimap = picture(60, 80, seed=5), np.full((60, 80), 128, np.uint8)
    trimap[:, :20], trimap[:, -20:] = 0, 255  # so that the untrained network's flat grey gets structure
    cv2.imwrite(str(tmp_path / "i.png"), image)
    cv2.imwrite(str(tmp_path / "t.png"), trimap)
    files = {"image": ("i.png", png(image))}
    cases = [
        ("", [], files),
        ("&refine=true", ["--refine"], files),
        ("&solve=false", ["--no-solve"], files),
        ("", ["--trimap", str(tmp_path / "t.png")], {**files, "trimap": ("t.png", png(trimap))}),
    ]
    alphas = set()
    for query, flags, upload in cases:
        for output, extra in (("alpha", ["--alpha-only"]), ("rgba", [])):
            out = tmp_path / f"{output}.png"
            assert main(["cutout", str(tmp_path / "i.png"), "-o", str(out), "--model", tiny_model, *flags, *extra]) == 0
            r = requests.post(f"{base_url}/v1/matte?output={output}{query}", files=upload, timeout=120)
            assert r.status_code == 200, r.text
            assert r.content == out.read_bytes(), (query, flags, output)
        alphas.add(requests.post(f"{base_url}/v1/matte?output=alpha{query}", files=upload, timeout=120).content)
    assert len(alphas) == len(cases)  # each option changed the matte


def test_concurrent_sessions_do_not_mix(base_url):
    """Three sessions at once, each labelled all-fg or all-bg: every one keeps its own answer."""
    sizes, answers, results = [(40, 56), (64, 48), (40, 56)], ["fg", "bg", "bg"], [None] * 3

    def one(i):
        h, w = sizes[i]
        sid = create(base_url, png(picture(h, w, seed=i))).json()["id"]
        r = requests.post(
            f"{base_url}/v1/sessions/{sid}/labels",
            json={"labels": [{"box": [0, 0, h, w], "label": answers[i]}]},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        results[i] = (r.json(), decoded(requests.get(f"{base_url}/v1/sessions/{sid}/alpha.png", timeout=120)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (view, alpha), (h, w), answer in zip(results, sizes, answers):
        assert (view["height"], view["width"]) == (h, w) and alpha.shape == (h, w)
        assert np.all(alpha == (255 if answer == "fg" else 0))
    assert len({view["id"] for view, _ in results}) == 3


def _bad_uploads():
    good = png(picture())
    huge = png(np.zeros((500, 500, 3), np.uint8))  # 250k pixels > MAX_PIXELS
    bomb = good[:16] + struct.pack(">II", 60_000, 60_000) + good[24:]
    return {
        "not an image": ({"image": b"hello, not a picture"}, 415),
        "truncated": ({"image": good[: len(good) // 2]}, 400),
        "empty": ({"image": b""}, 400),
        "1x1": ({"image": png(np.zeros((1, 1, 3), np.uint8))}, 422),
        "huge": ({"image": huge}, 413),
        "header bomb": ({"image": bomb}, 413),
        "no image field": ({"picture": good}, 422),
        "trimap of another size": ({"image": good, "trimap": png(np.zeros((10, 10), np.uint8))}, 422),
        "trimap and mask": (
            {"image": good, "trimap": png(np.zeros((72, 96), np.uint8)), "mask": png(np.zeros((72, 96), np.uint8))},
            422,
        ),
    }


@pytest.mark.parametrize("case", list(_bad_uploads()))
def test_bad_uploads_get_their_4xx(base_url, case):
    fields, status = _bad_uploads()[case]
    r = requests.post(f"{base_url}/v1/sessions", files={k: ("f.png", v) for k, v in fields.items()}, timeout=60)
    assert r.status_code == status, (case, r.text)
    assert set(r.json()) == {"error", "detail"}


def test_other_bad_requests_get_their_4xx_and_the_server_keeps_serving(base_url):
    assert requests.post(f"{base_url}/v1/sessions", json={"image": "x"}, timeout=30).status_code == 415
    sid = create(base_url).json()["id"]
    bad_labels = [
        {"labels": [{"index": 99, "label": "fg"}]},  # no such proposal
        {"labels": [{"box": [500, 500, 600, 600], "label": "fg"}]},  # outside the image
        {"labels": [{"index": 0, "label": "maybe"}]},
        {"labels": [{"label": "fg"}]},
        {"labels": [{"point": [500, 5], "label": "bg"}]},  # a click outside the image
        {"labels": [{"point": [5], "label": "bg"}]},
        {"labels": [{"point": [5, 5], "box": [0, 0, 4, 4], "label": "bg"}]},  # two targets
        {"labels": []},
        {"nothing": 1},
    ]
    for body in bad_labels:
        r = requests.post(f"{base_url}/v1/sessions/{sid}/labels", json=body, timeout=30)
        assert r.status_code == 422 and "error" in r.json(), (body, r.text)
    r = requests.post(
        f"{base_url}/v1/sessions/{sid}/labels",
        data=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 422
    for method, path in [
        ("get", ""),
        ("post", "/labels"),
        ("post", "/refine"),
        ("get", "/alpha.png"),
        ("get", "/image.png"),
        ("delete", ""),
    ]:
        r = requests.request(
            method,
            f"{base_url}/v1/sessions/0123456789abcdef{path}",
            json={"labels": [{"index": 0, "label": "fg"}]},
            timeout=30,
        )
        assert r.status_code == 404 and r.json()["error"] == "unknown session", (method, path, r.text)
    r = requests.get(f"{base_url}/v1/sessions/{sid}/bogus.png", timeout=30)
    assert r.status_code == 404 and r.json()["error"] == "unknown output" and "image" in r.json()["detail"], r.text
    # the session that saw all of this still works, and so does the server
    assert (
        requests.post(
            f"{base_url}/v1/sessions/{sid}/labels", json={"labels": [{"index": 0, "label": "fg"}]}, timeout=120
        ).status_code
        == 200
    )
    assert requests.get(f"{base_url}/v1/health", timeout=30).json()["status"] == "ok"


@pytest.mark.parametrize(
    "kind, image",
    [
        ("16-bit", np.full((40, 50, 3), 40000, np.uint16)),
        ("grey", np.full((40, 50), 90, np.uint8)),
        ("rgba", np.dstack([picture(40, 50), np.full((40, 50), 7, np.uint8)])),
    ],
)
def test_unusual_but_valid_images_are_accepted(base_url, kind, image):
    r = create(base_url, png(image))
    assert r.status_code == 201, (kind, r.text)
    assert (r.json()["width"], r.json()["height"]) == (50, 40)


def test_labelling_survives_the_death_of_a_matting_replica(base_url):
    """A label round reuses the network's first round (network_rounds "first"), so the network is
    next needed by a new session: both the label and the new session's first round go through."""
    import ray

    sid = create(base_url).json()["id"]
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if f"{APP}#Matting#" in a["name"]]
    assert names, ray.util.list_named_actors(all_namespaces=True)
    for name in names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    t0 = time.monotonic()
    r = requests.post(
        f"{base_url}/v1/sessions/{sid}/labels", json={"labels": [{"index": 0, "label": "fg"}]}, timeout=180
    )
    assert r.status_code == 200, r.text
    assert r.json()["round"] == 2, r.json()
    fresh = create(base_url)  # the network's forward, on the replica that replaced the dead one
    assert fresh.status_code == 201, fresh.text
    print(f"labelled and started a session after the replica's death in {time.monotonic() - t0:.1f} s")


def test_least_recently_used_sessions_are_evicted(base_url):
    ids = [create(base_url, png(picture(24, 24, seed=i))).json()["id"] for i in range(MAX_SESSIONS + 1)]
    assert requests.get(f"{base_url}/v1/sessions/{ids[0]}", timeout=30).status_code == 404
    assert all(requests.get(f"{base_url}/v1/sessions/{sid}", timeout=30).status_code == 200 for sid in ids[1:])
    store = requests.get(f"{base_url}/v1/health", timeout=30).json()["store"]
    assert store["sessions"] == MAX_SESSIONS and store["evicted"] >= 1


def test_the_solve_switch_gives_what_the_session_computes_in_process(base_url, tiny_model):
    """Sessions and one-shot mattes with and without the solve are exactly the in-process session's
    mattes (one implementation), and the switch is validated like every other input."""
    from dugray.models import load_model
    from dugray.session import MattingSession, SessionConfig

    bgr = picture(60, 80, seed=3)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    net = load_model(str(Path(tiny_model) / "matting.pt"), "matting").eval()
    expected = {
        solve: MattingSession(rgb, net, config=SessionConfig(solve=solve)).start().alpha_u8 for solve in (True, False)
    }
    assert not np.array_equal(expected[True], expected[False])  # the solve changes the matte
    image = {"image": ("i.png", png(bgr))}
    for solve in (True, False):
        r = requests.post(f"{base_url}/v1/matte?output=alpha&solve={str(solve).lower()}", files=image, timeout=120)
        np.testing.assert_array_equal(decoded(r), expected[solve])
    r = requests.post(f"{base_url}/v1/sessions?solve=false", files=image, timeout=120)
    assert r.status_code == 201 and r.json()["solve"] == {"enabled": False}, r.text
    sid = r.json()["id"]
    alpha = lambda: decoded(requests.get(f"{base_url}/v1/sessions/{sid}/alpha.png", timeout=120))  # noqa: E731
    np.testing.assert_array_equal(alpha(), expected[False])
    r = requests.patch(f"{base_url}/v1/sessions/{sid}", json={"solve": True}, timeout=120)
    assert r.status_code == 200, r.text
    solve = r.json()["solve"]
    assert solve["enabled"] and solve["guard"] == "ok" and 0 < solve["band_fraction"] <= 1 and solve["seconds"] > 0
    np.testing.assert_array_equal(alpha(), expected[True])
    assert requests.patch(f"{base_url}/v1/sessions/{sid}", json={"solve": "yes"}, timeout=30).status_code == 422
    assert requests.patch(f"{base_url}/v1/sessions/{sid}", json={"solve": True, "x": 1}, timeout=30).status_code == 422
    assert requests.patch(f"{base_url}/v1/sessions/{'0' * 32}", json={"solve": True}, timeout=30).status_code == 404
    assert requests.post(f"{base_url}/v1/matte?solve=maybe", files=image, timeout=30).status_code == 422


def test_the_corrective_click_user_gets_the_same_mattes_over_http_as_in_process(base_url, tiny_model):
    """The simulated user of the corrective-click protocol, driving the session API with boxes, sees
    exactly the mattes of the in-process session (one implementation); a point label is that box."""
    import torch

    from dugray.client import DugrayClient
    from dugray.evaluation.clicks import http_labeler, run_clicks, session_labeler
    from dugray.models import load_model
    from dugray.session import MattingSession, SessionConfig

    bgr = picture(60, 80, seed=5)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    yy, xx = np.mgrid[:60, :80]
    gt = np.where(np.hypot(yy - 30, xx - 40) < 20, 255, 0).astype(np.uint8)  # the disc
    net = load_model(str(Path(tiny_model) / "matting.pt"), "matting").eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the replica runs it
    try:
        s = MattingSession(rgb, net, config=SessionConfig()).start()
        local = run_clicks(s.alpha_u8, session_labeler(s), gt, 3, keep_mattes=True)
    finally:
        torch.set_num_threads(threads)
    with DugrayClient(base_url) as api:
        view = api.create_session(bgr[..., ::-1].copy())
        first = decoded(requests.get(f"{base_url}/v1/sessions/{view.id}/alpha.png", timeout=120))
        remote = run_clicks(first, http_labeler(api, view.id), gt, 3, keep_mattes=True)
        assert [c.box for c in remote.clicks] == [c.box for c in local.clicks] and len(local.clicks) == 3
        for a, b in zip(remote.mattes, local.mattes):
            np.testing.assert_array_equal(a, b)
        # the same click as a point: the same round
        click = local.clicks[0]
        other = api.create_session(bgr[..., ::-1].copy())
        r = requests.post(
            f"{base_url}/v1/sessions/{other.id}/labels",
            json={"labels": [{"point": [click.y, click.x], "label": click.label}]},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        got = decoded(requests.get(f"{base_url}/v1/sessions/{other.id}/alpha.png", timeout=120))
        np.testing.assert_array_equal(got, local.mattes[1])


def test_without_keys_other_sites_and_forged_addresses_get_nothing(base_url):
    """Issue 23: a foreign page's POST and a DNS name that is not ours get 403; rotating
    X-Forwarded-For does not give a client a fresh rate-limit bucket (nor a fresh quota)."""
    port = base_url.rsplit(":", 1)[1]
    image = {"image": ("i.png", png(picture(40, 50)))}
    r = requests.post(f"{base_url}/v1/matte", files=image, headers={"Origin": "http://evil.example"}, timeout=60)
    assert r.status_code == 403 and r.json()["error"] == "cross-origin request refused", r.text
    r = requests.get(f"{base_url}/", headers={"Host": f"rebound.example:{port}"}, timeout=60)
    assert r.status_code == 403 and r.json()["error"] == "unknown host"
    own = requests.post(f"{base_url}/v1/matte", files=image, headers={"Origin": base_url}, timeout=120)
    assert own.status_code == 200 and "frame-ancestors 'none'" in own.headers["content-security-policy"]
    from concurrent.futures import ThreadPoolExecutor

    def forged(i):
        return requests.get(
            f"{base_url}/v1/sessions/{'0' * 32}", headers={"X-Forwarded-For": f"10.{i // 250}.{i % 250}.1"}, timeout=60
        ).status_code

    with ThreadPoolExecutor(8) as pool:  # faster than the bucket refills (burst 40, 20/s)
        codes = list(pool.map(forged, range(200)))
    assert codes.count(404) >= 30 and codes.count(429) >= 20, codes
    time.sleep(3)  # the bucket (this module's only client address) refills for the other tests
