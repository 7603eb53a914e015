"""Training artefacts are safe to load and to resume from: complete checkpoints only,
weights-only unpickling, and no MLflow pickle without the operator's consent."""

import os
import pickle
import time

import pytest
import torch

from dugray.models import CheckpointError, create_model, load_model, save_checkpoint
from dugray.train.launch import checkpoint_problem, latest_checkpoint
from dugray.train.worker import Training, _read_state, training_state, warmup_cosine


def _checkpoint(d, epoch):
    d.mkdir(parents=True)
    net = create_model("unet", widths=(8, 16), head_mid=4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(100, 10, 1e-3, 1e-6))
    net(torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32))[0].mean().backward()
    opt.step()
    sched.step()
    save_checkpoint(net, d / "model.pt", extra={"metrics": {"epoch": epoch}})
    torch.save(training_state(Training(net, opt, sched, 10, 0), epoch), d / "state.pt")
    return d


def test_the_real_training_state_loads_weights_only(tmp_path):
    d = _checkpoint(tmp_path / "c", epoch=3)
    payload, state = _read_state(d)
    assert state["epoch"] == 3 and "state" in state["optimizer"] and payload["kind"] == "model"


def test_a_state_file_with_code_in_it_is_refused(tmp_path):
    d = _checkpoint(tmp_path / "c", epoch=1)

    class Sneaky:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(d / "state.pt", "wb") as f:
        pickle.dump({"optimizer": {}, "scheduler": {}, "epoch": 1, "x": Sneaky()}, f)
    with pytest.raises(pickle.UnpicklingError):
        _read_state(d)
    assert "UnpicklingError" in checkpoint_problem(d)


def test_resume_takes_the_newest_complete_checkpoint(tmp_path):
    run = tmp_path / "ray" / "stage1-20260101-000000"
    good = _checkpoint(run / "checkpoint_000001", epoch=1)
    time.sleep(0.05)
    half = _checkpoint(run / "checkpoint_000002", epoch=2)
    data = (half / "state.pt").read_bytes()
    (half / "state.pt").write_bytes(data[: len(data) // 3])  # the job was killed while copying it
    time.sleep(0.05)
    (run / "checkpoint_000003").mkdir()  # an empty one too
    with pytest.warns(UserWarning, match="skipping incomplete checkpoint"):
        assert latest_checkpoint(str(tmp_path / "ray"), "1") == str(good)
    assert latest_checkpoint(str(tmp_path / "ray"), "2") == ""


@pytest.mark.slow
def test_mlflow_models_are_unpickled_only_with_consent(tmp_path, monkeypatch):
    """A run that holds only MLflow's pickled model (no dugray checkpoint) is refused unless
    DUGRAY_ALLOW_PICKLE=1: unpickling runs whatever code the file holds."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("safety")
    net = create_model("unet", widths=(8, 16), head_mid=4)
    with mlflow.start_run() as run:
        mlflow.pytorch.log_model(net, name="matting", serialization_format="pickle")
    monkeypatch.delenv("DUGRAY_ALLOW_PICKLE", raising=False)
    with pytest.raises(CheckpointError, match="DUGRAY_ALLOW_PICKLE=1"):
        load_model(f"runs:/{run.info.run_id}/matting", tracking_uri=uri)
    monkeypatch.setenv("DUGRAY_ALLOW_PICKLE", "1")
    loaded = load_model(f"runs:/{run.info.run_id}/matting", tracking_uri=uri)
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in net.parameters())
