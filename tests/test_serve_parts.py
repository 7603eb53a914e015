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
from serve.errors import SAVE_ERRORS, ApiError, save_error
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


@pytest.mark.parametrize(
    "reason, status",
    [("missing", 404), ("conflict", 409), ("too_large", 413), ("quota", 429), ("share", 429), ("storage", 503)],
)
def test_every_refusal_of_the_store_becomes_its_http_error(reason, status):
    """A lost update is a 409 to retry, not a 500 (the two-field entries once failed to unpack)."""
    assert set(SAVE_ERRORS) == {"missing", "conflict", "too_large", "quota", "share", "storage"}
    err = save_error(reason, "ab" * 16, ttl_s=600)
    assert err.status == status and err.error
    assert err.detail == ("ab" * 16 if len(SAVE_ERRORS[reason]) == 2 else SAVE_ERRORS[reason][2])
    assert (err.headers or {}).get("Retry-After") == ("60" if status == 429 else None)


def test_parse_form_returns_every_field_byte_exact():
    tricky = b"\r\n--not-the-boundary\r\n\r\n\x00\xff" * 3
    body, ctype = _multipart(
        files={"image": ("a.png", tricky, "image/png"), "mask": ("m.png", b"", "image/png")}, data={"x": "1"}
    )
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


@pytest.mark.parametrize(
    "header",
    [
        b"GIF89a" + struct.pack("<HH", 8000, 8000) + b"\x00" * 64,
        b"P5\n# a comment\n8000 8000\n255\n" + b"\x00" * 64,
        b"BM" + b"\x00" * 16 + struct.pack("<ii", 8000, -8000) + b"\x00" * 64,
    ],
)
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
    from serve.app import GRAPH

    assert sorted(d.name for d in app.deployments) == sorted(GRAPH)  # Serve refuses a name the app has not
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


# --------------------------------------------------------------------------- issue 23: uploads, probe and decoder


def _raw_multipart(disposition: bytes, boundary: bytes = b"xyz", parts: int = 1) -> tuple[bytes, str]:
    part = b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\nabc\r\n"
    return part * parts + b"--" + boundary + b"--\r\n", "multipart/form-data; boundary=" + boundary.decode()


def test_multipart_part_headers_are_bounded_and_cheap():
    """A 480 kB Content-Disposition of quoted ';' took seconds in the old parser; now it is refused at once."""
    import time

    body, ctype = _raw_multipart(b'form-data; name="image"; x="' + b'";"' * 160_000 + b'"')
    t = time.perf_counter()
    with pytest.raises(ApiError) as err:
        parse_form(body, ctype)
    assert err.value.status == 400 and time.perf_counter() - t < 0.5
    with pytest.raises(ApiError) as err:  # more parts than any upload needs
        parse_form(*_raw_multipart(b'form-data; name="image"', parts=9))
    assert err.value.status == 400 and "parts" in err.value.detail
    assert parse_form(*_raw_multipart(b'form-data; name="image"; filename="a;b.png"')) == {"image": b"abc"}


def test_uploads_are_parsed_off_the_event_loop(monkeypatch):
    """While a big upload is parsed, the event loop (and /v1/health) keeps running."""
    import asyncio
    import time

    import serve.uploads as uploads

    def slow_parse(body, ctype):
        time.sleep(0.6)  # stands for CPU-bound parsing
        return {"image": body}

    monkeypatch.setattr(uploads, "parse_form", slow_parse)

    class Req:
        headers = {"content-type": "multipart/form-data; boundary=x"}

        async def stream(self):
            yield b"data"

    async def run():
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.05)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        form = await uploads.read_form(Req(), 100)
        task.cancel()
        return form, ticks

    form, ticks = asyncio.run(run())
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert form == {"image": b"data"} and len(ticks) >= 5 and max(gaps) < 0.3, gaps  # the loop ran all along


@pytest.mark.parametrize(
    "header",
    [
        b"P5\n#c\r40 30\n#\n8 8\n255\n",
        b"P5 #c\n40 30 255\n",
        b"P5\n\x0b40\x0c30 255\n",
        b"P5\n# a\n#b\r40 30\n255\n",
        b"P5\n040 030 255\n",
    ],
)
def test_the_pnm_probe_reads_what_opencv_decodes(header):
    data = header + bytes(1200)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and probe(data)[0] == (decoded.shape[1], decoded.shape[0]) == (40, 30)


def test_a_pnm_comment_ending_in_cr_cannot_hide_a_bomb(monkeypatch):
    """OpenCV ends a comment at CR: the header below is 6000x6000 for it, and so for the probe."""
    bomb = b"P5\n# x\r6000 6000\n# \n64 64\n255\n" + bytes(64 * 64)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    with pytest.raises(ApiError) as err:
        decode_image(bomb, 1_000_000)
    assert err.value.status == 413 and "6000x6000" in err.value.detail
    with pytest.raises(ApiError) as err:  # a header we would have to read far for: refused, not guessed
        decode_image(b"P5" + b" " * 100_000 + b"40 30 255\n", 1_000_000)
    assert err.value.status == 415


def _tiff_with_tag_twice(tag: int, value: int) -> bytes:
    """A small TIFF whose first IFD gives ``tag`` a second time (last, as a LONG)."""
    data = bytearray(cv2.imencode(".tiff", np.zeros((30, 40), np.uint8))[1].tobytes())
    assert data[:2] == b"II"
    ifd = struct.unpack("<I", data[4:8])[0]
    n = struct.unpack("<H", data[ifd : ifd + 2])[0]
    entries = data[ifd + 2 : ifd + 2 + 12 * n] + struct.pack("<HHII", tag, 4, 1, value)
    next_ifd = data[ifd + 2 + 12 * n : ifd + 6 + 12 * n]
    new_ifd = len(data)
    data += struct.pack("<H", n + 1) + entries + next_ifd
    data[4:8] = struct.pack("<I", new_ifd)
    return bytes(data)


@pytest.mark.parametrize("tag", [256, 257])
def test_a_tiff_that_gives_its_size_twice_is_refused(tag, monkeypatch):
    data = _tiff_with_tag_twice(tag, 8000)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded an ambiguous TIFF"))
    with pytest.raises(ApiError) as err:
        decode_image(data, 40_000_000)
    assert err.value.status == 415 and "twice" in err.value.detail


def _progressive_jpeg(extra_scans: int) -> bytes:
    """A progressive JPEG, with ``extra_scans`` more copies of its last scan before EOI."""
    data = cv2.imencode(
        ".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )[1].tobytes()
    last = data.rindex(b"\xff\xda")
    return data[:-2] + data[last:-2] * extra_scans + data[-2:]


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding(monkeypatch):
    ok = _progressive_jpeg(0)
    assert 2 < ok.count(b"\xff\xda") < 20 and decode_image(ok, 10**6).shape == (64, 64, 3)  # honest progressive
    many = _progressive_jpeg(2000)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded 2000 scans"))
    with pytest.raises(ApiError) as err:
        decode_image(many, 10**6)
    assert err.value.status == 413 and "scans" in err.value.error


def test_tiff_orientation_is_applied_once(tmp_path):
    """OpenCV orients a TIFF by itself (IMREAD_UNCHANGED too): the server must not turn it again."""
    import io

    from PIL import Image, ImageOps

    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[:10, :20] = (250, 20, 20)
    for orientation in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="TIFF", exif=exif.tobytes())
        data = buf.getvalue()
        assert probe(data)[1] == orientation
        shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
        np.testing.assert_array_equal(decode_image(data, 10**6), shown)


def test_opencv_ceiling_is_in_the_ingress_environment_and_checked():
    """OPENCV_IO_MAX_IMAGE_PIXELS is read when cv2 loads: the app puts it in the ingress's environment
    (and config.yaml in every replica's), and a process where it is in effect refuses larger images
    even when the probe is fooled."""
    import subprocess
    import sys

    from serve.app import ingress_options
    from serve.imaging import CEILING_ENV, ceiling_in_effect

    options = ingress_options(ServeSettings(max_pixels=123_456))
    assert options["runtime_env"]["env_vars"][CEILING_ENV] == "123456" and options["num_cpus"] > 0
    cfg = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())["applications"][0]
    assert cfg["runtime_env"]["env_vars"][CEILING_ENV] == str(cfg["args"]["max_pixels"])
    assert not ceiling_in_effect(123_456)  # this process has OpenCV's default
    code = (
        "import numpy as np, cv2, serve.imaging as im; from serve.errors import ApiError\n"
        "assert im.ceiling_in_effect(1000) and not im.ceiling_in_effect(2000)\n"
        "im.probe = lambda data, name='image': ((10, 10), 1)  # a fooled probe\n"
        "try:\n    im.decode_image(cv2.imencode('.png', np.zeros((40, 40), np.uint8))[1].tobytes(), 10**6)\n"
        "except ApiError as e:\n    print(e.status)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**__import__("os").environ, CEILING_ENV: "1000"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "413", proc.stderr[-2000:]


def test_the_upload_routes_are_the_multipart_routes_of_the_app():
    from serve.access import UPLOAD_ROUTES
    from serve.app import api

    multipart = {
        (method.upper(), path)
        for path, ops in api.openapi()["paths"].items()
        for method, op in ops.items()
        if "multipart/form-data" in op.get("requestBody", {}).get("content", {})
    }
    assert multipart == set(UPLOAD_ROUTES)


# --------------------------------------------------------------------------- issue 23: readiness


class _Dep:
    def __init__(self, running):
        self.replica_states = {"RUNNING": running, "STARTING": 1} if running is not None else {"STARTING": 1}


class _Status:
    def __init__(self, app, deps):
        self.applications = {app: type("A", (), {"deployments": deps})()} if deps is not None else {}


def test_not_ready_names_every_deployment_without_a_running_replica():
    from serve.app import DEPLOYMENTS, GRAPH
    from serve.readiness import not_ready

    assert GRAPH == tuple(d.name for d in DEPLOYMENTS)
    deps = {name: _Dep(1) for name in GRAPH}
    assert not_ready(_Status("dugray", deps), "dugray", GRAPH) == []
    deps.update(Matting=_Dep(None), Solver=_Dep(0))
    del deps["Refinement"]
    assert not_ready(_Status("dugray", deps), "dugray", GRAPH) == ["Matting", "Solver", "Refinement"]
    assert not_ready(_Status("dugray", None), "dugray", GRAPH) == list(GRAPH)


def test_readiness_asks_the_controller_at_most_once_per_second_and_never_makes_health_wait():
    import asyncio

    from serve.readiness import Readiness

    calls, now = [], [0.0]

    def fetch():
        calls.append(now[0])
        if len(calls) == 3:
            raise RuntimeError("controller away")
        return _Status("app", {"A": _Dep(1), "B": _Dep(len(calls) - 1)})

    r = Readiness("app", ["A", "B"], fetch=fetch, ttl_s=1.0, max_age_s=5.0, clock=lambda: now[0])

    async def run():
        first = await asyncio.gather(*[r.check() for _ in range(5)])  # nothing known yet: one fetch, shared
        now[0] = 0.5
        cached = await r.check()
        now[0] = 2.0
        stale = await r.check()  # answered at once from the last answer; a refresh starts
        await asyncio.sleep(0.2)
        now[0] = 2.5
        ready = await r.check()
        now[0] = 20.0
        lost = await r.check()  # too old: waited for, and the controller does not answer
        return first, cached, stale, ready, lost

    first, cached, stale, ready, lost = asyncio.run(run())
    assert first == [["B"]] * 5 and cached == ["B"] and stale == ["B"] and len(calls) == 3
    assert ready == [] and r.ever_ready and lost == ["A", "B"]


KERNEL_PROBE = """
import gc, json
from numba.core.caching import NullCache
from numba.core.dispatcher import Dispatcher
from dugray.session.warmup import warm_up_kernels
warm_up_kernels()
report = {}
for d in (o for o in gc.get_objects() if isinstance(o, Dispatcher)):
    if not isinstance(d._cache, NullCache):  # cache=True
        name = d.py_func.__module__.rsplit(".", 1)[-1] + "." + d.py_func.__qualname__
        report[name] = {"used": len(d.signatures), "hits": sum(d.stats.cache_hits.values()),
                        "misses": sum(d.stats.cache_misses.values()),
                        "cached": len(d._cache._cache_file._load_index())}  # entries for the module as it is now
print(json.dumps(report))
"""
"""A fresh process that runs the cache command's session steps and reports, for every cache=True kernel,
whether it ran, how often numba loaded it from the cache (hits) or had to compile it (misses), and how
many compiled versions the cache holds for its current source (a kernel called only from another
kernel does not run: the caller's cached code holds it)."""


@pytest.mark.slow
def test_setup_compiles_every_numba_kernel_into_the_cache():
    """``python -m dugray.session`` (setup.sh) leaves every @njit(cache=True) kernel of dugray,
    and pymatting's, in numba's cache, so no replica compiles one when it starts: after it, a fresh
    process running the same steps loads every kernel from the cache and compiles none.

    Numba's own cache (where a replica looks), not a private one: after setup.sh the command only
    loads (seconds, where compiling them all again took a minute of CI); on a checkout whose
    modules changed since, it compiles what changed, and the probe still must compile nothing."""
    import ast
    import json
    import subprocess
    import sys

    kernels, inner = set(), set()  # inner: called by another kernel of its module, whose compiled code holds it
    for path in (ROOT / "dugray").rglob("*.py"):
        njitted = [
            f
            for f in ast.walk(ast.parse(path.read_text()))
            if isinstance(f, ast.FunctionDef)
            and any(
                isinstance(d, ast.Call)
                and getattr(d.func, "id", "") == "njit"
                and any(k.arg == "cache" and getattr(k.value, "value", False) is True for k in d.keywords)
                for d in f.decorator_list
            )
        ]
        names = {f.name for f in njitted}
        kernels |= {f"{path.stem}.{n}" for n in names}
        inner |= {
            f"{path.stem}.{c.func.id}"
            for f in njitted
            for c in ast.walk(f)
            if isinstance(c, ast.Call) and getattr(c.func, "id", None) in names - {f.name}
        }
    assert {"pcg._pcg", "laplacian._band_cf_kernel", "geodesic._scan"} <= kernels and "pcg._dot" in inner
    proc = subprocess.run(
        [sys.executable, "-m", "dugray.session"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    probe = subprocess.run([sys.executable, "-c", KERNEL_PROBE], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert probe.returncode == 0, probe.stderr[-2000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert kernels <= set(report), kernels - set(report)
    not_run = {name for name in kernels - inner if not report[name]["used"]}
    assert not not_run, not_run  # the steps reach every kernel of dugray that Python calls
    compiled = {name: r for name, r in report.items() if r["used"] and (r["misses"] or not r["hits"])}
    assert not compiled, compiled  # and every kernel that ran, dugray's and pymatting's, came from the cache
    missing = {name: report[name] for name in kernels if not report[name]["cached"]}
    assert not missing, missing  # which holds those only other kernels call, too
    # pymatting (the cut-out's foreground colours) compiles its kernels when it is imported
    fb = report["estimate_foreground_ml._estimate_fb_ml"]
    assert fb["used"] and fb["hits"] and sum(r["cached"] > 0 for r in report.values()) >= len(kernels) + 20


def test_a_second_session_store_replica_is_refused(monkeypatch):
    """However it is asked for (settings, or a config file's num_replicas / autoscaling), a store
    that is not alone refuses to start: each replica would expire what the other serves."""
    import serve.app as app

    with pytest.raises(ValueError, match="exactly one replica"):
        ServeSettings(replicas={"SessionStore": 2})
    for world_size in (2, None):
        monkeypatch.setattr(
            app.serve,
            "get_replica_context",
            lambda world_size=world_size: type("Ctx", (), {"world_size": world_size})(),
        )
        with pytest.raises(RuntimeError, match="exactly 1 replica"):
            app.SessionStore.func_or_class(ServeSettings(session_storage="none"))
    monkeypatch.setattr(app.serve, "get_replica_context", lambda: type("Ctx", (), {"world_size": 1})())
    store = app.SessionStore.func_or_class(ServeSettings(session_storage="none", max_store_bytes=4000))
    assert store.stats()["max_bytes_per_owner"] == 1000
