"""Batch cut-outs: inputs listed right, a corrupt file reported and skipped, reruns resume,
and the Ray Data path writes what the plain loop writes."""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dugray.batch import BatchOptions, list_inputs, run_batch


def make_folder(root):
    """3 good images (one JPEG, one in a subfolder, different sizes) + 1 corrupt PNG + noise to ignore."""
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png", ".hidden/h.png"]):
        img = rng.integers(0, 90, (40 + 8 * i, 48, 3), dtype=np.uint8)
        cv2.circle(img, (24, 20), 12, (40, 200, 230), -1)
        cv2.imwrite(str(root / name), img)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "notes.txt").write_text("not an image")
    return {"a": (40, 48), "b": (48, 48), "sub/c": (56, 48)}


def test_list_inputs(tmp_path):
    make_folder(tmp_path / "in")
    found = list_inputs(tmp_path / "in")
    assert [rel for _, rel in found] == ["a", "b", "broken", "sub/c"]  # no hidden files, no .txt
    uri = (tmp_path / "in").as_uri()
    assert list_inputs(uri) == [(f"{uri}/{rel}{ext}", rel) for rel, ext in
                                (("a", ".png"), ("b", ".jpg"), ("broken", ".png"), ("sub/c", ".png"))]
    (tmp_path / "list.txt").write_text(f"# two of them\n{tmp_path / 'in' / 'a.png'}\n\n{uri}/sub/c.png\n")
    assert [rel for _, rel in list_inputs(tmp_path / "list.txt")] == ["a", "c"]
    out_inside = tmp_path / "in" / "out"
    (out_inside / "cutout").mkdir(parents=True)
    cv2.imwrite(str(out_inside / "cutout" / "a.png"), np.zeros((9, 9), np.uint8))
    assert len(list_inputs(tmp_path / "in", exclude=out_inside)) == 4  # our own outputs are not inputs
    cv2.imwrite(str(tmp_path / "in" / "a.jpg"), np.zeros((9, 9), np.uint8))
    with pytest.raises(ValueError, match="would write the same outputs"):
        list_inputs(tmp_path / "in")
    with pytest.raises(FileNotFoundError):
        list_inputs(tmp_path / "nowhere")


def test_the_refiner_follows_the_model(tiny_model, tmp_path):
    from dugray.models import load_networks

    assert load_networks(tiny_model)[1] is not None  # a training folder brings its refiner
    assert load_networks(f"{tiny_model}/matting.pt")[1] is None  # a single checkpoint does not
    assert load_networks(tiny_model, "none")[1] is None
    assert load_networks(f"{tiny_model}/matting.pt", f"{tiny_model}/refiner.pt")[1] is not None
    assert BatchOptions(model=tiny_model, refine=False).networks()[1] is None
    (tmp_path / "matting.pt").write_bytes((Path(tiny_model) / "matting.pt").read_bytes())
    assert load_networks(str(tmp_path))[1] is None  # stage 1 only


def test_bad_options_fail_before_any_work():
    with pytest.raises(ValueError, match="outputs"):
        BatchOptions(outputs=("cutout", "trimap"))
    with pytest.raises(ValueError, match="unknown SessionConfig"):
        BatchOptions(session={"wrok_size": 256})


def check_outputs(out, sizes, report, ok, skipped):
    assert report.counts == {"ok": ok, "skipped": skipped, "failed": 1}
    (failure,) = report.failures
    assert failure["rel"] == "broken" and "cannot decode image" in failure["error"]
    for rel, (h, w) in sizes.items():
        assert cv2.imread(str(out / "cutout" / f"{rel}.png"), cv2.IMREAD_UNCHANGED).shape == (h, w, 4)
        assert cv2.imread(str(out / "alpha" / f"{rel}.png"), cv2.IMREAD_UNCHANGED).shape == (h, w)
        info = json.loads((out / "uncertainty" / f"{rel}.json").read_text())
        assert (info["height"], info["width"]) == (h, w) and 0 < info["epistemic_mean"] and info["proposals"]
    assert not (out / "cutout" / "broken.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == report.counts
    assert [f["rel"] for f in summary["failures"]] == ["broken"]
    assert sorted(r["rel"] for r in summary["most_uncertain"]) == sorted(sizes)
    with (out / "results.csv").open() as f:
        rows = {r["rel"]: r["status"] for r in csv.DictReader(f)}
    assert rows["broken"] == "failed" and len(rows) == 4


def test_loop_engine_writes_everything_but_the_corrupt_file_and_resumes(tiny_model, tmp_path):
    sizes = make_folder(tmp_path / "in")
    out = tmp_path / "out"
    options = BatchOptions(outputs=("cutout", "alpha"), model=tiny_model)
    check_outputs(out, sizes, run_batch(tmp_path / "in", out, options, engine="loop", progress=False), ok=3, skipped=0)
    stamp = (out / "alpha" / "a.png").stat().st_mtime_ns
    (out / "alpha" / "b.png").unlink()  # an interrupted image: one output missing
    report = run_batch(tmp_path / "in", out, options, engine="loop", progress=False)
    check_outputs(out, sizes, report, ok=1, skipped=2)
    assert {r["rel"]: r["status"] for r in report.rows}["b"] == "ok"
    assert (out / "alpha" / "a.png").stat().st_mtime_ns == stamp  # finished files are not rewritten


@pytest.fixture(scope="module")
def local_ray():
    import ray

    started = not ray.is_initialized()
    if started:  # address="local": a private instance, never someone else's cluster
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data copies its context through deprecated fields
def test_ray_batch_matches_the_loop_and_resumes(tiny_model, tmp_path, local_ray, capsys):
    from dugray.cli import main

    sizes = make_folder(tmp_path / "in")
    options = BatchOptions(outputs=("cutout", "alpha"), model=tiny_model)
    report = run_batch(tmp_path / "in", tmp_path / "ray", options, engine="ray", concurrency=2, progress=False)
    check_outputs(tmp_path / "ray", sizes, report, ok=3, skipped=0)
    run_batch(tmp_path / "in", tmp_path / "loop", options, engine="loop", progress=False)
    for rel in sizes:  # same session code, one thread vs several: equal up to float rounding
        a, b = (cv2.imread(str(tmp_path / d / "alpha" / f"{rel}.png"), cv2.IMREAD_UNCHANGED).astype(int)
                for d in ("ray", "loop"))
        assert np.abs(a - b).max() <= 1
    # the command: a rerun skips the 3 finished files, still reports the corrupt one, exits 1
    argv = ["batch", str(tmp_path / "in"), str(tmp_path / "ray"), "--outputs", "cutout", "alpha",
            "--model", tiny_model, "--concurrency", "2", "--no-progress"]
    assert main(argv) == 1
    cap = capsys.readouterr()
    assert "0 done, 3 skipped (already done), 1 failed" in cap.out and "failed: " in cap.err and "broken.png" in cap.err
    (tmp_path / "in" / "broken.png").unlink()
    assert main(argv) == 0
