"""The web page against a server with API keys: it asks for the key once, keeps it for the tab,
and sends it with every call, the PNG downloads included (headless Chromium, slow)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from app_on_loopback import app_on_loopback
from test_web import ARTIFACTS, H, W, browser, expect, picture, write  # noqa: F401 - browser is a fixture

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
KEY = "web-page-key-" + "w" * 12


@pytest.fixture(scope="module")
def keyed_url(tiny_model):
    with app_on_loopback(tiny_model, "dugray-web-keys", {"max_pixels": 200_000, "api_keys": [KEY]}) as url:
        yield url


def test_the_page_asks_for_the_key_once_and_sends_it_everywhere(browser, keyed_url, tmp_path):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1366, "height": 768})
    page = context.new_page()
    prompts, errors = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def answer(dialog):
        prompts.append(dialog.message)
        dialog.accept(KEY)

    page.on("dialog", answer)
    page.goto(keyed_url + "/")
    page.set_input_files("#file", write(tmp_path / "p.png", picture()))
    page.wait_for_selector('#view[data-drawn="checker:1"]')
    assert prompts == ["This dugray server needs an API key:"]
    assert page.evaluate("() => sessionStorage.getItem('dugray-api-key')") == KEY
    page.check("input[name=view][value=alpha]")
    page.wait_for_selector('#view[data-drawn="alpha:1"]')  # the matte PNG came with the key
    with page.expect_download() as download:
        page.click("#download-cutout")
    png = cv2.imdecode(np.frombuffer(Path(download.value.path()).read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.shape == (H, W, 4)
    page.screenshot(path=str(ARTIFACTS / "20-with-api-key.png"))
    assert len(prompts) == 1 and not errors
    context.close()
