"""A training job uses one cluster, by address, in every process: Ray Train's detached
placement-group cleaner, left to find "the" cluster itself, took the machine's latest `ray start`
(someone else's on a shared machine) and removed the run's placement group."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_workers_are_told_the_address_unless_the_submitted_job_sets_it(monkeypatch):
    from dugray.train.launch import address_env

    told = {"env_vars": {"RAY_ADDRESS": "10.0.0.7:6379"}}
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert address_env("10.0.0.7:6379") == told
    # `ray job submit --working-dir .`: Ray merges the job's runtime env with ours, variable by variable
    monkeypatch.setenv(
        "RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_1.zip"}})
    )
    assert address_env("10.0.0.7:6379") == told
    # the same variable from both is refused by Ray: the job's own RAY_ADDRESS stands
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"env_vars": {"RAY_ADDRESS": "a:1"}}}))
    assert address_env("10.0.0.7:6379") is None


@pytest.mark.slow
def test_a_detached_actor_of_a_training_job_sees_the_jobs_own_cluster():
    """A private local Ray (no address given, RAY_ADDRESS unset): a detached actor created from a
    task, as Ray Train's cleaner is, has RAY_ADDRESS naming the GCS the driver joined."""
    code = textwrap.dedent("""
        import os, ray
        from dugray.train.config import TrainConfig
        from dugray.train.launch import ensure_ray

        ensure_ray(TrainConfig())

        @ray.remote(num_cpus=0)
        class Probe:
            def address(self):
                return os.environ.get("RAY_ADDRESS")

        @ray.remote(num_cpus=0)
        def from_a_task():
            probe = Probe.options(lifetime="detached").remote()
            try:
                return ray.get(probe.address.remote())
            finally:
                ray.kill(probe)

        print("gcs", ray.get_runtime_context().gcs_address, os.environ["RAY_ADDRESS"], ray.get(from_a_task.remote()))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, gcs, driver, actor = next(line for line in proc.stdout.splitlines() if line.startswith("gcs ")).split()
    assert driver == gcs and actor.rsplit(":", 1)[1] == gcs.rsplit(":", 1)[1]  # 127.0.0.1:PORT, the GCS's port
