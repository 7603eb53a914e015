"""Train dugray: stage 1 (matting network with the NIG head) and stage 2 (refiner) on Ray Train.

Examples:
    python jobs/train.py --data DATA_DIR --out runs/exp1 --epochs 10
    python jobs/train.py --data DATA_DIR --out runs/exp1 --epochs 20 --resume     (continue: the same --out)
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/train.py --data /abs/DATA \\
        --out /abs/runs/exp1 --cpus-per-worker 0.5       (on a `ray start` cluster; Ray 2.60 needs the token)
    python jobs/train.py --config jobs/configs/default_model.yaml --out runs/default   (the shipped model's recipe)
    python jobs/train.py --config jobs/configs/paper_p3m_modnet.yaml --data DIR --init-from modnet-official:CKPT \\
        --dry-run

Flags override the --config file (YAML or JSON, keys of dugray.train.config.TrainConfig).
Exit codes: 0 done, 2 bad arguments / config / data, 1 training failed.
"""

from __future__ import annotations

import argparse
import json
import sys

FLAGS = {  # flag -> (config key, type, help)
    "--data": ("data", str, "dataset folder (any supported layout) or manifest .parquet"),
    "--extra-data": ("extra_data", "list", "more datasets mixed into training (repeatable)"),
    "--extra-repeat": ("extra_repeat", int, "times each extra dataset's rows appear per epoch"),
    "--extra-fraction": (
        "extra_fraction",
        float,
        "share of training rows from the extra datasets (overrides --extra-repeat)",
    ),
    "--jitter-p": ("jitter_p", float, "probability of a colour jitter per training image"),
    "--init-from": (
        "init_from",
        str,
        "warm start: 'default', a training output folder, a checkpoint, "
        "or modnet-official:PATH (official MODNet weights, stage 1, arch modnet)",
    ),
    "--out": ("out", str, "output folder: weights, MLflow store, Ray checkpoints"),
    "--stage": ("stage", str, "1, 2 or all"),
    "--epochs": ("epochs", int, "epochs of stage 1 (and of stage 2 unless --stage2-epochs)"),
    "--stage2-epochs": ("stage2_epochs", int, "epochs of stage 2"),
    "--stage2-noise": (
        "stage2_noise",
        str,
        "how stage 2 draws gamma_s: aleatoric (the method), fixed or none (Table 4)",
    ),
    "--matting": (
        "matting",
        str,
        "stage 2's frozen matting network when stage 1 is not run here "
        "('default', a training output folder or a checkpoint)",
    ),
    "--samples-per-epoch": ("samples_per_epoch", int, "examples per epoch (0 = every train row)"),
    "--num-workers": ("num_workers", int, "Ray Train workers"),
    "--cpus-per-worker": ("cpus_per_worker", float, "CPUs each worker reserves (fractions work)"),
    "--data-cpus": ("data_cpus", float, "CPUs set aside for the Ray Data tasks beside the workers"),
    "--prefetch-batches": ("prefetch_batches", int, "batches each worker prepares ahead"),
    "--batch-size": ("batch_size", int, "per-worker batch size"),
    "--crop": ("crop", int, "training crop size (multiple of 32)"),
    "--lr": ("lr", float, "stage-1 learning rate"),
    "--arch": ("arch", str, "matting backbone (see dugray.models.available_models())"),
    "--loss": ("loss", str, "nig (the method) or l1 (ablation)"),
    "--seed": ("seed", int, "random seed"),
    "--experiment": ("experiment", str, "MLflow experiment name"),
    "--storage": ("storage", str, "Ray Train storage path shared by all nodes"),
    "--max-failures": ("max_failures", int, "worker failures to recover from"),
    "--address": ("address", str, "Ray cluster to join (default: RAY_ADDRESS, else a local Ray)"),
}


PROG = "train.py"


def parse(argv, prog: str = PROG):
    """The train.py flags parsed from ``argv``: --config plus one flag per TrainConfig key (None when not given)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML/JSON file of TrainConfig keys")
    for flag, (key, typ, help_) in FLAGS.items():
        if typ == "list":
            p.add_argument(flag, dest=key, action="append", help=help_)
        else:
            p.add_argument(flag, dest=key, type=typ, help=help_)
    p.add_argument("--use-gpu", dest="use_gpu", action="store_true", default=None, help="one GPU per worker")
    p.add_argument(
        "--amp",
        dest="amp",
        action="store_true",
        default=None,
        help="mixed precision (autocast: fp16 on CUDA, bf16 on CPU)",
    )
    p.add_argument(
        "--resume",
        dest="resume",
        action="store_true",
        default=None,
        help="continue from the latest checkpoint in --out",
    )
    p.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="check the recipe without Ray: open the datasets, build the network, one step of each "
        "stage on small crops; exit 0 if it would run (dugray.train.dry_run)",
    )
    return p.parse_args(argv)


def main(argv=None, prog: str = PROG) -> int:
    """Parse ``argv``, train, print the summary; returns the exit code (0, 1 failed, 2 bad input)."""
    args = parse(argv, prog)
    # this is also `dugray train`: the job's modules load once the flags parse, and only those its path needs,
    # so --help and a bad flag answer at once (the config brings OpenCV and pyarrow, the models torch,
    # ingest and launch Ray, pretrained subprocess / zipfile / tempfile)
    from dugray.train.config import TrainConfig, check_official_init, load_config_file

    try:
        values = load_config_file(args.config) if args.config else {}
        values.update({k: v for k, v in vars(args).items() if k not in ("config", "dry_run") and v is not None})
        cfg = TrainConfig.from_dict(values)
        if not cfg.data:
            raise ValueError("--data is required (or 'data' in --config)")
        if args.dry_run:
            from dugray.train.dry_run import dry_run

            print(f"dry run of {args.config or 'the flags'}")
            try:
                dry_run(cfg, args.arch)
            except (ValueError, FileNotFoundError, OSError):
                raise
            except Exception as exc:  # the recipe would fail: say why in one line
                raise RuntimeError(f"dry run failed: {type(exc).__name__}: {exc}") from exc
            return 0
        from dugray.data.manifest import load_or_build

        load_or_build(cfg.data)  # fail fast, with the layout error, before Ray starts
        if cfg.pretrained:  # resolved here, once: workers get the file's absolute path
            from dugray.pretrained import resolve

            cfg.pretrained = str(resolve(cfg.pretrained).resolve())
        if cfg.init_from.startswith("modnet-official:"):
            check_official_init(cfg, args.arch)
        elif cfg.init_from:  # and with the loader's error (missing, unreadable, the wrong kind)
            from dugray.models import load_networks

            parts = tuple(
                p for p, stages in (("matting", "1 all"), ("refiner", "2 all")) if cfg.stage in stages.split()
            )
            load_networks(cfg.init_from, cfg.init_from, parts=parts)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as exc:  # CheckpointError, PretrainedError too
        print(f"{prog}: error: {(str(exc) or type(exc).__name__).splitlines()[0]}", file=sys.stderr)
        return 2
    from dugray.train.ingest import ClusterTooSmall
    from dugray.train.launch import run_training

    try:
        summary = run_training(cfg)
    except ClusterTooSmall as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero, keep the checkpoints
        print(
            f"{prog}: training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            file=sys.stderr,
        )
        print(f"{prog}: checkpoints are kept; rerun with --resume to continue", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k != "stages"}
            | {
                "weights": {s: v["weights"] for s, v in summary["stages"].items()},
                "metrics": {s: v["metrics"] for s, v in summary["stages"].items()},
            },
            indent=2,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
