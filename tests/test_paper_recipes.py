"""The paper's recipes (jobs/configs/paper_*.yaml) pass ``train.py --dry-run`` on tiny fake folders in
the real P3M-10k and Composition-1k layouts, from a fake checkpoint in the official MODNet format;
and a bad recipe, a missing or a malformed dataset fails in one line, before any cluster is used."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dugray.data.io import write_png
from dugray.train.config import TrainConfig, load_config_file
from dugray.train.train_job import main

ROOT = Path(__file__).resolve().parents[1]
P3M = ROOT / "jobs" / "configs" / "paper_p3m_modnet.yaml"
C1K = ROOT / "jobs" / "configs" / "paper_c1k.yaml"


def _pair(rng, size=64):
    """An image and a soft disc matte (a transition band, so stage 2 has patches to pick)."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2 + rng.uniform(-8, 8), xx - size / 2 + rng.uniform(-8, 8))
    alpha = np.clip((size / 3 - r) / 6 + 0.5, 0, 1)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (alpha * 255).astype(np.uint8)


def _write(folder: Path, stems, image_dir, alpha_dir, trimap_dir=None, image_ext=".jpg", seed=0):
    rng = np.random.default_rng(seed)
    for stem in stems:
        image, alpha = _pair(rng)
        (folder / image_dir).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / image_dir / f"{stem}{image_ext}"), image)
        write_png(folder / alpha_dir / f"{stem}.png", alpha)
        if trimap_dir:
            trimap = np.where(alpha == 255, 255, np.where(alpha == 0, 0, 128)).astype(np.uint8)
            write_png(folder / trimap_dir / f"{stem}.png", trimap)


@pytest.fixture(scope="module")
def p3m(tmp_path_factory) -> Path:
    """P3M-10k as released: train/{blurred_image,mask}, validation/P3M-500-P/{blurred_image,mask,trimap},
    validation/P3M-500-NP/{original_image,mask,trimap}."""
    root = tmp_path_factory.mktemp("data") / "P3M-10k"
    _write(root / "train", ["p_0001", "p_0002", "p_0003"], "blurred_image", "mask")
    _write(root / "validation" / "P3M-500-P", ["p_1001", "p_1002"], "blurred_image", "mask", "trimap", seed=1)
    _write(root / "validation" / "P3M-500-NP", ["1003", "1004"], "original_image", "mask", "trimap", seed=2)
    return root


@pytest.fixture(scope="module")
def c1k(tmp_path_factory) -> Path:
    """The Adobe set as released plus DIM's composed test set, its manifest built as the docs say
    (COCO backgrounds, N per foreground); returns the manifest."""
    base = tmp_path_factory.mktemp("data")
    root = base / "Combined_Dataset"
    _write(root / "Training_set" / "Adobe-licensed images", ["dog", "lamp"], "fg", "alpha")
    _write(root / "Training_set" / "Other", ["net"], "fg", "alpha", seed=3)
    test = root / "Test_set" / "Adobe-licensed images"
    _write(test, ["cat_0", "cat_1"], "merged", "trimaps", image_ext=".png", seed=4)
    _write(test, ["cat"], "fg", "alpha_copy", seed=4)
    rng = np.random.default_rng(5)
    for i in range(3):
        (base / "coco" / "train2014").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(base / "coco" / "train2014" / f"COCO_train2014_{i:012d}.jpg"), _pair(rng)[0])
    from dugray.data.make_data import main as make_data

    assert (
        make_data(["manifest", str(root), "--backgrounds", str(base / "coco" / "train2014"), "--n-bg-per-fg", "2"]) == 0
    )
    return root / "manifest.parquet"


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory) -> Path:
    """A checkpoint in the official MODNet format at the official sizes (what the recipes load):
    DataParallel's ``module.`` prefix, the backbone twice, the 1-channel matte conv."""
    from dugray.models.modnet import MODNet

    torch.manual_seed(0)
    body = {k: v for k, v in MODNet(user_inputs=False).state_dict().items() if not k.startswith("head.")}
    sd = {f"module.{k}": v for k, v in body.items()}
    sd.update({f"module.lr_branch.{k}": v for k, v in body.items() if k.startswith("backbone.")})
    sd["module.f_branch.conv_f.1.layers.0.weight"] = torch.randn(1, 16, 1, 1)
    sd["module.f_branch.conv_f.1.layers.0.bias"] = torch.zeros(1)
    path = tmp_path_factory.mktemp("pretrained") / "modnet_photographic_portrait_matting.ckpt"
    torch.save(sd, path)
    return path


def dry(capsys, config, data, *extra):
    code = main(["--config", str(config), "--data", str(data), *map(str, extra), "--dry-run"])
    out, err = capsys.readouterr()
    return code, out, err


def test_p3m_recipe_is_the_papers():
    """What section 4.1 states for P3M-10k / MODNet, read back through TrainConfig."""
    cfg = TrainConfig.from_dict(load_config_file(P3M))
    assert (cfg.arch, cfg.lr, cfg.epochs, cfg.crop) == ("modnet", 1e-3, 100, 512)
    assert cfg.init_from.startswith("modnet-official:")
    assert cfg.batch_size * cfg.num_workers == 16 and cfg.num_workers == 2 and cfg.use_gpu
    assert min(cfg.flip_p, cfg.blur_p, cfg.sharpen_p, cfg.shadow_p) > 0


def test_p3m_recipe_dry_run_from_official_weights(p3m, official_ckpt, capsys):
    code, out, err = dry(capsys, P3M, p3m, "--init-from", f"modnet-official:{official_ckpt}")
    assert code == 0, err
    assert "p3m10k/train 3" in out and "p3m500p/test 2" in out and "p3m500np/test 2" in out
    assert "train 'train' 3 rows, validation 'test' 4 rows" in out
    assert f"from modnet-official:{official_ckpt}" in out and "stage 1: modnet" in out
    assert "one step on 2 crops of 64 px (the recipe's batch 8 of 512 px" in out
    assert "stage 2: refiner hrnet_lite" in out and out.rstrip().endswith("no Ray started")


def test_c1k_recipe_dry_run_from_the_manifest(c1k, official_ckpt, capsys):
    code, out, err = dry(capsys, C1K, c1k, "--init-from", f"modnet-official:{official_ckpt}")
    assert code == 0, err
    # 3 training foregrounds x 2 backgrounds, composited on the fly; the composed test set
    assert "comp1k/train 6" in out and "comp1k/test 2" in out
    assert "blur 0 sharpen 0 shadow 0" in out and "stage 2:" in out


@pytest.mark.slow
def test_train_py_dry_run_entry_point(p3m, official_ckpt):
    """``python jobs/train.py ... --dry-run``, as the docs give it: exit 0 and the checks on stdout
    (slow: a fresh interpreter imports torch and Ray, 20-40 s on 2 shared cores)."""
    proc = subprocess.run(
        [
            sys.executable,
            "jobs/train.py",
            "--config",
            str(P3M),
            "--data",
            str(p3m),
            "--init-from",
            f"modnet-official:{official_ckpt}",
            "--dry-run",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"dry run of {P3M}") and "dry run passed" in proc.stdout


def one_line_error(code, err):
    assert code == 2
    assert err.startswith("train.py: error:") and len(err.strip().splitlines()) == 1, err
    return err


def test_missing_dataset_folder_fails_in_one_line(tmp_path, official_ckpt, capsys):
    code, _, err = dry(capsys, P3M, tmp_path / "P3M-10k", "--init-from", f"modnet-official:{official_ckpt}")
    assert str(tmp_path / "P3M-10k") in one_line_error(code, err)


def test_malformed_dataset_folder_fails_in_one_line(tmp_path, official_ckpt, capsys):
    (tmp_path / "P3M-10k" / "train" / "images").mkdir(parents=True)  # not P3M's blurred_image/ + mask/
    code, _, err = dry(capsys, P3M, tmp_path / "P3M-10k", "--init-from", f"modnet-official:{official_ckpt}")
    assert "no matting dataset layout recognised" in one_line_error(code, err)


def test_dataset_without_the_validation_split_fails(p3m, official_ckpt, capsys):
    code, _, err = dry(capsys, P3M, p3m / "train", "--init-from", f"modnet-official:{official_ckpt}")
    assert "no 'test' rows" in one_line_error(code, err)


def test_missing_official_weights_fail_in_one_line(p3m, tmp_path, capsys):
    code, _, err = dry(capsys, P3M, p3m, "--init-from", f"modnet-official:{tmp_path / 'modnet.ckpt'}")
    assert "official MODNet checkpoint not found" in one_line_error(code, err)


@pytest.mark.parametrize(
    "line, says",
    [
        ("crop: 500", "crop must be a multiple of 32"),
        ("blur_p: 1.5", "blur_p must be in [0, 1]"),
        ("learning_rate: 0.001", "learning_rate"),
    ],
)
def test_broken_config_fails_in_one_line(p3m, tmp_path, capsys, line, says):
    bad = tmp_path / "bad.yaml"
    bad.write_text(P3M.read_text() + line + "\n")
    code, _, err = dry(capsys, bad, p3m)
    assert says in one_line_error(code, err)


def test_the_recipes_augmentation_reaches_the_training_examples():
    """flip/blur/sharpen/shadow keys are what the training pipeline augments with (the defaults
    are the pipeline's own); the validation set is never augmented."""
    from dugray.data.augment import AugmentConfig
    from dugray.train.config import load_config_file
    from dugray.train.ingest import NO_AUGMENT, pipeline_config

    assert TrainConfig().augment_config() == AugmentConfig()
    cfg = TrainConfig.from_dict({**load_config_file(C1K), "data": "x"})
    augment = pipeline_config(cfg, train=True).augment
    assert (augment.flip_p, augment.blur_p, augment.sharpen_p, augment.shadow_p) == (
        cfg.flip_p,
        cfg.blur_p,
        cfg.sharpen_p,
        cfg.shadow_p,
    )
    assert augment.blur_p == 0 and pipeline_config(cfg, train=False).augment == NO_AUGMENT


def test_a_dry_run_names_the_example_it_cannot_read(tmp_path, official_ckpt, capsys):
    """Training skips an unreadable example; its dry run stops at it and names the file."""
    root = tmp_path / "P3M-10k"
    _write(root / "train", ["p_0001", "p_0002"], "blurred_image", "mask")
    _write(root / "validation" / "P3M-500-P", ["p_1001", "p_1002"], "blurred_image", "mask", "trimap", seed=1)
    _write(root / "validation" / "P3M-500-NP", ["1003", "1004"], "original_image", "mask", "trimap", seed=2)
    for image in (root / "train" / "blurred_image").iterdir():
        image.write_bytes(b"not a JPEG")
    code, out, err = dry(capsys, P3M, root, "--init-from", f"modnet-official:{official_ckpt}")
    assert code == 2 and "error: cannot read example p_000" in err and "/train/mask/p_000" in err, err
    assert "stage 1:" not in out
