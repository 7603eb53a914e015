"""Train dugray: stage 1 (matting network with the NIG head) and stage 2 (refiner) on Ray Train.

Examples:
    python jobs/train.py --data DATA_DIR --out runs/exp1 --epochs 10
    ray job submit --working-dir . -- python jobs/train.py --data /abs/DATA --out /abs/runs/exp1 --num-workers 2
    python jobs/train.py --config configs/default.yaml --resume

Flags override the --config file (YAML or JSON, keys of dugray.train.config.TrainConfig).
Exit codes: 0 done, 2 bad arguments / config / data, 1 training failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = {  # flag -> (config key, type, help)
    "--data": ("data", str, "dataset folder (any supported layout) or manifest .parquet"),
    "--extra-data": ("extra_data", "list", "more datasets mixed into training (repeatable)"),
    "--extra-repeat": ("extra_repeat", int, "times each extra dataset's rows appear per epoch"),
    "--extra-fraction": ("extra_fraction", float, "share of training rows from the extra datasets (overrides --extra-repeat)"),
    "--jitter-p": ("jitter_p", float, "probability of a colour jitter per training image"),
    "--init-from": ("init_from", str, "warm start: 'default', a training output folder or a checkpoint"),
    "--out": ("out", str, "output folder: weights, MLflow store, Ray checkpoints"),
    "--stage": ("stage", str, "1, 2 or all"),
    "--epochs": ("epochs", int, "epochs of stage 1 (and of stage 2 unless --stage2-epochs)"),
    "--stage2-epochs": ("stage2_epochs", int, "epochs of stage 2"),
    "--samples-per-epoch": ("samples_per_epoch", int, "examples per epoch (0 = every train row)"),
    "--num-workers": ("num_workers", int, "Ray Train workers"),
    "--cpus-per-worker": ("cpus_per_worker", float, "CPUs each worker reserves"),
    "--batch-size": ("batch_size", int, "per-worker batch size"),
    "--crop": ("crop", int, "training crop size (multiple of 32)"),
    "--lr": ("lr", float, "stage-1 learning rate"),
    "--model": ("model", str, "matting backbone (see dugray.models.available_models())"),
    "--loss": ("loss", str, "nig (the method) or l1 (ablation)"),
    "--seed": ("seed", int, "random seed"),
    "--experiment": ("experiment", str, "MLflow experiment name"),
    "--storage": ("storage", str, "Ray Train storage path shared by all nodes"),
    "--max-failures": ("max_failures", int, "worker failures to recover from"),
    "--address": ("address", str, "Ray cluster to join (default: RAY_ADDRESS, else a local Ray)"),
}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML/JSON file of TrainConfig keys")
    for flag, (key, typ, help_) in FLAGS.items():
        if typ == "list":
            p.add_argument(flag, dest=key, action="append", help=help_)
        else:
            p.add_argument(flag, dest=key, type=typ, help=help_)
    p.add_argument("--use-gpu", dest="use_gpu", action="store_true", default=None, help="one GPU per worker")
    p.add_argument("--resume", dest="resume", action="store_true", default=None,
                   help="continue from the latest checkpoint in --out")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    from dugray.train.config import TrainConfig, load_config_file

    try:
        values = load_config_file(args.config) if args.config else {}
        values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
        cfg = TrainConfig.from_dict(values)
        if not cfg.data:
            raise ValueError("--data is required (or 'data' in --config)")
        from dugray.data.manifest import load_or_build

        load_or_build(cfg.data)  # fail fast, with the layout error, before Ray starts
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"train.py: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    from dugray.train.launch import run_training

    try:
        summary = run_training(cfg)
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero, keep the checkpoints
        print(f"train.py: training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        print("train.py: checkpoints are kept; rerun with --resume to continue", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k != "stages"} | {
        "weights": {s: v["weights"] for s, v in summary["stages"].items()},
        "metrics": {s: v["metrics"] for s, v in summary["stages"].items()},
    }, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
