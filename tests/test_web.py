"""The web page at / in headless Chromium (Playwright), against the real Serve app on loopback.

Debian's chromium (/usr/bin/chromium, installed by .ci/run) is driven through its
executable path; Playwright's own browser download is never used. Every step leaves a
screenshot in test-artifacts/web/: look at them after changing the page.
"""

import re
from pathlib import Path
from urllib.parse import urljoin

import cv2
import numpy as np
import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "web"
H, W = 120, 160

from app_on_loopback import app_on_loopback  # noqa: E402

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
if not CHROMIUM.exists():
    pytest.skip(f"no {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
expect = sync_api.expect


@pytest.fixture(scope="module")
def base_url(tiny_model):
    """The app with tiny random checkpoints on a free loopback port (tests/app_on_loopback.py)."""
    with app_on_loopback(tiny_model, "dugray-web-test", {"max_pixels": 200_000}) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url, request):
    """A fresh page that may fetch nothing but the app, and fails the test on a script error."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    options = getattr(request, "param", {"viewport": {"width": 1366, "height": 768}})  # a laptop
    context = browser.new_context(accept_downloads=True, **options)
    elsewhere, errors = [], []

    def only_the_app(route):
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_app)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url + "/")
    yield page
    context.close()
    assert not elsewhere, f"the page fetched from outside the app: {elsewhere}"
    assert not errors, f"script errors: {errors}"


def picture(h=H, w=W) -> np.ndarray:
    """A yellow disc on a dark textured background (BGR)."""
    img = np.random.default_rng(0).integers(0, 90, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (40, 200, 230), -1)
    return img


def write(path: Path, image: np.ndarray) -> str:
    cv2.imwrite(str(path), image)
    return str(path)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def open_image(page, path, round_=1) -> dict:
    """Opens a file through the file input; returns the session as the API tells it."""
    page.set_input_files("#file", path)
    page.wait_for_selector(f'#view[data-drawn="checker:{round_}"]')  # the cut-out is what a round shows first
    return session(page)


def session(page) -> dict:
    """The page's current session, read from the API (its id is in the download link)."""
    href = page.get_attribute("#download-alpha", "href")
    return requests.get(urljoin(page.url, href.split("/alpha.png")[0]), timeout=30).json()


def alpha(page, view) -> np.ndarray:
    r = requests.get(urljoin(page.url, f"v1/sessions/{view['id']}/alpha.png"), timeout=60)
    return cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)


def canvas_pixels(page) -> np.ndarray:
    """What the page's view canvas holds, RGBA (H, W, 4) at the canvas's own size."""
    data = page.evaluate(
        "() => { const c = document.getElementById('view'); "
        "return [c.height, c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }"
    )
    return np.array(data[2], np.uint8).reshape(data[0], data[1], 4)


def canvas_alpha(page) -> np.ndarray:
    """What the page shows in the alpha view (red channel of its view canvas)."""
    return canvas_pixels(page)[..., 0]


def box_point(page, box, fraction=0.5) -> tuple[float, float]:
    """Page coordinates of a point inside a full-resolution [y0, x0, y1, x1] box."""
    bb = page.locator("#overlay").bounding_box()
    y0, x0, y1, x1 = box
    x = x0 + (x1 - x0) * fraction
    y = y0 + (y1 - y0) * fraction
    return bb["x"] + x / W * bb["width"], bb["y"] + y / H * bb["height"]


def inner(a: np.ndarray, box) -> np.ndarray:
    y0, x0, y1, x1 = box
    return a[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]


def labels_shown(page) -> list[str]:
    return page.locator("#proposals li").evaluate_all("items => items.map(li => li.dataset.label)")


def test_label_apply_views_refine_and_download(page, tmp_path):
    expect(page.locator("#dropzone")).to_be_visible()
    shot(page, "01-empty")
    first = open_image(page, write(tmp_path / "disc.png", picture()))
    boxes = [p["box"] for p in first["proposals"]]
    assert len(boxes) >= 5
    expect(page.locator("#proposals li")).to_have_count(len(boxes))
    expect(page.locator("#clock")).to_contain_text("0 labelling rounds")
    shot(page, "02-proposals")

    page.mouse.click(*box_point(page, boxes[0]))  # a click on box 1: foreground
    for key in "2bts":  # select 2: background, then 3 transition, 4 skipped
        page.keyboard.press(key)
    page.get_by_role("button", name="Proposal 5: foreground").click()
    assert labels_shown(page)[:5] == ["fg", "bg", "transition", "", "fg"]
    expect(page.locator("#apply")).to_have_text("Apply 4 labels")
    shot(page, "03-labelled")

    page.get_by_label("Alpha").check()
    page.wait_for_selector('#view[data-drawn="alpha:1"]')
    before = canvas_alpha(page)
    page.keyboard.press("a")
    page.wait_for_selector('#view[data-drawn="alpha:2"]')
    shown, served = canvas_alpha(page), alpha(page, first)
    assert (shown != before).any() and np.array_equal(shown, served)
    assert (
        (inner(served, boxes[0]) == 255).all()
        and (inner(served, boxes[1]) == 0).all()
        and (inner(served, boxes[4]) == 255).all()
    )
    expect(page.locator("#status")).to_contain_text("Round 2")
    expect(page.locator("#clock")).to_contain_text("1 labelling round ·")
    expect(page.locator("#apply")).to_be_disabled()
    shot(page, "04-applied-alpha")

    page.select_option("#brush", "bg")  # a background stroke along the top rows
    page.mouse.move(*box_point(page, [2, 4, 2, 4]))
    page.mouse.down()
    page.mouse.move(*box_point(page, [2, W - 4, 2, W - 4]), steps=8)
    page.mouse.up()
    expect(page.locator("#apply")).to_have_text("Apply 1 stroke")
    shot(page, "05-stroke")
    page.click("#apply")
    page.wait_for_selector('#view[data-drawn="alpha:3"]')
    assert (alpha(page, first)[:4, 2 : W - 2] == 0).all()

    for i, view in enumerate(["checker", "colour", "epistemic", "aleatoric"]):
        page.check(f"input[name=view][value={view}]")
        page.wait_for_selector(f'#view[data-drawn="{view}:3"]')
        shot(page, f"06-view-{i}-{view}")
    page.keyboard.press("r")
    page.wait_for_selector('#view[data-drawn="aleatoric:3r"]')
    expect(page.locator("#status")).to_contain_text("matte refined")
    expect(page.locator("#refine")).to_be_disabled()
    page.check("input[name=view][value=checker]")
    page.wait_for_selector('#view[data-drawn="checker:3r"]')
    shot(page, "07-refined-checker")

    for link, channels in [("#download-cutout", 4), ("#download-alpha", 1)]:
        with page.expect_download() as download:
            page.click(link)
        data = Path(download.value.path()).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        png = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert png.shape[:2] == (H, W) and (png.shape[2] if png.ndim == 3 else 1) == channels
    expect(page.locator("#status")).to_contain_text("Cutout downloaded: 2 labelling rounds")


def test_the_solve_switch_changes_the_shown_matte_and_says_so(page, tmp_path):
    """An untrained net says 0.5 everywhere, which leaves the solve nothing to pin; two clicks
    (fg on the disc, bg in a corner) give it labels, and then solve on and off differ a lot."""
    view = open_image(page, write(tmp_path / "solve.png", picture()))
    assert view["solve"]["enabled"] and page.is_checked("#solve")
    expect(page.locator("#status")).to_contain_text("Solve: ")
    page.get_by_label("Alpha").check()
    page.keyboard.press("c")
    page.mouse.click(*box_point(page, [H // 2, W // 2, H // 2, W // 2]))
    page.wait_for_selector('#view[data-drawn="alpha:2"]')
    page.mouse.click(*box_point(page, [6, 6, 6, 6]), button="right")
    page.wait_for_selector('#view[data-drawn="alpha:3"][data-solve="on"]')
    solved = canvas_alpha(page)
    page.get_by_label("Solve with the image").uncheck()
    page.wait_for_selector('#view[data-drawn="alpha:3"][data-solve="off"]')
    expect(page.locator("#status")).to_contain_text("Solve off")
    shown = canvas_alpha(page)
    assert np.array_equal(shown, alpha(page, view))
    assert (np.abs(shown.astype(int) - solved) > 16).mean() > 0.05  # not a rounding difference
    assert session(page)["solve"] == {"enabled": False}
    shot(page, "08-solve-off")
    page.get_by_label("Solve with the image").check()
    page.wait_for_selector('#view[data-drawn="alpha:3"][data-solve="on"]')
    assert np.array_equal(canvas_alpha(page), solved)


def test_a_bad_file_shows_an_error_and_the_page_keeps_working(page, tmp_path):
    page.set_input_files(
        "#file", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": np.random.default_rng(1).bytes(3000)}]
    )
    expect(page.get_by_role("alert")).to_contain_text(
        "Could not open broken.png: image: unsupported or unreadable image format"
    )
    expect(page.locator("#dropzone")).to_be_visible()
    shot(page, "08-bad-file")

    good = write(tmp_path / "disc.png", picture())
    view = open_image(page, good)
    expect(page.get_by_role("alert")).to_be_hidden()
    page.set_input_files("#trimap", write(tmp_path / "small.png", np.zeros((10, 10), np.uint8)))  # reopens with it
    expect(page.get_by_role("alert")).to_contain_text("trimap")
    assert session(page)["id"] == view["id"]  # the session shown before the error is still there
    shot(page, "09-bad-trimap")

    trimap = np.zeros((H, W), np.uint8)
    cv2.circle(trimap, (W // 2, H // 2), H // 3 + 3, 128, -1)
    cv2.circle(trimap, (W // 2, H // 2), H // 3 - 3, 255, -1)
    page.set_input_files("#trimap", write(tmp_path / "trimap.png", trimap))
    expect(page.get_by_role("alert")).to_be_hidden()
    page.wait_for_selector('#view[data-drawn="checker:1"]')
    with_trimap = session(page)
    assert with_trimap["id"] != view["id"]
    a = alpha(page, with_trimap)
    assert (a[trimap == 255] == 255).all() and (a[trimap == 0] == 0).all()
    page.keyboard.press("f")
    expect(page.locator("#apply")).to_have_text("Apply 1 label")
    shot(page, "10-trimap")


def test_a_session_created_elsewhere_opens_from_its_id(page, base_url, tmp_path):
    """/?session=ID (what `dugray interactive IMAGE --web` opens) continues a session made through the API."""
    image = picture()
    r = requests.post(
        f"{base_url}/v1/sessions", files={"image": ("disc.png", cv2.imencode(".png", image)[1].tobytes())}, timeout=120
    )
    assert r.status_code == 201, r.text
    made = r.json()
    boxes = [p["box"] for p in made["proposals"]]
    page.goto(f"{base_url}/?session={made['id']}")
    page.wait_for_selector('#view[data-drawn="checker:1"]')
    expect(page.locator("#proposals li")).to_have_count(len(boxes))
    expect(page.locator("#clock")).to_contain_text("0 labelling rounds")
    expect(page.get_by_role("alert")).to_be_hidden()
    assert page.url == f"{base_url}/"  # the id left the address bar: a reload starts afresh
    page.get_by_label("Image", exact=True).check()
    page.wait_for_selector('#view[data-drawn="image:1"]')
    shown = canvas_pixels(page)
    assert shown.shape == (H, W, 4) and np.array_equal(shown[..., :3], image[..., ::-1])  # the input, pixel for pixel
    bb = page.locator("#overlay").bounding_box()
    assert abs(bb["width"] / bb["height"] - W / H) < 0.02
    assert page.get_attribute("#download-alpha", "download") == f"session-{made['id'][:8]}-alpha.png"
    shot(page, "12-session-handoff")

    page.mouse.click(*box_point(page, boxes[0]))  # foreground
    expect(page.locator("#apply")).to_have_text("Apply 1 label")
    page.click("#apply")
    page.wait_for_selector('#view[data-drawn="image:2"]')  # the view the user chose stays
    now = session(page)
    assert now["id"] == made["id"] and now["round"] == 2 and now["labels"] == 1
    assert (inner(alpha(page, now), boxes[0]) == 255).all()
    expect(page.locator("#status")).to_contain_text("Round 2")
    expect(page.locator("#clock")).to_contain_text("1 labelling round ·")
    page.keyboard.press("v")  # on to the alpha view
    page.wait_for_selector('#view[data-drawn="alpha:2"]')
    assert np.array_equal(canvas_alpha(page), alpha(page, now))
    shot(page, "13-session-handoff-applied")

    page.goto(f"{base_url}/?session=deadbeef")
    expect(page.get_by_role("alert")).to_contain_text(
        "Could not open session deadbeef: this server has no such session"
    )
    expect(page.locator("#dropzone")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Open or drop an image to start.")
    shot(page, "14-unknown-session")
    open_image(page, write(tmp_path / "disc.png", image))  # the page still works
    expect(page.get_by_role("alert")).to_be_hidden()


def test_click_to_fix_one_click_is_one_round(page, tmp_path):
    """Click to fix: a left click says foreground, a right click (or a left one with the toggle) background;
    each is one round through a point label, no Apply; the page shows the server's matte and the click."""
    view = open_image(page, write(tmp_path / "fix.png", picture()))
    page.get_by_label("Alpha").check()
    page.wait_for_selector('#view[data-drawn="alpha:1"]')
    page.keyboard.press("c")  # the key turns the mode on
    assert page.is_checked("#click-fix")
    page.mouse.click(*box_point(page, [H // 2, W // 2, H // 2, W // 2]))  # left: foreground, on the disc
    page.wait_for_selector('#view[data-drawn="alpha:2"]')
    now = session(page)
    assert now["round"] == 2 and now["labels"] == 1
    served = alpha(page, now)
    assert served[H // 2, W // 2] == 255 and np.array_equal(canvas_alpha(page), served)
    expect(page.locator("#apply")).to_be_disabled()  # nothing pending: the click was the round
    page.mouse.click(*box_point(page, [6, 6, 6, 6]), button="right")  # right: background, in the corner
    page.wait_for_selector('#view[data-drawn="alpha:3"]')
    assert alpha(page, session(page))[6, 6] == 0
    page.get_by_label("as background").check()
    corner = box_point(page, [H - 6, W - 6, H - 6, W - 6])
    page.mouse.click(*corner)  # left with the toggle: background
    page.wait_for_selector('#view[data-drawn="alpha:4"]')
    last = session(page)
    assert last["round"] == 4 and last["labels"] == 3 and alpha(page, last)[H - 6, W - 6] == 0
    dot = page.evaluate(
        "([x, y]) => { const c = document.getElementById('overlay'); const r = c.getBoundingClientRect();"
        " return Array.from(c.getContext('2d').getImageData(Math.floor((x - r.left) * c.width / r.width),"
        " Math.floor((y - r.top) * c.height / r.height), 1, 1).data); }",
        list(corner),
    )
    assert dot == [76, 141, 255, 255]  # the last click is drawn where it was, in the background colour
    expect(page.locator("#status")).to_contain_text("Round 4")
    shot(page, "15-click-to-fix")
    page.select_option("#brush", "fg")  # painting turns the click mode off
    assert not page.is_checked("#click-fix")
    assert view["id"] == last["id"]


def test_undo_button_and_ctrl_z_go_back_to_what_each_round_showed(page, tmp_path):
    """Two click-to-fix rounds, then Ctrl+Z and the Undo button: each time the page shows the round
    before pixel for pixel (the server's PNG too), the undone click's dot goes, and at round 1 Undo is off."""
    open_image(page, write(tmp_path / "undo.png", picture()))
    expect(page.locator("#undo")).to_be_disabled()
    page.get_by_label("Alpha").check()
    page.wait_for_selector('#view[data-drawn="alpha:1"]')
    shown = {1: canvas_alpha(page)}
    page.keyboard.press("c")
    page.mouse.click(*box_point(page, [H // 2, W // 2, H // 2, W // 2]))  # foreground on the disc
    page.wait_for_selector('#view[data-drawn="alpha:2"]')
    shown[2] = canvas_alpha(page)
    page.mouse.click(*box_point(page, [H // 2, W // 2 + 10, H // 2, W // 2 + 10]), button="right")  # background on it
    page.wait_for_selector('#view[data-drawn="alpha:3"]')
    assert not np.array_equal(canvas_alpha(page), shown[2]) and not np.array_equal(shown[2], shown[1])
    dots = lambda: page.evaluate("() => state.clicks.length")  # noqa: E731
    assert dots() == 2
    page.keyboard.press("Control+z")
    page.wait_for_selector('#view[data-drawn="alpha:2"]')
    assert np.array_equal(canvas_alpha(page), shown[2]) and np.array_equal(alpha(page, session(page)), shown[2])
    assert dots() == 1 and session(page)["labels"] == 1
    expect(page.locator("#status")).to_contain_text("Round 2")
    page.click("#undo")
    page.wait_for_selector('#view[data-drawn="alpha:1"]')
    assert np.array_equal(canvas_alpha(page), shown[1]) and dots() == 0
    expect(page.locator("#undo")).to_be_disabled()
    expect(page.locator("#clock")).to_contain_text("0 labelling rounds")
    page.keyboard.press("Control+z")  # nothing before round 1: no request, no error
    expect(page.get_by_role("alert")).to_be_hidden()
    assert session(page)["round"] == 1
    shot(page, "16-undone")


def in_view(page, selector: str, width=1366, height=768) -> bool:
    """Whether the element lies wholly inside the window (no scrolling needed to see it)."""
    bb = page.locator(selector).bounding_box()
    return (
        bb is not None
        and bb["x"] >= 0
        and bb["y"] >= 0
        and bb["x"] + bb["width"] <= width
        and bb["y"] + bb["height"] <= height
    )


def test_a_laptop_screen_shows_the_cutout_the_timings_and_what_the_numbers_mean(page, tmp_path):
    """At 1366x768 (docs/usage.md's laptop), after round 1 and after a round with every proposal
    labelled: the cut-out is drawn, the status line with the server's timings is in the window
    without scrolling, and the proposals' numbers are explained right above them."""
    first = open_image(page, write(tmp_path / "laptop.png", picture()))
    assert page.viewport_size == {"width": 1366, "height": 768}
    for round_ in (1, 2):
        assert page.get_attribute("#view", "data-drawn") == f"checker:{round_}"
        shown = canvas_pixels(page)  # the cut-out: the served matte is its alpha channel, not an opaque image
        assert np.array_equal(shown[..., 3], alpha(page, session(page))) and (shown[..., 3] < 255).any()
        assert in_view(page, "#status") and in_view(page, "#stage")
        expect(page.locator("#status")).to_contain_text(f"Round {round_}")
        expect(page.locator("#status")).to_contain_text(re.compile(r"Server: \d+\.\d\d s"))
        assert page.evaluate("() => document.getElementById('panel').scrollTop") == 0  # nothing was scrolled
        assert in_view(page, "#score-note") and in_view(page, "#proposals li:first-child .score")
        expect(page.locator("#score-note")).to_contain_text("how unsure the model is there")
        note, score = (
            page.locator("#score-note").bounding_box(),
            page.locator("#proposals li:first-child").bounding_box(),
        )
        assert 0 <= score["y"] - (note["y"] + note["height"]) < 20  # said where the numbers are shown
        shot(page, f"17-laptop-round-{round_}")
        if round_ == 1:
            for i in range(len(first["proposals"])):
                page.get_by_role("button", name=f"Proposal {i + 1}: background").click()
            page.click("#apply")
            page.wait_for_selector('#view[data-drawn="checker:2"]')


@pytest.mark.parametrize("page", [{"viewport": {"width": 1024, "height": 768}, "has_touch": True}], indirect=True)
def test_tablet_touch(page, tmp_path):
    view = open_image(page, write(tmp_path / "disc.png", picture()))
    page.tap("#overlay", position=_local(page, view["proposals"][0]["box"]))
    assert labels_shown(page)[0] == "fg"
    for control in ["#apply", "#refine", "#proposals li:last-child", "#download-cutout"]:
        bb = page.locator(control).bounding_box()
        assert bb["y"] + bb["height"] <= 768 and bb["x"] + bb["width"] <= 1024, control
    page.tap("#apply")
    page.wait_for_selector('#view[data-drawn="checker:2"]')
    shot(page, "11-tablet")


def _local(page, box) -> dict:
    bb = page.locator("#overlay").bounding_box()
    x, y = box_point(page, box)
    return {"x": x - bb["x"], "y": y - bb["y"]}


def test_docs_render_the_operation_list_with_nothing_from_elsewhere(page, base_url):
    """/docs on a machine without internet: Swagger UI's files come from the app (the page fixture
    fails the test on any request that leaves it), and it lists every operation of /openapi.json."""
    spec = requests.get(base_url + "/openapi.json", timeout=30).json()
    operations = [(method.upper(), path) for path, item in spec["paths"].items() for method in item]
    assert ("POST", "/v1/sessions/{sid}/undo") in operations
    response = page.goto(base_url + "/docs")
    assert "http" not in response.headers["content-security-policy"]
    blocks = page.locator(".opblock-summary")
    expect(blocks).to_have_count(len(operations))
    shown = {
        (
            b.locator(".opblock-summary-method").inner_text(),
            b.locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for b in blocks.all()
    }
    assert shown == set(operations)
    expect(page.locator(".information-container .title")).to_contain_text("dugray")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = requests.get(f"{base_url}/static/{asset}", timeout=30)
        assert r.status_code == 200 and len(r.content) > 100_000, asset
    shot(page, "18-docs-offline")


def test_only_the_page_files_are_served(base_url):
    assert requests.get(base_url + "/", timeout=30).headers["content-type"].startswith("text/html")
    assert "javascript" in requests.get(base_url + "/static/app.js", timeout=30).headers["content-type"]
    for path in ["/static/app.py", "/static/..%2Fapp.py", "/static/"]:
        assert requests.get(base_url + path, timeout=30).status_code == 404, path
