"""Shared fixtures: a real local Ray (for the slow integration tests) and tiny datasets."""

import pytest


@pytest.fixture(scope="session")
def _ray_at_exit():
    """Shuts the shared local Ray down once, at the end of the run."""
    import ray

    yield
    ray.shutdown()


@pytest.fixture
def ray_local(_ray_at_exit):
    """A real local Ray instance shared by the Ray tests of one pytest run; started again when a
    test in between shut it down (the multi-node test connects this process to its own cluster)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


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
