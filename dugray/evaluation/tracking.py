"""Log one evaluation to MLflow: parameters, ``<method>/<protocol>/<metric>`` means, artifacts.

Tracking store: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<out>/mlflow.db``
(artifacts then under ``<out>/mlartifacts``), as the training job does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .scoring import PROTOCOLS

ARTIFACT_FILES = ("report.md", "per_image.csv", "summary.json", "figure7.png")


def tracking_uri(out: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store ``<out>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(out).resolve() / 'mlflow.db'}"


def metrics_of(summary: dict) -> dict[str, float]:
    """Flat MLflow metrics: ``<method>/<protocol>/<metric>``, ``<method>/auroc_epistemic`` ..."""
    out = {}
    for method, e in summary["methods"].items():
        for p, keys in PROTOCOLS.items():
            for k in keys:
                if e[p][k] is not None:
                    out[f"{method}/{p}/{k}"] = e[p][k]
        for k in ("auroc_epistemic", "mean_epistemic", "seconds"):
            if e[k] is not None:
                out[f"{method}/{k}"] = e[k]
    return out


def log_run(
    out: Path, summary: dict, params: dict, experiment: str = "dugray-eval", run_name: str | None = None
) -> str:
    """One MLflow run holding the whole evaluation; returns its run id."""
    import mlflow

    out = Path(out).resolve()
    mlflow.set_tracking_uri(tracking_uri(out))
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(out / "mlartifacts").as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in params.items()})
        mlflow.log_metrics(metrics_of(summary))
        for model, c in summary["figure7"].items():
            for x, sad, epi in zip(c["selections"], c["whole_sad"], c["mean_epistemic"]):
                if sad is not None:
                    mlflow.log_metric(f"figure7/{model}/whole/sad", sad, step=x)
                if epi is not None:
                    mlflow.log_metric(f"figure7/{model}/mean_epistemic", epi, step=x)
        for name in ARTIFACT_FILES:
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name))
        for p in sorted(out.glob("steps_*.png")):
            mlflow.log_artifact(str(p), "steps")
        if (out / "mattes").is_dir():
            mlflow.log_artifacts(str(out / "mattes"), "mattes")
        return run.info.run_id
