"""Issue 30 through the real Serve graph: a setting that failed every label round, label work past
the operator's bounds, and the hostile uploads, over HTTP on loopback (one app for all)."""

import time

import cv2
import numpy as np
import pytest
import requests
from app_on_loopback import app_on_loopback

from jobs.benchmarks.hostile import float64_tiff, jpeg_padding, os2_bmp, png_with_trailing_data, tiled_tiff

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def url(tiny_model):
    settings = {
        "max_pixels": 200_000,
        "retry_s": 90,
        "max_labels_per_request": 8,
        "max_carry_passes": 4,
        "session": {"proposals": "epistemic"},
    }  # the paper's Algorithm 1, label carrying on (the default)
    with app_on_loopback(tiny_model, "dugray-hostile", settings) as base:
        yield base


def picture(h=72, w=96) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (230, 200, 40), -1)
    return img


def create(url) -> dict:
    r = requests.post(
        f"{url}/v1/sessions", files={"image": ("i.png", cv2.imencode(".png", picture())[1].tobytes())}, timeout=120
    )
    assert r.status_code == 201, r.text
    return r.json()


def label(url, sid, labels):
    return requests.post(f"{url}/v1/sessions/{sid}/labels", json={"labels": labels}, timeout=180)


def test_epistemic_proposals_take_label_rounds_through_the_graph(url):
    """proposals="epistemic" with carried labels was a 500 on every label round (the Proposer
    deployment got no rounds to rank)."""
    s = create(url)
    for labels in ([{"box": [2, 2, 12, 12], "label": "bg"}], [{"point": [36, 48], "label": "fg"}]):
        r = label(url, s["id"], labels)
        assert r.status_code == 200, r.text
        assert r.json()["proposals"]
    assert r.json()["round"] == 3 and r.json()["labels"] == 2
    png = requests.get(f"{url}/v1/sessions/{s['id']}/epistemic.png", timeout=120)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_label_work_past_the_operators_bounds_is_422_and_the_session_is_unchanged(url):
    sid = create(url)["id"]
    r = label(url, sid, [{"point": [5, 5], "label": "bg"}] * 9)
    assert r.status_code == 422 and r.json()["error"] == "too many labels", r.text
    dots = [{"box": [y, x, y + 1, x + 1], "label": "fg"} for y, x in ((5, 5), (5, 50), (40, 5), (40, 50), (65, 90))]
    r = label(url, sid, dots)
    assert r.status_code == 422 and r.json()["error"] == "too many labelled regions", r.text
    view = requests.get(f"{url}/v1/sessions/{sid}", timeout=30).json()
    assert view["round"] == 1 and view["labels"] == 0
    assert label(url, sid, dots[:4]).status_code == 200  # at the bound: served


@pytest.mark.parametrize(
    "name, body, status",
    [
        ("tile bomb", tiled_tiff(tile=16368), 415),
        ("png trailing data", png_with_trailing_data(400), 413),
        ("float64 tiff", float64_tiff(400), 413),
        ("jpeg junk", jpeg_padding(b"\xff", 8), 415),
    ],
)
def test_hostile_uploads_are_refused_and_health_stays_fast(url, name, body, status):
    t = time.perf_counter()
    r = requests.post(f"{url}/v1/sessions", files={"image": ("x", body)}, timeout=60)
    assert r.status_code == status and set(r.json()) == {"error", "detail"}, (name, r.text)
    assert time.perf_counter() - t < 10
    assert requests.get(f"{url}/v1/health", timeout=5).json()["status"] == "ok"


def test_an_os2_bitmap_is_served(url):
    r = requests.post(f"{url}/v1/matte?output=alpha", files={"image": ("x.bmp", os2_bmp(48, 40))}, timeout=120)
    assert r.status_code == 200, r.text
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED).shape == (40, 48)
