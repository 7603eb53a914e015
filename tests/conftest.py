"""Shared fixtures: a real local Ray (for the slow integration tests) and tiny datasets."""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two test workers (pyproject's -n 2) share the machine's cores: one OpenMP thread each; two
    # pools of two busy-waiting threads made the fast tests take 375 CPU-s instead of 299
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def job_script_path(monkeypatch):
    """sys.path as ``python jobs/NAME.py`` has it, for a test that runs a jobs script in process:
    the script's folder first (the benchmark scripts import ``benchmarks.<module>``), undone after."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "jobs"))


@pytest.fixture(scope="session")
def _ray_shut_down_at_the_end():
    """Whatever Ray the tests left running goes with the session."""
    yield
    import ray

    ray.shutdown()


@pytest.fixture
def ray_local(_ray_shut_down_at_the_end):
    """A real local Ray instance shared by the Ray tests of one pytest run: started by the first
    test that needs it, and again after a test that had to shut it down (the multi-node batch
    test joins a cluster of its own)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A tiny synthetic dataset (both layouts) written by the project's own generator."""
    from dugray.data.synthetic import write_dataset

    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, n=12, size=96, seed=3, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny untrained matting network and refiner, as a training output folder (str).

    Seeded, so that every test run sees the same weights whatever ran before it: an
    unseeded random net once gave a flat 0.5 matte with nothing for the solve to pin.
    """
    import torch

    from dugray.models import create_model, create_refiner, save_checkpoint

    folder = tmp_path_factory.mktemp("tiny_model")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        save_checkpoint(create_model("unet", widths=(8, 16, 32), head_mid=4), folder / "matting.pt")
        save_checkpoint(create_refiner("hrnet_lite"), folder / "refiner.pt")
    return str(folder)


HEAVIEST_FIRST = (
    "test_recipe",
    "test_train",
    "test_cluster_train",
    "test_soak",
    "test_serve_exposed",
    "test_wheel",
    "test_modnet",
    "test_serve_cluster",
    "test_client",
    "test_batch",
    "test_serve",
    "test_web",
)
"""Test files by their time in CI (minutes of Ray start-ups and training jobs each), longest first."""


def pytest_collection_modifyitems(config, items):
    """Run order for two test workers (pyproject's ``-n 2 --dist loadfile``: each file goes whole to
    whichever worker is free, in this order): the longest files first, then the other files with slow
    tests, then the fast ones, which fill in at the end so that both workers finish together. Within a
    file, the order is the file's own."""
    slow_files = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}

    def key(item):
        name = item.module.__name__
        return rank.get(name, len(rank) + (name not in slow_files))

    items.sort(key=key)
