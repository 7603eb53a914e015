"""The training driver: both stages on Ray Train, tracked in MLflow, models registered.

One MLflow parent run per training job, one nested run per stage (parameters,
per-epoch metrics from rank 0, sample visualisations, the resolved config), and both
networks logged and registered (``matting_model_name`` / ``refiner_model_name``,
default ``dugray-matting`` / ``dugray-refiner``) so serving can load ``models:/...``.
The final weights are also written to ``<out>/matting.pt`` and ``<out>/refiner.pt``.

Tracking store: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<out>/mlflow.db`` with
artifacts under ``<out>/mlartifacts``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from pathlib import Path

import ray
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from dugray.data.io import write_atomic
from dugray.models import load_checkpoint, read_checkpoint
from dugray.pipeline import SkipLedger
from dugray.train.config import TrainConfig
from dugray.train.ingest import EpochClock, check_resources, data_config, on_this_node, split_rows, training_datasets
from dugray.train.stage1 import stage1_loop
from dugray.train.stage2 import stage2_loop
from dugray.train.worker import LoopArgs, manifest_table

STAGES = {"1": stage1_loop, "2": stage2_loop}


def tracking_uri(out: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store ``<out>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out / 'mlflow.db'}"


_PRIVATE_ADDRESS = None
"""The GCS address of the private Ray that :func:`ensure_ray` started in this process, if any."""

QUIET_HOOK = "dugray.train.worker_setup.quiet_blind_cleaner"
"""Run by every worker process of a private Ray (a light module: each process imports it)."""


def ensure_ray(cfg: TrainConfig) -> None:
    """Join the cluster named by ``cfg.address`` or RAY_ADDRESS (``ray job submit`` sets it),
    else start a private local Ray sized for the job: never a stray cluster by accident.

    Every process of the job is then told the one cluster by address (RAY_ADDRESS in the
    driver's environment and in the job's runtime environment, which Ray hands to every worker):
    Ray Train v2's placement-group cleaner, a detached actor, asks Ray's state API whether the
    run's controller still lives, and without RAY_ADDRESS that API takes the cluster that the
    machine's latest ``ray start`` wrote in /tmp/ray/ray_current_cluster, which on a shared
    machine can be someone else's: the controller is not found there, and the cleaner removed
    the run's placement group, killing the training. "auto" is resolved once, here.
    """
    global _PRIVATE_ADDRESS
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if not cfg.address and address == _PRIVATE_ADDRESS:  # our own private Ray, shut down since: a new one
        address = None
    if address == "auto":
        ray.init(address="auto")
        address = ray.get_runtime_context().gcs_address
        ray.shutdown()
    if address:
        ray.init(address=address, runtime_env=address_env(address))
    else:
        cpus = int(max(os.cpu_count() or 1, cfg.num_workers * cfg.cpus_per_worker + cfg.data_cpus) + 0.999)
        port = free_port()  # the GCS's port chosen here, so that the workers can be told it
        with environment(RAY_GCS_SERVER_PORT=str(port)):
            # address="local": always a new instance; a bare ray.init() would join any cluster
            # already running on this machine (and refuse num_cpus)
            runtime_env = {**(address_env(f"127.0.0.1:{port}") or {}), "worker_process_setup_hook": QUIET_HOOK}
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env)
        _PRIVATE_ADDRESS = ray.get_runtime_context().gcs_address
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    ray.data.DataContext.get_current().enable_progress_bars = False


def address_env(address: str) -> dict | None:
    """The runtime environment that gives every worker of the job RAY_ADDRESS=``address``; None
    when the submitted job's own runtime environment sets RAY_ADDRESS already (Ray refuses to
    merge the same variable from both)."""
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    if "RAY_ADDRESS" in ((job.get("runtime_env") or {}).get("env_vars") or {}):
        return None
    return {"env_vars": {"RAY_ADDRESS": address}}


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def environment(**values):
    """Environment variables set for the block, restored after it."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def latest_checkpoint(storage: str, stage: str) -> str:
    """The newest complete checkpoint directory any earlier run of ``stage`` left in ``storage``.

    Complete means both files load (``weights_only``): a checkpoint half-copied when the job
    was killed is skipped with a warning, and the next newest one is used.
    """
    found = [p for p in Path(storage).glob(f"stage{stage}-*/checkpoint_*") if p.is_dir()]  # not Ray's .json index
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for d in found:
        problem = checkpoint_problem(d)
        if problem is None:
            return str(d)
        warnings.warn(f"skipping incomplete checkpoint {d}: {problem}", stacklevel=2)
        print(f"[train] skipping incomplete checkpoint {d}: {problem}", flush=True)
    return ""


def checkpoint_problem(d: Path) -> str | None:
    """Why the checkpoint directory ``d`` cannot be resumed from, or None when it can."""
    try:
        read_checkpoint(d / "model.pt")
        state = torch.load(d / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - missing, truncated, not ours: all mean "skip it"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "epoch"} <= set(state):
        return "state.pt lacks the optimiser, schedule or epoch"
    return None


def fit_stage(cfg: TrainConfig, stage: str, storage: str, args: LoopArgs) -> tuple[str, dict]:
    """Run one stage on Ray Train; returns (checkpoint directory, last metrics).

    The datasets are built here, once, on the driver (:mod:`dugray.train.ingest`), with
    the run's epoch clock and skip ledger pinned to this node."""
    table = manifest_table(cfg)
    args.clock, args.ledger = on_this_node(EpochClock).remote(), on_this_node(SkipLedger).remote()
    args.train_rows = split_rows(table, cfg.train_split).num_rows
    trainer = TorchTrainer(
        STAGES[stage],
        train_loop_config={"args": args},
        datasets=training_datasets(cfg, table, args.clock, args.ledger),
        dataset_config=data_config(cfg),
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker={
                "CPU": cfg.cpus_per_worker,
                **({"GPU": 1} if cfg.use_gpu else {}),
                **cfg.worker_resources,
            },
        ),
        run_config=RunConfig(
            name=f"stage{stage}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=storage,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is not None:
        return result.checkpoint.path, dict(result.metrics or {})
    if args.resume_path:  # every epoch was already done: the resumed checkpoint is final
        return args.resume_path, {}
    raise RuntimeError(f"stage {stage} finished without a checkpoint")


def run_training(cfg: TrainConfig) -> dict:
    """Train the configured stage(s); returns paths, run ids and final metrics."""
    import mlflow

    cfg.validate()
    # workers run in other folders (and on other nodes): hand them absolute paths
    cfg.data = _absolute(cfg.data)
    cfg.extra_data = [_absolute(p) for p in cfg.extra_data]
    if (
        cfg.init_from
        and cfg.init_from != "default"
        and not cfg.init_from.startswith(("models:", "runs:", "modnet-official:"))
    ):
        cfg.init_from = _absolute(cfg.init_from)
    if cfg.matting and cfg.matting != "default" and not cfg.matting.startswith(("models:", "runs:")):
        cfg.matting = _absolute(cfg.matting)
    out = Path(cfg.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = cfg.storage or str(out / "ray")
    uri = tracking_uri(out)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(cfg.experiment) is None:
        mlflow.create_experiment(cfg.experiment, artifact_location=(out / "mlartifacts").as_uri())
    mlflow.set_experiment(cfg.experiment)
    ensure_ray(cfg)
    check_resources(cfg)

    state_file = out / "run.json"
    previous = json.loads(state_file.read_text()) if cfg.resume and state_file.is_file() else {}
    stages = ["1", "2"] if cfg.stage == "all" else [cfg.stage]
    summary = {"out": str(out), "tracking_uri": uri, "stages": {}}
    with mlflow.start_run(run_id=previous.get("parent_run_id"), run_name=cfg.run_name or None) as parent:
        summary["parent_run_id"] = parent.info.run_id
        if not previous:
            mlflow.log_params(_flat_params(cfg))
        mlflow.log_dict(cfg.to_dict(), "config.json")
        for stage in stages:
            run_id = previous.get("stage_runs", {}).get(stage)
            with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"stage{stage}", nested=True) as run:
                if not run_id:
                    mlflow.log_params(_flat_params(cfg))
                resume = latest_checkpoint(storage, stage) if cfg.resume else ""
                matting = summary["stages"].get("1", {}).get("checkpoint") or previous.get("matting_checkpoint", "")
                if stage == "2" and not matting and not cfg.matting:
                    raise FileNotFoundError(
                        "stage 2 needs a trained matting network: run stage 1 first (same --out) or give --matting"
                    )
                args = LoopArgs(
                    config=cfg,
                    stage=stage,
                    tracking_uri=uri,
                    mlflow_run_id=run.info.run_id,
                    resume_path=resume,
                    matting_checkpoint=matting,
                )
                print(f"[train] stage {stage}: {start_of(cfg, stage, resume)}", flush=True)
                start = time.perf_counter()
                ckpt, metrics = fit_stage(cfg, stage, storage, args)
                wall = time.perf_counter() - start
                mlflow.log_metric("wall_seconds", wall)
                final = _export(stage, ckpt, out, cfg)
                summary["stages"][stage] = {
                    "checkpoint": ckpt,
                    "weights": str(final),
                    "metrics": metrics,
                    "run_id": run.info.run_id,
                    "wall_seconds": wall,
                }
                previous.setdefault("stage_runs", {})[stage] = run.info.run_id
                if stage == "1":
                    previous["matting_checkpoint"] = ckpt
                previous["parent_run_id"] = parent.info.run_id
                write_atomic(state_file, json.dumps(previous, indent=2).encode())
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str).encode())
    return summary


def _export(stage: str, ckpt_dir: str, out: Path, cfg: TrainConfig) -> Path:
    """Copy the final weights next to the run, log the model to MLflow and register it."""
    import mlflow

    name = "matting" if stage == "1" else "refiner"
    final = out / f"{name}.pt"
    with ray.train.Checkpoint(ckpt_dir).as_directory() as d:
        write_atomic(final, (Path(d) / "model.pt").read_bytes())  # never a half-copied final file
    model = load_checkpoint(final)
    registered = cfg.matting_model_name if stage == "1" else cfg.refiner_model_name
    mlflow.log_artifact(str(final), "weights")
    # pickle, not pt2: a traced pt2 graph would freeze the input size; the plain
    # checkpoint rides along (extra_files) for weights-only loading by dugray itself.
    mlflow.pytorch.log_model(
        model,
        name=name,
        registered_model_name=registered,
        serialization_format="pickle",
        extra_files=[str(final)],
        pip_requirements=model_requirements(),
    )
    return final


MODEL_REQUIREMENTS = ("dugray", "torch", "numpy", "cloudpickle", "mlflow")
"""What a logged (pickled) model needs to load: the packages MLflow's own inference finds."""


def model_requirements() -> list[str]:
    """The logged model's pip requirements, pinned to what is installed. Given, not inferred:
    MLflow infers them by loading the model in a subprocess that records its imports, 3.6 s
    per stage on 2 cores against 0.06 s, for the same list."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in MODEL_REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # dugray from a checkout on PYTHONPATH (a Ray job's working_dir)
            pins.append(name)
    return pins


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def start_of(cfg, stage: str, resume: str) -> str:
    """Where a stage starts, in words: a resumed checkpoint, pretrained weights, a warm start or nothing."""
    if resume:
        return f"resuming from {resume}"
    parts = []
    if stage == "1" and cfg.pretrained:
        parts.append(f"{cfg.arch} with pretrained weights from {cfg.pretrained}")
    if cfg.init_from:
        parts.append(f"warm start from {cfg.init_from}")
    return ", ".join(parts) or "from scratch"


def _flat_params(cfg: TrainConfig) -> dict:
    return {k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in cfg.to_dict().items()}
