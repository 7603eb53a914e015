"""Training data mix and warm start, without Ray: the ratio flag, cycling, init_from."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from dugray.models import create_model, create_refiner, save_checkpoint
from dugray.train.config import TrainConfig
from dugray.train.stage1 import initial_network
from dugray.train.stage2 import initial_refiner
from dugray.train.worker import cycle_rows, extra_rows, manifest_table


@pytest.mark.parametrize("n_main,fraction,n_extra", [(400, 0.6, 2), (400, 0.5, 1), (90, 0.25, 3)])
def test_extra_rows_give_the_requested_fraction(n_main, fraction, n_extra):
    k = extra_rows(n_main, fraction, n_extra)
    assert abs(k * n_extra / (n_main + k * n_extra) - fraction) < 0.01


def test_cycle_rows_repeats_in_order():
    t = pa.table({"name": ["a", "b", "c"]})
    assert cycle_rows(t, 7)["name"].to_pylist() == ["a", "b", "c", "a", "b", "c", "a"]
    assert cycle_rows(t, 2)["name"].to_pylist() == ["a", "b"]


def test_manifest_mix_uses_only_the_extra_train_split(synth_dir):
    plain = synth_dir / "plain"
    cfg = TrainConfig(data=str(plain), extra_data=[str(synth_dir / "comp1k")], extra_fraction=0.5)
    table = manifest_table(cfg)
    layouts = np.array(table["layout"].to_pylist())
    splits = np.array(table["split"].to_pylist())
    n_main_train = int(np.sum((layouts == "plain") & (splits == "train")))
    extra = layouts == "comp1k"
    assert set(splits[extra]) == {"train"}
    assert int(extra.sum()) == n_main_train  # 50 % of the training rows


@pytest.mark.parametrize(
    "bad", [{"extra_fraction": 1.0}, {"extra_fraction": -0.1}, {"extra_fraction": 0.3}, {"jitter_p": 1.5}]
)
def test_bad_mix_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        TrainConfig.from_dict({"data": "x", **bad})  # extra_fraction without extra_data is an error too


def test_init_from_a_training_folder_starts_from_its_weights(tmp_path):
    net = create_model("unet", widths=(8, 16, 32), head_mid=4)
    ref = create_refiner("hrnet_lite")
    save_checkpoint(net, tmp_path / "matting.pt")
    save_checkpoint(ref, tmp_path / "refiner.pt")
    cfg = TrainConfig(data="x", init_from=str(tmp_path), arch="modnet_lite")
    warm = initial_network(cfg)
    assert type(warm) is type(net)  # the checkpoint's architecture wins over cfg.arch
    for (k, v), (k2, v2) in zip(net.state_dict().items(), warm.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    warm_ref = initial_refiner(cfg)
    assert all(torch.equal(v, v2) for v, v2 in zip(ref.state_dict().values(), warm_ref.state_dict().values()))
    fresh = initial_network(TrainConfig(data="x", arch="modnet_lite"))
    assert type(fresh).__name__ != type(net).__name__
