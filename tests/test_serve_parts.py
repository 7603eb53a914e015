"""The serving layer's plain parts, without Ray: session table, uploads, images, batching, settings."""

import struct
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml

from dugray.data.io import encode_png
from dugray.models import create_model
from dugray.session import new_state, predict_round, predict_rounds
from dugray.usermap import mask_to_trimap
from serve.errors import ApiError
from serve.imaging import decode_image, decode_plane, probe
from serve.schemas import LabelRequest
from serve.settings import ServeSettings
from serve.store import SessionTable
from serve.uploads import parse_form

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- session table


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_table_evicts_least_recently_used_past_the_count():
    table = SessionTable(max_sessions=2, ttl_s=100, max_bytes=10**6)
    for sid in "abc":
        assert table.put(sid, b"x", {"id": sid})["ok"]
        if sid == "b":
            table.get("a")  # a is now more recent than b
    assert table.get("b") is None and table.get("a") and table.get("c")
    assert table.stats()["evicted"] == 1


def test_table_evicts_past_the_byte_bound_and_refuses_a_blob_over_it():
    table = SessionTable(max_sessions=10, ttl_s=100, max_bytes=10)
    table.put("a", b"12345", {})
    table.put("b", b"12345", {})
    table.put("c", b"1", {})
    assert table.get("a") is None and table.stats()["bytes"] == 6
    assert table.put("d", b"x" * 11, {}) == {"ok": False, "error": "too_large"}


def test_table_expires_idle_sessions():
    clock = Clock()
    table = SessionTable(max_sessions=10, ttl_s=5, max_bytes=100, clock=clock)
    table.put("a", b"1", {})
    table.put("b", b"1", {})
    clock.t = 4
    assert table.get("b")  # touched: stays
    clock.t = 8
    assert table.get("a") is None and table.get("b")
    clock.t = 20
    assert table.stats()["sessions"] == 0 and table.stats()["expired"] == 2


def test_table_versions_refuse_lost_updates():
    table = SessionTable(max_sessions=10, ttl_s=100, max_bytes=100)
    assert table.put("a", b"1", {}) == {"ok": True, "version": 0}
    assert table.put("a", b"1", {}) == {"ok": False, "error": "conflict"}  # create over an existing id
    assert table.put("a", b"2", {}, expect_version=0) == {"ok": True, "version": 1}
    assert table.put("a", b"3", {}, expect_version=0) == {"ok": False, "error": "conflict"}
    assert table.put("zz", b"3", {}, expect_version=0) == {"ok": False, "error": "missing"}
    assert table.get("a")[0] == b"2"
    assert table.delete("a") and not table.delete("a")


# --------------------------------------------------------------------------- uploads


def _multipart(files=None, data=None):
    req = httpx.Request("POST", "http://x/", files=files, data=data)
    return req.read(), req.headers["content-type"]


def test_parse_form_returns_every_field_byte_exact():
    tricky = b"\r\n--not-the-boundary\r\n\r\n\x00\xff" * 3
    body, ctype = _multipart(files={"image": ("a.png", tricky, "image/png"), "mask": ("m.png", b"", "image/png")}, data={"x": "1"})
    assert parse_form(body, ctype) == {"image": tricky, "mask": b"", "x": b"1"}


@pytest.mark.parametrize(
    "mangle, status",
    [
        (lambda b, c: (b, "application/json"), 415),
        (lambda b, c: (b, "multipart/form-data"), 400),  # no boundary
        (lambda b, c: (b[: len(b) // 2], c), 400),  # truncated: no closing delimiter
        (lambda b, c: (b"", c), 400),
    ],
)
def test_parse_form_rejects_malformed_bodies(mangle, status):
    body, ctype = _multipart(files={"image": ("a.png", b"abc" * 100)})
    with pytest.raises(ApiError) as err:
        parse_form(*mangle(body, ctype))
    assert err.value.status == status


# --------------------------------------------------------------------------- images


def _png(a):
    return cv2.imencode(".png", a)[1].tobytes()


def test_decode_gives_rgb_order_and_new_state_accepts_every_kind():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert decode_image(_png(rgb[..., ::-1]), 10**6)[0, 0].tolist() == [200, 0, 0]
    cases = {
        "grey": np.full((20, 30), 77, np.uint8),
        "16-bit": np.full((20, 30, 3), 65535, np.uint16),
        "rgba": np.dstack([rgb[..., ::-1], np.full((20, 30), 9, np.uint8)]),
    }
    for name, a in cases.items():
        state = new_state(decode_image(_png(a), 10**6))
        assert state.image.shape == (20, 30, 3) and state.image.dtype == np.uint8, name
    assert new_state(decode_image(_png(cases["16-bit"]), 10**6)).image.max() == 255


def test_decode_refuses_garbage_truncation_and_size():
    png = _png(np.zeros((40, 40, 3), np.uint8))
    for data, status in ((b"hello", 415), (png[:60], 400), (b"", 400)):
        with pytest.raises(ApiError) as err:
            decode_image(data, 10**6)
        assert err.value.status == status
    with pytest.raises(ApiError) as err:
        decode_image(png, 1000)
    assert err.value.status == 413
    # a header that claims 100k x 100k pixels is refused before anything is decoded
    bomb = png[:16] + struct.pack(">II", 100_000, 100_000) + png[24:]
    with pytest.raises(ApiError) as err:
        decode_image(bomb, 10**8)
    assert err.value.status == 413


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm"])
def test_the_size_of_every_accepted_format_is_read_from_its_header(ext):
    image = np.zeros((37, 53), np.uint8) if ext == ".pgm" else np.zeros((37, 53, 3), np.uint8)
    data = cv2.imencode(ext, image)[1].tobytes()
    assert probe(data) == ((53, 37), 1)
    assert decode_image(data, 10**6).shape[:2] == (37, 53)


@pytest.mark.parametrize("ext", [".tiff", ".png", ".jpg", ".webp", ".bmp"])
def test_a_decompression_bomb_of_each_format_is_refused_before_decoding(ext, monkeypatch):
    """8000 x 8000 of one colour compresses to little; it must be refused without decoding it."""
    params = [cv2.IMWRITE_TIFF_COMPRESSION, 8] if ext == ".tiff" else []  # 8: deflate
    data = cv2.imencode(ext, np.zeros((8000, 8000), np.uint8), params)[1].tobytes()
    if ext == ".tiff":
        assert len(data) < 600_000  # the 0.4 MB TIFF
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    with pytest.raises(ApiError) as err:
        decode_image(data, 40_000_000)
    assert err.value.status == 413 and "8000x8000" in err.value.detail


@pytest.mark.parametrize("header", [b"GIF89a" + struct.pack("<HH", 8000, 8000) + b"\x00" * 64,
                                    b"P5\n# a comment\n8000 8000\n255\n" + b"\x00" * 64,
                                    b"BM" + b"\x00" * 16 + struct.pack("<ii", 8000, -8000) + b"\x00" * 64])
def test_headers_of_gif_pnm_and_bmp_that_claim_a_huge_image_are_refused(header, monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    with pytest.raises(ApiError) as err:
        decode_image(header, 40_000_000)
    assert err.value.status == 413 and "8000x8000" in err.value.detail


def test_a_jpeg_with_junk_between_markers_is_still_sized_before_decoding():
    data = cv2.imencode(".jpg", np.zeros((8000, 8000), np.uint8))[1].tobytes()
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]
    junk = data[:app0_end] + b"\x00\x11junk\x22" + data[app0_end:]  # libjpeg decodes this, with a warning
    assert probe(junk) == ((8000, 8000), 1)
    with pytest.raises(ApiError) as err:
        decode_image(junk, 40_000_000)
    assert err.value.status == 413


def test_formats_whose_size_cannot_be_read_are_refused_not_decoded():
    hdr = cv2.imencode(".hdr", np.zeros((10, 12, 3), np.float32))[1].tobytes()
    for data in (hdr, b"GIF8", b"\x00" * 100):
        with pytest.raises(ApiError) as err:
            decode_image(data, 10**6)
        assert err.value.status == 415 and "accepted" in err.value.detail


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.float64])
def test_float_and_signed_tiffs_are_4xx_never_500(dtype):
    """A 3-channel float TIFF in [0, 1] is accepted (scaled to 8 bits); out of range or int16: 422."""
    rng = np.random.default_rng(0)
    ok = rng.random((30, 40, 3)).astype(dtype) if dtype != np.int16 else None
    bad = (rng.random((30, 40, 3)) * 300 - 100).astype(dtype)
    for a, good in ((ok, True), (bad, False)):
        if a is None:
            continue
        decoded = decode_image(cv2.imencode(".tiff", a)[1].tobytes(), 10**6)
        if good:
            img = new_state(decoded).image
            assert img.dtype == np.uint8 and abs(int(img[5, 7, 0]) - round(float(a[5, 7, 2]) * 255)) <= 1  # BGR -> RGB
        else:
            with pytest.raises(ValueError):
                new_state(decoded)


def test_exif_orientation_is_applied_as_the_cli_reader_does(tmp_path):
    from PIL import Image

    from dugray.data.io import read_rgb

    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[:10, :20] = (250, 20, 20)  # a red block in the stored top-left corner
    for orientation in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        Image.fromarray(rgb).save(path, exif=exif.tobytes(), quality=95)
        data = path.read_bytes()
        assert probe(data)[1] == orientation
        served = decode_image(data, 10**6)
        expected = read_rgb(path)
        assert served.shape == expected.shape == ((50, 30, 3) if orientation in (6, 8) else (30, 50, 3))
        assert np.abs(served.astype(int) - expected.astype(int)).max() <= 2


def test_an_uploaded_mask_becomes_a_two_level_trimap():
    mask = np.zeros((10, 10), np.uint8)
    mask[:5] = 1
    for m in (mask, mask * 255, mask.astype(np.uint16) * 65535):  # 0/1, 0/255 and 16-bit files
        trimap = mask_to_trimap(decode_plane(_png(m), 10**6, "mask"))
        assert trimap.dtype == np.uint8 and sorted(np.unique(trimap)) == [0, 255]
        assert trimap[0, 0] == 255 and trimap[9, 9] == 0


def test_encode_png_round_trips_rgba():
    rgba = np.random.default_rng(0).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_png(rgba), 10**6), rgba)


# --------------------------------------------------------------------------- batching (dugray.session.predict_rounds)


def test_predict_rounds_equals_predict_round_for_mixed_shapes():
    model = create_model("unet", widths=(8, 16), head_mid=4).eval()
    rng = np.random.default_rng(1)
    shapes = [(24, 32), (24, 32), (40, 16), (24, 32)]
    images = [rng.random((*s, 3), dtype=np.float32) for s in shapes]
    users = [np.zeros(s, np.float32) for s in shapes]
    users[1][:5, :5] = 1.0
    batched = predict_rounds(model, images, users)
    for x, u, got in zip(images, users, batched):
        want = predict_round(model, x, u)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- settings and requests


def test_settings_from_env_and_args():
    s = ServeSettings.from_args({"max_sessions": "5", "replicas": '{"Matting": 2}'}, environ={"DUGRAY_MODEL": "/m"})
    assert (s.model, s.max_sessions, s.replicas) == ("/m", 5, {"Matting": 2})
    assert ServeSettings.from_args({"model": "/x"}, environ={"DUGRAY_MODEL": "/m"}).model == "/x"
    assert ServeSettings(model="models:/dugray-matting/1").refiner_uri is None
    assert ServeSettings(model="default").refiner_uri == "default"
    assert ServeSettings(model="default", refiner="none").refiner_uri is None
    with pytest.raises(ValueError, match="unknown serve settings"):
        ServeSettings.from_args({"max_sesions": 3}, environ={})
    with pytest.raises(ValueError, match="unknown SessionConfig"):
        ServeSettings.from_args({"session": {"wrok_size": 3}}, environ={})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own pydantic fields
def test_config_file_is_a_valid_serve_config_with_valid_args():
    from ray.serve.schema import ServeDeploySchema

    cfg = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "serve" / "config.yaml").read_text()))
    app = cfg.applications[0]
    assert app.import_path == "serve.app:build"
    ServeSettings.from_args(app.args, environ={})
    names = {d.name for d in app.deployments}
    assert names == {"APIIngress", "Matting", "Fusion", "Proposal", "Solve", "Refinement", "SessionStore"}
    assert cfg.http_options.host == "127.0.0.1"  # loopback unless the operator opens it (with keys)


def test_label_request_validation():
    ok = LabelRequest.model_validate({"labels": [{"index": 0, "label": "fg"}, {"box": [0, 0, 5, 5], "label": "bg"}]})
    assert [item.pair() for item in ok.labels] == [(0, "fg"), ((0, 0, 5, 5), "bg")]
    bad = [
        {"labels": []},
        {"labels": [{"label": "fg"}]},
        {"labels": [{"index": 0, "box": [0, 0, 1, 1], "label": "fg"}]},
        {"labels": [{"index": 0, "label": "maybe"}]},
        {"labels": [{"index": -1, "label": "fg"}]},
        {"labels": [{"box": [0, 0, 1], "label": "fg"}]},
        {"labels": [{"index": 0, "label": "fg", "extra": 1}]},
        {"labels": [{"index": True, "label": "fg"}]},
        {"labels": [{"index": 1.5, "label": "fg"}]},
    ]
    for body in bad:
        with pytest.raises(ValueError):
            LabelRequest.model_validate(body)
