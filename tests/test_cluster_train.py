"""Training across nodes, surviving a node: Ray's multi-node test cluster (one host, three raylets).

Head (1 CPU: Ray Data's tasks, the driver's actors) + two worker nodes, each with one
"trainer_slot", so that each of the 2 training workers lands on its own node. The node of
one worker is killed mid-epoch of stage 1 and again mid-epoch of stage 2, and a fresh node
joins (what an autoscaler does): Ray Train's FailureConfig restarts the worker group from
the last committed checkpoint, both stages finish, MLflow holds every epoch once, and the
final weights cut out a photo.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train import metric_history, own_ray_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SLOT = {"trainer_slot": 1}


def committed_checkpoints(storage: Path, stage: str) -> int:
    """Checkpoints Ray Train has registered for the stage (its snapshot file): a folder alone
    may be one whose report never completed, and a restart would not use it."""
    count = 0
    for snapshot in storage.glob(f"stage{stage}-*/checkpoint_manager_snapshot.json"):
        try:
            count += len(json.loads(snapshot.read_text())["checkpoint_results"])
        except (OSError, ValueError, KeyError):  # being rewritten: ask again
            pass
    return count


def worker_nodes_running_training(cluster) -> list:
    """The cluster's worker nodes that host a Ray Train worker right now: a worker process is a
    child of its node's raylet (no state API: other Ray instances on this host may own the
    dashboard port)."""
    from ray._private import ray_constants

    raylets = {n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid: n for n in cluster.worker_nodes}
    found = []
    for pid in subprocess.run(["pgrep", "-f", "RayTrainWorker"], capture_output=True, text=True).stdout.split():
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in raylets and raylets[ppid] not in found:
            found.append(raylets[ppid])
    return found


def wait_for(condition, what: str, proc, timeout: float = 150):
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(
                f"training ended (exit {proc.returncode}) before {what}:\n{proc.stdout.read()[-4000:]}"
            )
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def kill_a_training_node_and_replace_it(cluster, storage: Path, stage: str, proc) -> None:
    """Once the stage's first checkpoint is committed, kill a node that runs a worker; a new node joins."""
    wait_for(lambda: committed_checkpoints(storage, stage) >= 1, f"stage {stage}'s first checkpoint", proc)
    wait_for(lambda: len(worker_nodes_running_training(cluster)) == 2, f"stage {stage}'s two workers", proc, 60)
    victim = worker_nodes_running_training(cluster)[0]
    cluster.remove_node(victim, allow_graceful=False)
    cluster.add_node(num_cpus=1, resources=SLOT)


def test_two_workers_on_two_nodes_survive_losing_a_node_in_each_stage(synth_dir, tmp_path, tiny_image):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()  # a Ray of this process's own would be one more raylet on the host
    # a killed node found dead in ~3 s, not Ray's default ~15 s (5 failed health checks 3 s apart), as in
    # tests/test_batch.py: twice a node is lost, and every restart waits for that verdict
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
        },
    )
    proc = None
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources=SLOT)
        cluster.wait_for_nodes()
        start = time.perf_counter()
        out, storage = tmp_path / "run", tmp_path / "shared-storage"
        cmd = [
            sys.executable,
            str(ROOT / "jobs" / "train.py"),
            "--data",
            str(synth_dir / "plain"),
            "--out",
            str(out),
            "--storage",
            str(storage),
            "--stage",
            "all",
            "--epochs",
            "3",
            "--stage2-epochs",
            "2",
            "--num-workers",
            "2",
            "--crop",
            "64",
            "--batch-size",
            "4",
            "--samples-per-epoch",
            "16",
            "--max-failures",
            "3",
            "--config",
            str(write_slot_config(tmp_path)),
        ]
        env = dict(own_ray_env(), RAY_ADDRESS=cluster.address)
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for stage in ("1", "2"):
            kill_a_training_node_and_replace_it(cluster, storage, stage, proc)
            print(f"[test] stage {stage}: node killed at {time.perf_counter() - start:.1f} s", flush=True)
        output, _ = proc.communicate(timeout=300)
        print(f"[test] training done at {time.perf_counter() - start:.1f} s", flush=True)
        (tmp_path / "train.log").write_text(output)
        assert proc.returncode == 0, output[-4000:]
        assert [s for s, _ in metric_history(out, "1", "epoch")] == [1, 2, 3]  # each epoch once: none lost, none twice
        assert [s for s, _ in metric_history(out, "2", "epoch")] == [1, 2]
        assert output.count("Started training worker group") >= 4  # each stage's group, and each one restarted
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cluster.shutdown()
    from dugray.models import load_networks
    from dugray.session import MattingSession

    model, refiner = load_networks(str(out), str(out))
    session = MattingSession(tiny_image, model, refiner).start().refine()
    assert session.alpha.shape == tiny_image.shape[:2] and 0 <= session.alpha.min() and session.alpha.max() <= 1


def write_slot_config(folder: Path) -> Path:
    """The YAML that asks each worker for one trainer_slot (the flag-less key)."""
    path = folder / "slots.yaml"
    path.write_text("worker_resources:\n  trainer_slot: 1\n")
    return path


@pytest.fixture
def tiny_image():
    img = np.random.default_rng(1).integers(0, 90, (72, 96, 3), dtype=np.uint8)
    img[20:52, 30:66] = (40, 200, 230)
    return img
