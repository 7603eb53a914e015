"""Training on real Ray Train and real MLflow with tiny data: learning, resume, recovery, tracking, job submit.

Each test runs ``jobs/train.py`` as a subprocess (its own local Ray), as users do.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from app_on_loopback import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--crop", "64", "--batch-size", "4", "--samples-per-epoch", "16", "--num-workers", "2"]


def own_ray_env():
    """The environment minus RAY_ADDRESS (train.py would join that cluster instead of
    starting its own) and MLFLOW_TRACKING_URI (mlflow.set_tracking_uri, called by earlier
    tests in this process, exports it; train.py must use its default store in --out)."""
    return {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}


def train(data, out, *extra, timeout=600, check=True):
    cmd = [sys.executable, str(ROOT / "jobs" / "train.py"), "--data", str(data), "--out", str(out), *TINY, *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=own_ray_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def checkpoints(out):
    return [p for p in (out / "ray").glob("stage1-*/checkpoint_*") if p.is_dir()]


def metric_history(out, stage, key):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    run_id = json.loads((out / "run.json").read_text())["stage_runs"][stage]
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def trained(synth_dir, tmp_path_factory):
    """One training run that the learning, tracking and resume tests all read (it was three
    train.py jobs, two of them only for the resume): stage 1 for 2 epochs, then the same --out
    resumed with both stages, 4 + 1 epochs, 2 workers, a learning rate high enough to move in
    8 steps. Returns (out, the first job, the resumed job, the checkpoints the first job left)."""
    out = tmp_path_factory.mktemp("run")
    first = train(synth_dir / "plain", out, "--stage", "1", "--epochs", "2", "--lr", "3e-3")
    left = checkpoints(out)
    resumed = train(synth_dir / "plain", out, "--stage", "all", "--epochs", "4", "--stage2-epochs", "1", "--lr", "3e-3",
                    "--resume")
    return out, first, resumed, left


def test_training_lowers_the_loss(trained):
    out, *_ = trained
    losses = [v for _, v in metric_history(out, "1", "train_total")]
    assert len(losses) == 4
    assert losses[-1] < losses[0], losses
    assert (out / "matting.pt").is_file() and (out / "refiner.pt").is_file()


def test_each_worker_line_is_written_once_and_ddp_does_not_warn(trained):
    """2 workers (DDP): rank 0's lines reach the job's output once each (Ray Train's patched print
    used to double them), and no gradient has other strides than its DDP bucket view. The first job
    ran stage 1's epochs 1-2 of 2; the resumed one stage 1's epochs 3-4 of 4, then stage 2's 1 of 1."""
    _, first, resumed, _ = trained
    for proc, expected in ((first, [("1", 2, 1), ("1", 2, 2)]), (resumed, [("1", 4, 3), ("1", 4, 4), ("2", 1, 1)])):
        lines = (proc.stdout + proc.stderr).splitlines()
        for stage, epochs, epoch in expected:
            ends = [line for line in lines if f"[stage {stage}] epoch {epoch}/{epochs} train_" in line]
            steps = [line for line in lines if f"[stage {stage}] epoch {epoch}/{epochs} step " in line]
            assert len(ends) == 1 and len(steps) == len(set(steps)) >= 1, (stage, epoch, ends, steps)
        assert not [line for line in lines if "Grad strides do not match" in line]


def test_mlflow_holds_runs_metrics_and_registered_models(trained, tmp_path):
    import mlflow

    out, *_ = trained
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    state = json.loads((out / "run.json").read_text())
    parent = client.get_run(state["parent_run_id"])
    assert parent.data.params["epochs"] == "2"  # the parameters of the job that started the run ...
    config = json.loads(Path(client.download_artifacts(parent.info.run_id, "config.json", str(tmp_path))).read_text())
    assert config["epochs"] == 4 and config["stage"] == "all"  # ... and the config of the job that resumed it
    for stage in ("1", "2"):
        run = client.get_run(state["stage_runs"][stage])
        assert run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        assert "val_sad_free" in run.data.metrics or "val_sad_refined" in run.data.metrics
    names = {m.name for m in client.search_registered_models()}
    assert {"dugray-matting", "dugray-refiner"} <= names
    samples = client.list_artifacts(state["stage_runs"]["1"], "samples")
    assert len(samples) == 4  # one per epoch, before and after the resume
    # never mlflow.set_tracking_uri here: it also sets MLFLOW_TRACKING_URI, which the
    # train.py subprocesses of later tests would inherit
    from dugray.models import load_model

    model = load_model("models:/dugray-matting/1", tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    import torch

    g, nu, a, b = model(torch.rand(1, 3, 40, 50), torch.zeros(1, 1, 40, 50))
    assert g.shape == (1, 1, 40, 50)


def test_resume_continues_without_repeating_epochs(trained):
    out, first, resumed, left = trained
    assert left, "no checkpoint written"
    assert "resuming from" not in first.stdout + first.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    epochs = [step for step, _ in metric_history(out, "1", "epoch")]
    assert epochs == [1, 2, 3, 4]  # epochs 1-2 not repeated, 3-4 not lost
    assert [step for step, _ in metric_history(out, "2", "epoch")] == [1]  # stage 2 started fresh in the resumed job


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    proc = train(tmp_path / "missing", tmp_path / "out", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("train.py: error:") and len(proc.stderr.strip().splitlines()) == 1


def test_ray_job_submit_on_a_head_with_as_many_cpus_as_workers_refuses_at_once_or_trains(synth_dir, tmp_path):
    """The issue's hang: `ray start --head --num-cpus 2`, then 2 workers of 1 CPU left the data
    tasks no CPU and the job sat silent. Now it is refused in seconds, saying what to change;
    with half a CPU per worker it trains to the end."""
    env = dict(own_ray_env(), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths live under it
    # an agent port of its own: a Ray started earlier in this test process holds the default
    subprocess.run(["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=true",
                    f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats",
                    f"--temp-dir={temp_dir}"],
                   check=True, env=env, capture_output=True, timeout=180)
    try:
        out = tmp_path / "run"
        submit = ["ray", "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(ROOT), "--",
                  "python", "jobs/train.py", "--data", str(synth_dir / "plain"), "--out", str(out), *TINY,
                  "--stage", "1", "--epochs", "1"]
        start = time.perf_counter()
        refused = job_submit(submit, env)
        assert refused.returncode != 0 and "lower --num-workers or --cpus-per-worker" in refused.stdout + refused.stderr
        assert time.perf_counter() - start < 90 and not (out / "matting.pt").exists()
        trained = job_submit(submit + ["--cpus-per-worker", "0.5"], env)
        assert trained.returncode == 0 and "succeeded" in trained.stdout.lower(), trained.stdout[-3000:] + trained.stderr[-3000:]
        assert (out / "matting.pt").is_file()
    finally:
        stop_head(temp_dir, port)


def job_submit(submit: list[str], env: dict) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's job agent is still starting ("No available agent")."""
    deadline = time.time() + 120
    while True:
        # `ray start` enables token auth; the job client must be told to send the token
        proc = subprocess.run(submit, env=dict(env, RAY_AUTH_MODE="token"), capture_output=True, text=True, timeout=600)
        if "No available agent" not in proc.stdout + proc.stderr or time.time() > deadline:
            return proc
        time.sleep(3)


def stop_head(temp_dir: str, port: int) -> None:
    """Kill the head started above and only it (its processes name its temp dir or port, the
    rest descend from them). ``ray stop`` would kill every Ray on the machine, this pytest
    process's own in-process Ray included, and pytest with it."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            procs[int(d.name)] = (ppid, cmdline)
    doomed = {pid for pid, (_, cl) in procs.items() if temp_dir in cl or f":{port} " in cl + " "}
    grown = True
    while grown:  # add descendants (dashboard modules, workers)
        more = {pid for pid, (ppid, _) in procs.items() if ppid in doomed} - doomed
        doomed |= more
        grown = bool(more)
    doomed.discard(os.getpid())
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)
    # `ray start` recorded the head as "the current cluster" for address="auto" (serve run,
    # ray.init()); left behind, later users would wait on a dead head, as after `ray stop`
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()
