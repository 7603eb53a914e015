"""One front door: the package's exports, one loader, one round for every runner, one vocabulary."""

import asyncio
import doctest
import io
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import dugray
from dugray.cli import main
from dugray.models import (
    CheckpointError,
    create_model,
    create_refiner,
    load_model,
    load_networks,
    refiner_uri_for,
    resolve_device,
    save_checkpoint,
)
from dugray.session import (  # the plans
    FUSE,
    PREDICT,
    PROPOSE,
    REFINE,
    SOLVE,
    MattingSession,
    SessionConfig,
    apply_user_labels,
    fused_nig,
    new_state,
    predict_round,
    propose_patches,
    refine_plan,
    refine_step,
    round_plan,
    run_plan_async,
    solve_step,
    working_float,
)
from dugray.train.config import TrainConfig
from dugray.usermap import mask_to_trimap

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the package's exports


def test_the_package_docstring_example_runs():
    result = doctest.testmod(dugray, verbose=False)
    assert result.attempted >= 8 and result.failed == 0


def test_import_dugray_is_cheap_and_exports_the_front_door():
    code = (
        "import sys, dugray; assert 'torch' not in sys.modules; "
        "from dugray import MattingSession, SessionConfig, load_networks, load_model, create_model, "
        "available_models, __version__; assert 'unet' in available_models(); print(__version__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == dugray.__version__
    with pytest.raises(AttributeError):
        dugray.no_such_name  # noqa: B018


def test_no_sys_path_manipulation_outside_the_tests_conftest():
    offenders = []
    for folder in ("dugray", "serve", "jobs", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if (
                path.name != "conftest.py"
                and path != Path(__file__)
                and re.search(r"sys\.path\.(insert|append)", path.read_text())
            ):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# --------------------------------------------------------------------------- one loader


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    save_checkpoint(create_model("unet", widths=(8, 16), head_mid=4), d / "matting.pt")
    save_checkpoint(create_refiner("hrnet_lite"), d / "refiner.pt")
    return d


def test_a_checkpoint_of_the_other_kind_is_refused_with_a_clear_error(folder):
    with pytest.raises(CheckpointError, match="holds a refiner, not a matting network"):
        load_model(str(folder / "refiner.pt"), "matting")
    with pytest.raises(CheckpointError, match="holds a matting network, not a refiner"):
        load_model(str(folder / "matting.pt"), "refiner")
    with pytest.raises(CheckpointError, match="not a refiner"):
        load_networks(str(folder / "matting.pt"), str(folder / "matting.pt"))


def test_the_refiner_follows_the_model_by_one_rule(folder, tmp_path):
    assert refiner_uri_for("default") == "default"
    assert refiner_uri_for(str(folder)) == str(folder)
    assert refiner_uri_for(str(folder / "matting.pt")) is None  # a single file brings no refiner
    assert refiner_uri_for("models:/dugray-matting/1") is None
    assert refiner_uri_for(str(folder), "none") is None and refiner_uri_for(str(folder), "NONE") is None
    assert refiner_uri_for(str(folder / "matting.pt"), "") is None  # an empty flag is no flag
    net, ref = load_networks(str(folder))
    assert net.kind == "model" and ref.kind == "refiner" and not net.training and not ref.training
    save_checkpoint(create_model("unet", widths=(8, 16), head_mid=4), tmp_path / "matting.pt")
    assert load_networks(str(tmp_path))[1] is None  # stage 1 only: no refiner, no error
    with pytest.raises(FileNotFoundError):  # but one asked for by name must exist
        load_networks(str(tmp_path), str(tmp_path))
    net, ref = load_networks(str(folder), parts=("refiner",))
    assert net is None and ref is not None


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    for bad in ("tpu", "gpu0", 3.5):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)


def test_every_entry_point_refuses_a_refiner_given_as_the_model(folder, synth_dir, tmp_path, capsys):
    image = tmp_path / "i.png"
    import cv2

    cv2.imwrite(str(image), np.full((32, 40, 3), 128, np.uint8))
    assert main(["cutout", str(image), "--model", str(folder / "refiner.pt")]) == 2
    assert "holds a refiner, not a matting network" in capsys.readouterr().err
    from dugray.evaluation.runner import EvalError, load_pair

    with pytest.raises(EvalError, match="not a matting network"):
        load_pair(str(folder / "refiner.pt"))
    from dugray.train.train_job import main as train_main

    assert (
        train_main(
            [
                "--data",
                str(synth_dir / "plain"),
                "--out",
                str(tmp_path / "o"),
                "--stage",
                "1",
                "--init-from",
                str(folder / "refiner.pt"),
            ]
        )
        == 2
    )  # before Ray starts
    assert "holds a refiner, not a matting network" in capsys.readouterr().err


# --------------------------------------------------------------------------- one vocabulary


def test_train_names_the_backbone_arch(capsys):
    """train.py's backbone is --arch (config key ``arch``); --model, everywhere else the weights, is no
    name of it there: argparse's usual error, and an unknown config key."""
    from dugray.train.train_job import main as train_main

    with pytest.raises(SystemExit) as stop:
        train_main(["--model", "unet", "--data", "x"])
    assert stop.value.code == 2 and "unrecognized arguments: --model unet" in capsys.readouterr().err
    with pytest.raises(ValueError, match="model"):
        TrainConfig.from_dict({"data": "x", "model": "modnet_lite"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainConfig.from_dict({"data": "x", "arch": "unet"}).arch == "unet"


def test_the_defaults_are_defined_once():
    from dugray import defaults
    from dugray.evaluation.evaluate_job import build_parser
    from serve.settings import ServeSettings

    config = SessionConfig()
    assert (config.work_size, config.k, config.n, config.t) == (defaults.WORK_SIZE, defaults.K, defaults.N, defaults.T)
    assert ServeSettings().session_config() == config  # the shipped Serve settings add nothing of their own
    args = build_parser().parse_args(["--data", "d", "--out", "o"])
    assert (args.work_size, args.k, args.n) == (defaults.WORK_SIZE, defaults.K, defaults.N)
    import yaml

    serve_args = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())["applications"][0]["args"]
    assert "session" not in serve_args  # the config file does not restate them


def test_cli_k_and_n_reach_the_session(tiny_model, tmp_path, monkeypatch, capsys):
    import cv2

    image = tmp_path / "i.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(image), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    monkeypatch.setattr(sys, "stdin", io.StringIO("done\n"))
    assert (
        main(
            [
                "interactive",
                str(image),
                "-o",
                str(tmp_path / "c.png"),
                "--model",
                tiny_model,
                "--k",
                "4",
                "--n",
                "3",
                "--no-refine",
            ]
        )
        == 0
    )
    listed = re.findall(r"^\s+\d+\s+[\d,]+\s+score", capsys.readouterr().out, re.M)
    assert len(listed) == 3
    assert main(["cutout", str(image), "--server", "http://127.0.0.1:9", "--n", "3"]) == 2  # server-side setting


# --------------------------------------------------------------------------- one round, any runner


class Toy:
    """A deterministic stand-in for the network: the image's brightness as the matte."""

    kind = "model"

    def __call__(self, x, u):
        import torch

        g = x.mean(1, keepdim=True).clamp(0.05, 0.95)
        g = torch.where(u > 0.5, torch.ones_like(g), torch.where(u < -0.5, torch.zeros_like(g), g))
        return g, torch.full_like(g, 0.5) + u.abs(), torch.full_like(g, 3.0), torch.full_like(g, 0.2) + 0.1 * g


def _image():
    rng = np.random.default_rng(3)
    image = np.zeros((40, 56, 3), np.uint8)
    image[10:30, 14:42] = 220
    return np.clip(image + rng.integers(0, 25, image.shape), 0, 255).astype(np.uint8)


def test_the_async_runner_gives_the_in_process_session_exactly():
    """The Serve ingress runs round_plan with coroutine steps; same plan, same state as MattingSession."""
    model = Toy()
    config = SessionConfig(k=4, n=3, network_rounds="every")  # the paper: the network in every round
    local = MattingSession(_image(), model, None, config).start().label([(0, "fg"), (1, "bg")]).refine()
    calls = []

    def steps():
        async def predict(st):
            calls.append(PREDICT)
            return predict_round(model, working_float(st), st.user_map)

        async def fuse(st):
            return fused_nig(st.working())

        async def propose(st, nig):
            return propose_patches(st.working(), nig=nig)

        async def solve(st, nig):
            return solve_step(st.working(), nig=nig)

        async def refine(st, nig):
            return refine_step(st.working(), None, nig=nig)

        return {PREDICT: predict, FUSE: fuse, PROPOSE: propose, SOLVE: solve, REFINE: refine}

    state = new_state(_image(), config)
    asyncio.run(run_plan_async(round_plan(state, {}), steps()))
    apply_user_labels(state, [(0, "fg"), (1, "bg")])
    asyncio.run(run_plan_async(round_plan(state, {}), steps()))
    asyncio.run(run_plan_async(refine_plan(state), steps()))
    assert calls == [PREDICT, PREDICT]
    assert [p.box for p in state.proposals] == [p.box for p in local.proposals]
    for mine, theirs in zip(state.rounds, local.state.rounds):
        for a, b in zip(mine, theirs):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(state.solved, local.state.solved)
    np.testing.assert_array_equal(state.refined, local.state.refined)
    assert set(state.timings[-1]) >= {"predict_s", "fuse_s", "propose_solve_s", "solve_s", "total_s", "refine_s"}


def test_the_one_shot_round_asks_nothing_and_solves():
    s = MattingSession(_image(), Toy(), None, SessionConfig(k=4, n=3)).start(propose=False)
    assert s.proposals == [] and s.rounds == 1 and s.state.solved is not None


def test_a_mask_is_read_in_one_place():
    image = _image()
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[10:30, 14:42] = 1
    a = new_state(image, trimap=mask_to_trimap(mask))
    for form in (mask, mask * 255, mask.astype(np.uint16) * 65535, mask.astype(np.float32), mask.astype(bool)):
        b = new_state(image, mask=form)
        np.testing.assert_array_equal(a.user_map, b.user_map)
    assert set(np.unique(a.user_map)) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="at most one of"):
        new_state(image, trimap=mask_to_trimap(mask), mask=mask)
    with pytest.raises(ValueError, match="image's size"):
        new_state(image, mask=mask[:5])
