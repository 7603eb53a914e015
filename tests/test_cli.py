"""The ``dugray`` command in process (``main(argv)``) and once as a real process: help,
exit codes, and outputs with known answers (a mask or a whole-image label pins the matte)."""

import io
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import cv2
import numpy as np
import pytest

from dugray.cli import main, parse_labels

H, W = 48, 64


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """A bright disc on a noisy background, as a PNG file."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 90, (H, W, 3), dtype=np.uint8)
    cv2.circle(img, (W // 2, H // 2), H // 3, (230, 200, 40), -1)
    path = tmp_path_factory.mktemp("img") / "disc.png"
    cv2.imwrite(str(path), img)
    return path


def read(path) -> np.ndarray:
    out = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert out is not None, f"{path} is not a readable image"
    return out


@pytest.mark.parametrize("command", ["cutout", "interactive", "batch", "serve", "eval", "train"])
def test_help_of_every_command(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    if command in ("cutout", "interactive", "batch", "serve"):
        assert f"usage: dugray {command}" in text
        assert "exit codes:" in text and f"\n  dugray {command} " in text  # codes and examples
    else:
        assert "usage: " in text and "--data" in text and "--out" in text  # the job's own parser


def test_top_level_help_lists_commands_and_exit_codes(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for word in ("cutout", "interactive", "batch", "serve", "eval", "train", "exit codes:", "130"):
        assert word in text
    assert main([]) == 2  # no command: usage on stderr


def test_console_script_is_declared():
    (script,) = entry_points(group="console_scripts", name="dugray")
    assert script.value == "dugray.cli:main"


def test_cutout_rgba_and_alpha_only(tiny_model, image, tmp_path, capsys):
    assert main(["cutout", str(image), "-o", str(tmp_path / "c.png"), "--model", tiny_model]) == 0
    assert "wrote" in capsys.readouterr().out
    rgba = read(tmp_path / "c.png")
    assert rgba.shape == (H, W, 4) and rgba.dtype == np.uint8
    assert main(["cutout", str(image), "-o", str(tmp_path / "a.png"), "--alpha-only", "--model", tiny_model]) == 0
    alpha = read(tmp_path / "a.png")
    assert alpha.shape == (H, W)
    assert np.array_equal(alpha, rgba[..., 3])  # the cut-out carries the same (deterministic) matte


def test_cutout_delivered_as_background_removal_clients_expect(tiny_model, image, tmp_path):
    """--bg-color, --crop, --max-side and the format from -o's suffix: the same cut-out, delivered."""
    from dugray.compose import OutputOptions, compose, encode

    assert main(["cutout", str(image), "-o", str(tmp_path / "c.png"), "--model", tiny_model, "--no-refine"]) == 0
    rgba = cv2.cvtColor(read(tmp_path / "c.png"), cv2.COLOR_BGRA2RGBA)
    out = tmp_path / "c.webp"
    argv = [
        "cutout",
        str(image),
        "-o",
        str(out),
        "--model",
        tiny_model,
        "--no-refine",
        "--bg-color",
        "102030",
        "--max-side",
        "20",
    ]
    assert main(argv) == 0
    webp = cv2.cvtColor(read(out), cv2.COLOR_BGR2RGB)
    options = OutputOptions(bg_color="102030", max_side=20, format="webp")
    expected = compose(rgba, options)
    assert webp.shape == expected.shape == (round(H * 20 / max(H, W)), round(W * 20 / max(H, W)), 3)
    lossy = cv2.imdecode(np.frombuffer(encode(expected, options), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(read(out), lossy)  # exactly the composed picture, through the same (lossy) WebP
    assert (
        main(
            [
                "cutout",
                str(image),
                "--model",
                tiny_model,
                "--no-refine",
                "--format",
                "jpg",
                "--crop",
                "-o",
                str(tmp_path / "c.jpeg"),
            ]
        )
        == 0
    )
    assert read(tmp_path / "c.jpeg").ndim == 3


def test_cutout_with_the_shipped_model_is_the_library_session(image, tmp_path):
    """The command adds nothing to the session code: same matte as MattingSession's one-shot round
    with load_default (solved once, not refined: the one-shot defaults)."""
    from dugray.models import load_default
    from dugray.session import MattingSession

    assert main(["cutout", str(image), "-o", str(tmp_path / "a.png"), "--alpha-only"]) == 0
    rgb = cv2.cvtColor(read(image), cv2.COLOR_BGR2RGB)
    expected = MattingSession(rgb, *load_default(refiner=False)).start_one_shot().alpha_u8
    assert np.array_equal(read(tmp_path / "a.png"), expected)


def test_trimap_and_mask_are_obeyed(tiny_model, image, tmp_path):
    trimap = np.full((H, W), 128, np.uint8)
    trimap[:, : W // 4] = 0
    trimap[:, -W // 4 :] = 255
    cv2.imwrite(str(tmp_path / "t.png"), trimap)
    out = tmp_path / "a.png"
    assert (
        main(
            [
                "cutout",
                str(image),
                "-o",
                str(out),
                "--alpha-only",
                "--trimap",
                str(tmp_path / "t.png"),
                "--model",
                tiny_model,
            ]
        )
        == 0
    )
    alpha = read(out)
    assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 255).all()
    mask = np.zeros((H, W), np.uint8)
    mask[10:30, 20:50] = 1  # a 0/1 mask
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    assert (
        main(
            [
                "cutout",
                str(image),
                "-o",
                str(out),
                "--alpha-only",
                "--mask",
                str(tmp_path / "m.png"),
                "--model",
                tiny_model,
            ]
        )
        == 0
    )
    assert np.array_equal(read(out), mask * 255)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cutout", "{bad}"], "cannot decode image"),
        (["cutout", "{missing}"], "no such file"),
        (["cutout", "{image}", "-o", "out.gif"], "must be a .png, .jpg or .webp"),
        (["cutout", "{image}", "-o", "out.png", "--format", "jpg"], "does not end in .jpg"),
        (["cutout", "{image}", "--bg-color", "reddish"], "hex colour"),
        (["cutout", "{image}", "--crop", "--crop-margin", "5em"], "crop_margin"),
        (["cutout", "{image}", "--model", "{bad}"], "checkpoint"),
        (["cutout", "{image}", "--trimap", "{image}", "--mask", "{image}"], "not allowed with"),
        (["cutout", "{image}", "--work-size", "many"], "invalid int"),
        (["cutout", "{image}", "--server", "http://127.0.0.1:9", "--model", "x.pt"], "with --server"),
        (["interactive", "{image}", "--web", "-o", "out.png"], "with --web, download from the page"),
        (["interactive", "{image}", "--web", "--server", "http://127.0.0.1:9", "--work-size", "256"], "with --server"),
        (["interactive", "s3://bucket/photo.png", "--web", "--server", "http://127.0.0.1:9"], "no such local file"),
        (["interactive", "{image}", "--server", "http://127.0.0.1:9"], "--server goes with --web"),
        (["batch", "{missing}", "{tmp}/out"], "no such file or folder"),
        (["frobnicate"], "invalid choice"),
        (["serve", "--cpus", "1", "--port", "0"], "reserves 1.5 CPUs"),  # else Serve would wait forever
        (
            ["serve", "--port", "0", "--set", 'replicas={{"Solve": 2}}'],
            "replicas: unknown deployments ['Solve']; known: ",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, image, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = {"bad": bad, "missing": tmp_path / "nope.png", "image": image, "tmp": tmp_path}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dugray: error: ") and err.count("\n") == 1 and message in err, err


def test_unreachable_server_exits_3(image, tmp_path, capsys):
    assert main(["cutout", str(image), "-o", str(tmp_path / "c.png"), "--server", "http://127.0.0.1:9"]) == 3
    assert "no answer from http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["interactive", str(image), "--web", "--server", "http://127.0.0.1:9", "--no-browser"]) == 3
    assert "no answer from http://127.0.0.1:9" in capsys.readouterr().err


def test_a_real_process_exits_2_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    proc = subprocess.run(
        [sys.executable, "-m", "dugray.cli", "cutout", str(bad)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dugray: error: cannot decode image {bad} (not an image, or truncated)"
    ]


def test_parse_labels():
    assert parse_labels("0f 1bg 12:t 3=u 10,20,40,60:bg 120,340=bg 5,6f") == [
        (0, "fg"),
        (1, "bg"),
        (12, "transition"),
        (3, "unknown"),
        ((10, 20, 40, 60), "bg"),
        ((120, 340), "bg"),
        ((5, 6), "fg"),
    ]
    for bad in ("0x", "f0", "1,2,3:fg", "-1f", "1,2,3,4,5:bg", "-3,4=fg"):
        with pytest.raises(ValueError, match="cannot read"):
            parse_labels(bad)


def test_interactive_from_a_pipe(tiny_model, image, tmp_path, monkeypatch, capsys):
    """Round 1, a bad line (reported, ignored), labels, then a whole-image fg box: alpha all 255."""
    answers = f"0f 1b\nnonsense\n99f\n{H + 5},3=bg\n0,0,{H},{W}:fg\n{H // 2},{W // 2}=fg\ndone\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
    out, preview = tmp_path / "c.png", tmp_path / "p.png"
    assert main(["interactive", str(image), "-o", str(out), "--model", tiny_model, "--preview", str(preview)]) == 0
    cap = capsys.readouterr()
    assert "round 2" in cap.out and "round 4" in cap.out and "round 5" not in cap.out
    assert "after 4 round(s), 4 label(s), refined" in cap.out
    assert "cannot read 'nonsense'" in cap.err and "proposal index 99 out of range" in cap.err
    assert f"point ({H + 5}, 3) is outside" in cap.err  # a click below the image
    rgba = read(out)
    assert rgba.shape == (H, W, 4) and (rgba[..., 3] == 255).all()
    assert read(preview).shape[0] == 512 + 18  # the proposals | matte strip, with its title bar


def test_interactive_ends_at_end_of_input(tiny_model, image, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    out = tmp_path / "a.png"
    assert main(["interactive", str(image), "-o", str(out), "--alpha-only", "--no-refine", "--model", tiny_model]) == 0
    assert "after 1 round(s), 0 label(s)" in capsys.readouterr().out
    assert read(out).shape == (H, W)


def test_interactive_undo_key_goes_back_to_round_one(tiny_model, image, tmp_path, monkeypatch, capsys):
    """'z' undoes a round; at round 1 it says why not; the file written is round 1's, byte for byte."""
    run = ["--alpha-only", "--no-refine", "--model", tiny_model]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["interactive", str(image), "-o", str(tmp_path / "first.png"), *run]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"0f 1b\n0,0,{H},{W}:fg\nz\nundo\nz\ndone\n"))
    capsys.readouterr()
    assert main(["interactive", str(image), "-o", str(tmp_path / "undone.png"), *run]) == 0
    cap = capsys.readouterr()
    assert "round 3" in cap.out and "back to round 2" in cap.out and "back to round 1" in cap.out
    assert "not undone: the session is at its first round" in cap.err
    assert "after 1 round(s), 0 label(s)" in cap.out
    assert (tmp_path / "undone.png").read_bytes() == (tmp_path / "first.png").read_bytes()


def test_jobs_run_with_their_own_exit_codes(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert main(["train", "--out", str(tmp_path / "o")]) == 2
    assert "--data is required" in capsys.readouterr().err
