"""The evaluation: AUROC by hand, the closed-form reference, the Table-4 noise variant,
the whole job on three tiny synthetic images (every output, consistent numbers) and
its exit codes. Models are tiny, untrained and built here."""

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dugray.evaluation import (
    EvalConfig,
    auroc,
    average_ranks,
    closed_form_alpha,
    error_detection_auroc,
    evaluate,
)
from dugray.evaluation.report import fmt
from dugray.metrics import composition1k, whole_image
from dugray.models import create_model, create_refiner, save_checkpoint
from dugray.nig import NIG
from dugray.session import SessionConfig, refine_matte

ROOT = Path(__file__).resolve().parents[1]
METHODS = [
    "free",
    "free_nosolve",
    "sel1",
    "sel1_nosolve",
    "sel2",
    "sel2_nosolve",
    "refined",
    "refined_nosolve",
    "refined_fixed",
    "refined_fixed_nosolve",
    "alg1_sel1",
    "alg1_sel1_nosolve",
    "alg1_sel2",
    "alg1_sel2_nosolve",
    "last_sel1",
    "last_sel1_nosolve",
    "last_sel2",
    "last_sel2_nosolve",
    "noenforce_sel1",
    "noenforce_sel2",
    "noenforce_refined",
    "click0",
    "click1",
    "click2",
    "click3",
    "trimap",
    "trimap_nosolve",
    "trimap_refined",
    "trimap_refined_nosolve",
    "trimap_refined_fixed",
    "trimap_refined_fixed_nosolve",
    "cf_trimap",
]


def _job():
    spec = importlib.util.spec_from_file_location("evaluate_job", ROOT / "jobs" / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def empty_weights_cache(tmp_path, monkeypatch):
    """No cached U^2-Netp file: a model without it gets no rembg rows, wherever the tests run."""
    monkeypatch.setenv("DUGRAY_CACHE", str(tmp_path / "empty_cache"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    save_checkpoint(create_model("unet", widths=(8, 16, 16)), d / "matting.pt")
    save_checkpoint(create_refiner("hrnet_lite", widths=(8, 8), modules=(1, 1), blocks=1), d / "refiner.pt")
    save_checkpoint(
        create_refiner("hrnet_lite", widths=(8, 8), modules=(1, 1), blocks=1, noise="fixed"), d / "refiner_fixed.pt"
    )
    return d


@pytest.fixture(scope="module")
def three_images(tmp_path_factory):
    """plain/test/{image,alpha,trimap} with 3 synthetic 64 px images (the project's generator)."""
    from dugray.data.synthetic import write_dataset

    d = tmp_path_factory.mktemp("synth")
    write_dataset(d, n=5, size=64, seed=1, val_fraction=0.2, test_fraction=0.6, progress=False)
    assert len(list((d / "plain" / "test" / "image").glob("*.png"))) == 3
    return d / "plain"


@pytest.fixture(scope="module")
def job_out(tiny_model, three_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    # an empty weights cache: the tiny unet carries no U^2-Netp, so the rembg rows are left out (and say why)
    env = {**os.environ, "DUGRAY_CACHE": str(tmp_path_factory.mktemp("empty_cache"))}
    proc = subprocess.run(
        [
            sys.executable,
            "jobs/evaluate.py",
            "--data",
            three_images,
            "--split",
            "test",
            "--model",
            tiny_model,
            "--out",
            out,
            "--rounds",
            "2",
            "--figures",
            "1",
            "--quiet",
            "--clicks",
            "3",
            "--refiner-variant",
            f"fixed={tiny_model / 'refiner_fixed.pt'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


# ------------------------------------------------------------------------- AUROC


def test_auroc_hand_computed_cases():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0  # perfect ranking
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0  # reversed
    assert auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # all tied
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # 3 of 4 pairs ordered
    assert auroc([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == 0.875  # one tied pair counts 1/2
    assert math.isnan(auroc([0.1, 0.2], [0, 0])) and math.isnan(auroc([0.1, 0.2], [1, 1]))
    assert average_ranks([3.0, 1.0, 2.0, 2.0, np.inf, np.inf]).tolist() == [4, 1, 2.5, 2.5, 5.5, 5.5]
    with pytest.raises(ValueError):
        average_ranks([1.0, np.nan])


def test_error_detection_auroc_on_a_matte():
    gt = np.zeros((4, 4), np.uint8)
    pred = gt.copy()
    pred[0, :2] = 255  # two large errors
    pred[1, 0] = 20  # a small one (< 0.1): not a positive
    unc = np.zeros((4, 4))
    unc[0, :2] = 1.0
    assert error_detection_auroc(unc, pred, gt) == 1.0
    assert error_detection_auroc(-unc, pred, gt) == 0.0
    assert math.isnan(error_detection_auroc(unc, gt, gt))  # no large error: undefined


# ------------------------------------------------------------------------- references


def test_closed_form_with_everything_known_is_the_gt():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    gt = np.zeros((20, 24), np.uint8)
    gt[5:15, 6:18] = 255
    assert np.array_equal(closed_form_alpha(image, gt), gt / 255.0)


def test_closed_form_solves_a_clean_edge():
    image = np.zeros((24, 24, 3), np.uint8)
    image[:, 12:] = 255
    gt = (image[..., 0] > 0).astype(np.float64)
    trimap = np.where(gt > 0, 255, 0).astype(np.uint8)
    trimap[:, 8:16] = 128  # unknown band across the edge
    assert np.abs(closed_form_alpha(image, trimap) - gt).max() < 1e-2  # CG solver tolerance
    only_bg = np.where(trimap == 128, 128, 0).astype(np.uint8)  # no fg constraint: 0
    assert closed_form_alpha(image, only_bg).max() == 0.0


def test_fixed_noise_equals_the_method_when_aleatoric_is_constant():
    torch.manual_seed(0)
    refiner = create_refiner("hrnet_lite", widths=(8, 8), modules=(1, 1), blocks=1).eval()
    rng = np.random.default_rng(0)
    h, w = 40, 48
    gamma = rng.random((h, w)).astype(np.float32)
    nig = NIG(
        gamma, np.full((h, w), 2.0, np.float32), np.full((h, w), 3.0, np.float32), np.full((h, w), 0.02, np.float32)
    )
    image = rng.random((h, w, 3)).astype(np.float32)
    cfg = SessionConfig()
    a = refine_matte(refiner, nig, image, cfg, np.random.default_rng(5))
    b = refine_matte(refiner, nig, image, cfg, np.random.default_rng(5), noise="fixed")
    assert not np.array_equal(a, gamma)  # something was refined
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError):
        refine_matte(refiner, nig, image, cfg, rng, noise="uniform")


# ------------------------------------------------------------------------- the job


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_job_writes_every_output(job_out, three_images):
    names = sorted(p.stem for p in (three_images / "test" / "image").glob("*.png"))
    for f in ("report.md", "per_image.csv", "summary.json", "figure7.png", f"steps_{names[0]}.png"):
        assert (job_out / f).is_file(), f
    assert not (job_out / f"steps_{names[1]}.png").exists()  # --figures 1
    summary = json.loads((job_out / "summary.json").read_text())
    assert list(summary["methods"]) == METHODS
    assert summary["n_images"] == 3 and summary["images"] == names
    for m in METHODS:
        for n in names:
            assert cv2.imread(str(job_out / "mattes" / m / f"{n}.png"), cv2.IMREAD_UNCHANGED).shape == (64, 64)
    rows = _read_csv(job_out / "per_image.csv")
    assert len(rows) == 3 * len(METHODS)
    c = summary["figure7"]["main"]
    assert c["selections"] == [0, 1, 2] and len(c["whole_sad"]) == 3 and all(v is not None for v in c["mean_epistemic"])
    report = (job_out / "report.md").read_text()
    assert "## Composition-1k protocol" in report and "## Whole-image protocol (P3M)" in report
    assert "clamped to the trimap" in report and "AUROC" in report
    # the corrective-click user: SAD after k clicks = the click<k> rows, NoC against the cf_trimap row
    corrective = summary["corrective"]
    assert "## Corrective clicks" in report and set(corrective["per_image"]) == set(names)
    for name in names:
        mine = {r["method"]: r for r in rows if r["image"] == name}
        c = corrective["per_image"][name]
        for k in (0, 1, 2, 3):
            assert float(mine[f"click{k}"]["whole_sad"]) == pytest.approx(c[f"sad_{k}"])
        assert c["cf_sad"] == pytest.approx(float(mine["cf_trimap"]["whole_sad"]))
        noc = (
            next(k for k in range(4) if c[f"sad_{k}"] <= 2 * c["cf_sad"])
            if min(c[f"sad_{k}"] for k in range(4)) <= 2 * c["cf_sad"]
            else 3
        )
        assert c["noc_2x"] == noc and int(mine["click2"]["noc_2x"]) == noc
        assert 0 <= c["worse_clicks"] <= c["clicks"] <= 3


def test_job_numbers_are_consistent(job_out, three_images):
    """summary == metrics recomputed on the saved mattes == CSV means == the table's cells."""
    summary = json.loads((job_out / "summary.json").read_text())
    rows = _read_csv(job_out / "per_image.csv")
    report = (job_out / "report.md").read_text()
    comp1k_section = report.split("## Composition-1k protocol")[1].split("## Whole-image")[0]
    whole_section = report.split("## Whole-image protocol")[1].split("## Calibration")[0]
    test = three_images / "test"
    for method, entry in summary["methods"].items():
        c1k, whole = [], []
        for name in summary["images"]:
            pred = cv2.imread(str(job_out / "mattes" / method / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            gt = cv2.imread(str(test / "alpha" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            tri = cv2.imread(str(test / "trimap" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            clamped = pred.copy()
            clamped[tri == 0], clamped[tri == 255] = 0, 255
            c1k.append(composition1k(clamped, gt, tri))
            whole.append(whole_image(pred, gt, tri))
        for key in ("sad", "mse", "mad", "grad", "conn"):
            assert entry["comp1k"][key] == pytest.approx(np.mean([m[key] for m in c1k]), rel=1e-9, abs=1e-12)
        for key in ("sad", "mse", "mad", "grad", "conn", "sadt", "sadbf"):
            assert entry["whole"][key] == pytest.approx(np.mean([m[key] for m in whole]), rel=1e-9, abs=1e-12)
        mine = [r for r in rows if r["method"] == method]
        for col, value in (
            [(f"comp1k_{k}", v) for k, v in entry["comp1k"].items()]
            + [(f"whole_{k}", v) for k, v in entry["whole"].items()]
            + [("seconds", entry["seconds"])]
        ):
            assert np.mean([float(r[col]) for r in mine]) == pytest.approx(value, rel=1e-9, abs=1e-12), (method, col)
        aucs = [float(r["auroc_epistemic"]) for r in mine if r["auroc_epistemic"]]
        assert entry["auroc_images"] == len(aucs)
        if aucs:
            assert np.mean(aucs) == pytest.approx(entry["auroc_epistemic"])
        for section, proto in ((comp1k_section, "comp1k"), (whole_section, "whole")):
            line = next(x for x in section.splitlines() if x.startswith(f"| `{method}` "))
            assert line.split(" | ")[1] == fmt(entry[proto]["sad"])


def test_bad_arguments_exit_2(tmp_path, tiny_model, three_images, capsys):
    proc = subprocess.run(
        [sys.executable, "jobs/evaluate.py", "--data", tmp_path / "missing", "--out", tmp_path / "o"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("evaluate.py: error:") and len(proc.stderr.strip().splitlines()) == 1
    job = _job()
    out = ["--out", str(tmp_path / "o")]
    ready = ["--data", str(three_images), *out, "--model", str(tiny_model)]  # a valid run, before each case's flaw
    cases = [
        out,  # no --data
        ["--data", str(three_images), *out, "--rounds", "-1", "--model", str(tiny_model)],
        ["--data", str(three_images), *out, "--split", "nope", "--model", str(tiny_model)],
        ["--data", str(three_images), *out, "--model", str(tmp_path / "no_model")],
        [*ready, "--compare", "l1"],
        [*ready, "--max-side", "4"],
        ["--data", str(tmp_path), *out, "--model", str(tiny_model)],  # no layout
        [*ready, "--session-set", "network_rounds"],  # no value
        [*ready, "--session-set", "no_such_field=1"],
        [*ready, "--session-set", "network_rounds=sometimes"],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as exc:
            job.main(argv)
        assert exc.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("evaluate.py: error:") and len(err.strip().splitlines()) == 1, (argv, err)


def test_dataset_without_trimaps_gets_a_derived_one(tmp_path, tiny_model, three_images):
    data = tmp_path / "val"
    for sub in ("image", "alpha"):
        (data / sub).mkdir(parents=True)
        for p in sorted((three_images / "test" / sub).glob("*.png"))[:1]:
            (data / sub / p.name).write_bytes(p.read_bytes())
    cfg = EvalConfig(
        rounds=1, figures=0, ablations=False, max_side=48, clicks=0, session=SessionConfig(n=4, solve=False)
    )
    summary = evaluate(
        data, tmp_path / "out", model=str(tiny_model), compare={"l1": str(tiny_model)}, config=cfg, progress=False
    )
    assert summary["split"] == "val" and summary["n_images"] == 1
    assert list(summary["methods"]) == ["free", "sel1", "refined", "l1.free", "l1.sel1", "l1.refined"]
    assert "derived from the GT" in summary["protocols"]["comp1k"]
    assert set(summary["figure7"]) == {"main", "l1"}
    pred = cv2.imread(str(tmp_path / "out" / "mattes" / "free" / f"{summary['images'][0]}.png"), cv2.IMREAD_GRAYSCALE)
    assert pred.shape == (48, 48)  # --max-side


@pytest.mark.slow
def test_mlflow_run_has_metrics_and_artifacts(tmp_path, tiny_model, three_images, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "out"
    assert (
        _job().main(
            [
                "--data",
                str(three_images),
                "--split",
                "test",
                "--model",
                str(tiny_model),
                "--out",
                str(out),
                "--limit",
                "1",
                "--rounds",
                "1",
                "--no-ablations",
                "--mlflow",
                "--quiet",
            ]
        )
        == 0
    )
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["dugray-eval"], output_format="list")[0]
    assert "sel1/comp1k/sad" in run.data.metrics and "free/whole/sadt" in run.data.metrics
    assert run.data.params["rounds"] == "1"
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"report.md", "per_image.csv", "summary.json", "figure7.png", "mattes"} <= names


def test_nosolve_twins_are_the_network_alone(tmp_path, tiny_model, three_images):
    """Each `*_nosolve` row of a solving run is exactly the matte of a run without the solve,
    and the solved rows differ from it (the solve did something)."""
    kw = {"rounds": 1, "figures": 0, "ablations": False, "closed_form": False, "limit": 2}
    on = evaluate(
        three_images,
        tmp_path / "on",
        model=str(tiny_model),
        config=EvalConfig(**kw, session=SessionConfig(n=4)),
        progress=False,
    )
    off = evaluate(
        three_images,
        tmp_path / "off",
        model=str(tiny_model),
        config=EvalConfig(**kw, session=SessionConfig(n=4, solve=False)),
        progress=False,
    )
    assert "free_nosolve" in on["methods"] and "free_nosolve" not in off["methods"]
    changed = 0
    for variant in ("free", "sel1", "trimap"):
        for name in on["images"]:
            twin = cv2.imread(
                str(tmp_path / "on" / "mattes" / f"{variant}_nosolve" / f"{name}.png"), cv2.IMREAD_GRAYSCALE
            )
            plain = cv2.imread(str(tmp_path / "off" / "mattes" / variant / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            solved = cv2.imread(str(tmp_path / "on" / "mattes" / variant / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            np.testing.assert_array_equal(twin, plain)
            changed += int(np.any(solved != plain))
    assert changed > 0


# ------------------------------------------------------------- the NIG head's diagnosis (issue 16)


def test_nig_stats_figures_of_a_known_aleatoric_map():
    from dugray.evaluation.methods import band_of
    from dugray.evaluation.nig_stats import image_stats

    gt = np.zeros((64, 64), np.uint8)
    gt[:, 33:] = 255
    gt[:, 32] = 128  # one column of transition: the band is columns 29..35 (dilated 3 px)
    band = band_of(gt, gt.shape)
    assert band[:, 29:36].all() and not band[:, :29].any() and not band[:, 36:].any()
    ale = np.where(band, 0.1, 0.001)
    maps = {"gamma": gt / 255.0, "aleatoric": ale, "aleatoric_variance": ale**2}
    st = image_stats(maps, gt)
    assert st["auroc_band"] == 1.0  # E[sigma^2] separates the band perfectly
    assert st["selected_in_band"] == 1.0 and st["selected_share"] == pytest.approx(band.mean())  # Otsu keeps the band
    assert st["auroc_band_of_error"] == 0.5  # a perfect matte: no error anywhere, all tied
    assert st["aleatoric_in_band"] == pytest.approx(0.1) and st["aleatoric_outside"] == pytest.approx(0.001)
    assert st["log_corr_aleatoric_variance"] == pytest.approx(1.0)


def test_head_probe_trains_the_evidence_branches_and_leaves_the_matte_alone():
    from dugray.evaluation.head_probe import evidence_only, mask_gamma
    from dugray.nig import nig_loss

    torch.manual_seed(0)
    net = create_model("unet", widths=(8, 16, 16)).eval()
    x, u = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    before = [t.detach().clone() for t in net(x, u)]
    params = evidence_only(net)
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        nig_loss(torch.rand(2, 1, 32, 32), net(x, u)).backward()
        mask_gamma(net)
        opt.step()
    after = net(x, u)
    assert torch.equal(after[0], before[0])  # gamma bit-identical
    assert not torch.equal(after[3], before[3])  # beta learned
    assert all(not p.requires_grad for n, p in net.named_parameters() if not n.startswith("head."))


def test_head_probe_reinit_restores_the_initial_evidence():
    from dugray.evaluation.head_probe import reinit_evidence

    torch.manual_seed(0)
    net = create_model("unet", widths=(8, 16, 16), alpha_min=2.1).eval()
    with torch.no_grad():
        net.head.out.bias += 3.0  # a "trained" head, far from its initialisation
    gamma_bias = float(net.head.out.bias[0])
    reinit_evidence(net)
    b = net.head.out.bias.detach()
    assert float(b[0]) == gamma_bias  # gamma untouched
    sp = torch.nn.functional.softplus
    assert float(sp(b[1])) == pytest.approx(1.0) and float(sp(b[2])) == pytest.approx(1.0)  # nu 1, alpha = 2.1 + 1
    assert float(sp(b[3])) / (2.1 + 1.0 - 1.0) == pytest.approx(0.1)  # E[sigma^2] = beta / (alpha - 1) = 0.1


def test_the_rembg_rows_come_from_a_model_that_carries_u2netp(tmp_path, three_images):
    """A u2netp_guided model carries U^2-Netp (its frozen prior): the evaluation then adds rembg's two
    rows, computed the way rembg does (the mask; closed-form in the mask's trimap), with no file at all."""
    from dugray.evaluation import EvalConfig, prepare, run
    from dugray.evaluation.data import load_item
    from dugray.evaluation.peers import peer_rows

    torch.manual_seed(0)
    save_checkpoint(create_model("u2netp_guided", widths=(8, 16)), tmp_path / "guided.pt")
    config = EvalConfig(rounds=0, clicks=0, ablations=False, closed_form=False, figures=0, split="test")
    prep = prepare(three_images, str(tmp_path / "guided.pt"), config=config)
    assert prep.peer_net is prep.models["main"][0].prior_net
    summary = run(prep, tmp_path / "out", config, progress=False)
    assert {"rembg_u2netp", "rembg_u2netp_am"} <= set(summary["methods"])
    rows = {(r["image"], r["method"]): r for r in _read_csv(tmp_path / "out" / "per_image.csv")}
    name = summary["images"][0]
    ex = load_item(prep.rows[0], prep.names[0], None)
    (_, mask, _), (_, am, _) = peer_rows(ex.image, prep.peer_net)
    saved = cv2.imread(str(tmp_path / "out" / "mattes" / "rembg_u2netp" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(saved, mask)  # what is scored is rembg's mask, recomputed here
    assert float(rows[(name, "rembg_u2netp")]["whole_sad"]) == pytest.approx(
        np.abs(mask / 255.0 - ex.gt / 255.0).sum() / 1000, rel=1e-6
    )


def test_session_set_reads_json_values_and_keeps_words():
    from dugray.evaluation.evaluate_job import parse_session_set

    got = parse_session_set([["network_rounds=first", "k=12"], ['solve_params={"weight_scale": 2.5}', "solve=false"]])
    assert got == {"network_rounds": "first", "k": 12, "solve_params": {"weight_scale": 2.5}, "solve": False}
    assert SessionConfig.from_dict(got).solve_params.weight_scale == 2.5
