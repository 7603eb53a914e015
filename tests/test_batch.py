"""Batch cut-outs: inputs listed right, a corrupt file reported and skipped, reruns resume,
the Ray Data path writes the plain loop's bytes, the auto engine's rule, and a batch over two
nodes survives losing one."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dugray.batch import BatchOptions, list_inputs, run_batch

ROOT = Path(__file__).resolve().parents[1]


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
    assert list_inputs(uri) == [
        (f"{uri}/{rel}{ext}", rel) for rel, ext in (("a", ".png"), ("b", ".jpg"), ("broken", ".png"), ("sub/c", ".png"))
    ]
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


def test_a_rerun_after_a_killed_run_redoes_only_the_unfinished_and_reports_each_input_once(tiny_model, tmp_path):
    sizes = make_folder(tmp_path / "in")
    (tmp_path / "in" / "broken.png").unlink()
    out = tmp_path / "out"
    options = BatchOptions(outputs=("alpha",), model=tiny_model, refine=False)  # quick: resuming is what is tested
    run_batch(tmp_path / "in", out, options, engine="loop", progress=False)
    # what a run killed mid-way leaves: no reports yet (they are written at the end), an image
    # with its PNGs but not its summary (killed before its last write), a write cut short
    for name in ("summary.json", "results.csv", "uncertainty/b.json"):
        (out / name).unlink()
    (out / "alpha" / ".a.png.0123.part").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    report = run_batch(tmp_path / "in", out, options, engine="loop", progress=False)
    assert {r["rel"]: r["status"] for r in report.rows} == {"a": "skipped", "b": "ok", "sub/c": "skipped"}
    with (out / "results.csv").open() as f:
        assert sorted(r["rel"] for r in csv.DictReader(f)) == sorted(sizes)
    assert json.loads((out / "summary.json").read_text())["counts"] == {"ok": 1, "skipped": 2, "failed": 0}
    for rel, shape in sizes.items():  # one whole alpha each; the cut-short write is not an output
        assert cv2.imread(str(out / "alpha" / f"{rel}.png"), cv2.IMREAD_UNCHANGED).shape == shape
    assert len(list((out / "alpha").rglob("*.png"))) == len(sizes)


def test_auto_engine_rule():
    """--engine auto: a cluster, a running Ray or --concurrency mean ray; else the loop on a machine
    of few CPUs or for a small job (the pool's start is not repaid), ray for a big job on many CPUs."""
    from dugray.batch_engine import RAY_MIN_CPUS, RAY_MIN_IMAGES_PER_CPU, choose_engine

    assert choose_engine(8, 2)[0] == "loop"  # issue 31's 8 photos on 2 CPUs: 10.7 s in a loop, 18.5 s on Ray
    assert choose_engine(10_000, 2)[0] == "loop" and "2 CPUs" in choose_engine(10_000, 2)[1]
    assert choose_engine(1, 2, address="auto") == ("ray", "a Ray cluster was given (auto)")
    assert choose_engine(1, 2, ray_running=True)[0] == "ray"
    assert choose_engine(1, 2, concurrency=2)[0] == "ray"
    big = RAY_MIN_IMAGES_PER_CPU * RAY_MIN_CPUS
    assert choose_engine(big - 1, RAY_MIN_CPUS)[0] == "loop" and "too few" in choose_engine(big - 1, RAY_MIN_CPUS)[1]
    assert choose_engine(big, RAY_MIN_CPUS)[0] == "ray"
    assert choose_engine(big, RAY_MIN_CPUS - 1)[0] == "loop"
    assert choose_engine(big, 4 * RAY_MIN_CPUS)[0] == "loop"  # the same job on more CPUs: less per CPU


def test_auto_engine_says_what_it_picked(tiny_model, tmp_path, monkeypatch, capsys):
    """The command prints one line with the engine and why, and the report keeps it."""
    from dugray.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    make_folder(tmp_path / "in")
    (tmp_path / "in" / "broken.png").unlink()
    argv = [
        "batch",
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        "--outputs",
        "alpha",
        "--model",
        tiny_model,
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("engine: ")]
    assert len(lines) == 1 and lines[0].startswith("engine: loop (") and "CPU" in lines[0], out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["engine"] == "loop" and summary["engine_reason"] in lines[0]
    assert main(argv) == 0 and "engine:" not in capsys.readouterr().out  # all done: nothing to pick


def test_the_ray_report_has_one_row_per_input_whatever_comes_back():
    from dugray.batch import _one_row_per_input, _row

    todo = [("in/a.png", "a"), ("in/b.png", "b")]
    back = [_row("/abs/in/a.png", "a", "ok"), _row("/abs/in/a.png", "a", "ok")]  # a twice, b never
    rows = _one_row_per_input(todo, back)
    assert [(r["source"], r["rel"], r["status"]) for r in rows] == [
        ("in/a.png", "a", "ok"),
        ("in/b.png", "b", "failed"),
    ]
    assert "run again" in rows[1]["error"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data copies its context through deprecated fields
def test_ray_batch_matches_the_loop_and_resumes(tiny_model, tmp_path, ray_local, capsys):
    from dugray.cli import main

    sizes = make_folder(tmp_path / "in")
    options = BatchOptions(outputs=("cutout", "alpha"), model=tiny_model)
    report = run_batch(tmp_path / "in", tmp_path / "ray", options, engine="ray", concurrency=2, progress=False)
    check_outputs(tmp_path / "ray", sizes, report, ok=3, skipped=0)
    run_batch(tmp_path / "in", tmp_path / "loop", options, engine="loop", progress=False)
    for rel in sizes:  # the one-shot matte, one thread per actor vs this process's threads: the same bytes
        for kind in ("alpha", "cutout"):
            ray_bytes, loop_bytes = ((tmp_path / d / kind / f"{rel}.png").read_bytes() for d in ("ray", "loop"))
            assert ray_bytes == loop_bytes, (rel, kind)
    # the command: a rerun skips the 3 finished files, still reports the corrupt one, exits 1
    argv = [
        "batch",
        str(tmp_path / "in"),
        str(tmp_path / "ray"),
        "--outputs",
        "cutout",
        "alpha",
        "--model",
        tiny_model,
        "--concurrency",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 1
    cap = capsys.readouterr()
    assert "0 done, 3 skipped (already done), 1 failed" in cap.out and "failed: " in cap.err and "broken.png" in cap.err
    (tmp_path / "in" / "broken.png").unlink()
    assert main(argv) == 0


@pytest.fixture
def two_nodes():
    """Ray's own multi-node test cluster on this machine: a head without CPUs (the driver only)
    and two 1-CPU worker nodes, so the batch's two actors run one on each. A driver joins one
    cluster at a time: any Ray of this process is shut down before, and Ray is left shut down."""
    import ray
    from app_on_loopback import free_port
    from ray.cluster_utils import Cluster

    ray.shutdown()
    # an agent port of its own: a Ray started earlier in this process may still hold the default
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "dashboard_agent_listen_port": free_port(),
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
        },
    )
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes(timeout=60)
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def wait_for(condition, timeout: float, what: str):
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


def nodes_of_finished(out) -> dict:
    """rel -> the Ray node that wrote it, for every image finished so far (its summary is written last)."""
    return {f.stem: json.loads(f.read_text())["node"] for f in (out / "uncertainty").glob("*.json")}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data copies its context through deprecated fields
def test_batch_over_two_nodes_survives_losing_one_and_a_rerun_redoes_nothing(tiny_model, tmp_path, two_nodes):
    """`dugray batch --address` as a user runs it, in a process of its own (a driver that has seen one
    Ray session: in this test process earlier modules' Ray sessions reuse job id 01000000, and Ray
    Data met a stale object of theirs), on a cluster that loses a node mid-batch."""
    cluster, (victim, survivor) = two_nodes
    rng = np.random.default_rng(1)
    sizes = {f"im{i:02d}": (128, 128 - 16 * (i % 2)) for i in range(10)}  # 128 px: ~0.5 s each, time to kill
    (tmp_path / "in").mkdir()
    for rel, (h, w) in sizes.items():
        img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        cv2.circle(img, (w // 2, h // 2), h // 4, (40, 200, 230), -1)
        cv2.imwrite(str(tmp_path / "in" / f"{rel}.png"), img)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "dugray.cli",
        "batch",
        str(tmp_path / "in"),
        str(out),
        "--outputs",
        "cutout",
        "alpha",
        "--model",
        tiny_model,
        "--address",
        cluster.address,
        "--concurrency",
        "2",
        "--no-progress",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        both = {victim.node_id, survivor.node_id}
        wait_for(
            lambda: set(nodes_of_finished(out).values()) == both or run.poll() is not None, 180, "image from each node"
        )
        before = nodes_of_finished(out)
        assert set(before.values()) == both and len(before) < len(sizes)  # work on both nodes, the batch mid-way
        cluster.remove_node(victim, allow_graceful=False)  # SIGKILL: its actor dies mid-image
        try:
            output, _ = run.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            raise AssertionError("the batch hung after losing a node") from None
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output[-3000:]  # Ray retried the lost node's images on the other one

    after = nodes_of_finished(out)
    assert sorted(after) == sorted(sizes) and survivor.node_id in {after[rel] for rel in set(after) - set(before)}
    for rel, (h, w) in sizes.items():  # one whole PNG of each kind per input, nothing else
        assert cv2.imread(str(out / "cutout" / f"{rel}.png"), cv2.IMREAD_UNCHANGED).shape == (h, w, 4)
        assert cv2.imread(str(out / "alpha" / f"{rel}.png"), cv2.IMREAD_UNCHANGED).shape == (h, w)
    for kind in ("cutout", "alpha", "uncertainty"):
        assert sorted(f.stem for f in (out / kind).iterdir() if not f.name.startswith(".")) == sorted(sizes)
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["rel"] for r in rows) == sorted(sizes) and {r["status"] for r in rows} == {"ok"}
    assert {r["rel"]: r["node"] for r in rows} == after

    # the rerun, on the node left: everything is there, nothing is redone or rewritten
    stamps = {f: f.stat().st_mtime_ns for f in out.rglob("*.png")}
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"0 done, {len(sizes)} skipped (already done), 0 failed" in rerun.stdout
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*.png")} == stamps
    with (out / "results.csv").open() as f:
        assert sorted(r["rel"] for r in csv.DictReader(f)) == sorted(sizes)
