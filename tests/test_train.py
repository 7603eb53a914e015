"""Training on real Ray Train and real MLflow with tiny data: learning, resume, recovery, tracking
(`ray job submit`: tests/test_recipe.py, on the README's own head).

Each test runs ``jobs/train.py`` as a subprocess (its own local Ray), as users do.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    resumed = train(
        synth_dir / "plain", out, "--stage", "all", "--epochs", "4", "--stage2-epochs", "1", "--lr", "3e-3", "--resume"
    )
    return out, first, resumed, left


def test_training_lowers_the_loss(trained):
    out, *_ = trained
    losses = [v for _, v in metric_history(out, "1", "train_total")]
    assert len(losses) == 4
    assert losses[-1] < losses[0], losses
    assert (out / "matting.pt").is_file() and (out / "refiner.pt").is_file()


def test_each_worker_line_is_written_once_and_ddp_does_not_warn(trained):
    """2 workers (DDP): rank 0's lines reach the job's output once each (Ray Train's patched print
    used to double them), no gradient has other strides than its DDP bucket view, and Ray Train's
    placement-group cleaner does not warn that it cannot see the controller. The first job
    ran stage 1's epochs 1-2 of 2; the resumed one stage 1's epochs 3-4 of 4, then stage 2's 1 of 1."""
    _, first, resumed, _ = trained
    for proc, expected in ((first, [("1", 2, 1), ("1", 2, 2)]), (resumed, [("1", 4, 3), ("1", 4, 4), ("2", 1, 1)])):
        lines = (proc.stdout + proc.stderr).splitlines()
        for stage, epochs, epoch in expected:
            ends = [line for line in lines if f"[stage {stage}] epoch {epoch}/{epochs} train_" in line]
            steps = [line for line in lines if f"[stage {stage}] epoch {epoch}/{epochs} step " in line]
            assert len(ends) == 1 and len(steps) == len(set(steps)) >= 1, (stage, epoch, ends, steps)
        assert not [line for line in lines if "Grad strides do not match" in line]
        # a private Ray has no dashboard, so no state API: Ray Train's cleaner said so every few seconds
        assert not [line for line in lines if "Failed to query Ray Train Controller" in line]


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
    # the requirements are given, pinned to what is installed (MLflow's inference took 3.6 s per stage)
    from importlib.metadata import version

    uri = f"sqlite:///{out / 'mlflow.db'}"
    logged = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_download_uri(
        "dugray-matting", "1"
    )
    reqs = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{logged}/requirements.txt", dst_path=str(tmp_path), tracking_uri=uri
        )
    )
    lines = reqs.read_text().split()
    assert f"torch=={version('torch')}" in lines and any(line.startswith("dugray") for line in lines), lines


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
