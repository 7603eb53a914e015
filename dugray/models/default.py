"""The shipped default model, and loading a model from wherever the user keeps it.

``load_default()`` loads the weights that ship inside the package (``dugray/weights/``),
produced by this project's own training job (the README gives the command).
``load_model(uri)`` accepts the default, a checkpoint file, a training output folder,
or an MLflow model URI (``models:/dugray-matting/1``, ``runs:/<id>/matting``).
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from .checkpoint import load_checkpoint

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEFAULT = "default"


def default_paths() -> dict[str, Path]:
    return {"matting": WEIGHTS / "matting.pt", "refiner": WEIGHTS / "refiner.pt"}


def load_default(refiner: bool = True) -> tuple[nn.Module, nn.Module | None]:
    """(matting network, refiner or None) from the weights shipped in the package."""
    paths = default_paths()
    if not paths["matting"].is_file():
        raise FileNotFoundError(f"no default model at {paths['matting']}: reinstall dugray or pass a checkpoint")
    net = load_checkpoint(paths["matting"])
    ref = load_checkpoint(paths["refiner"]) if refiner and paths["refiner"].is_file() else None
    return net, ref


def load_model(uri: str | None = None, kind: str = "matting", tracking_uri: str | None = None) -> nn.Module:
    """One network (``kind`` 'matting' or 'refiner') from a URI, path or 'default'.

    MLflow URIs resolve against ``tracking_uri``, else MLFLOW_TRACKING_URI / MLflow's default.
    """
    if not uri or uri == DEFAULT:
        return load_checkpoint(default_paths()[kind])
    if "://" in uri or uri.startswith(("models:", "runs:")):
        return _load_mlflow(uri, tracking_uri)
    p = Path(uri).expanduser()
    if p.is_dir():
        p = p / f"{kind}.pt"
    return load_checkpoint(p)


def _load_mlflow(uri: str, tracking_uri: str | None = None) -> nn.Module:
    """Prefer the weights-only checkpoint logged beside the MLflow model; else MLflow's loader."""
    import mlflow

    if tracking_uri and uri.startswith("models:/"):  # download_artifacts resolves these against the global URI only
        name, version = uri[len("models:/"):].split("/", 1)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        uri = client.get_model_version_download_uri(name, version)
    local = Path(mlflow.artifacts.download_artifacts(uri, tracking_uri=tracking_uri))
    found = sorted(local.rglob("*.pt"))
    for candidate in found:
        try:
            return load_checkpoint(candidate)
        except Exception:  # noqa: BLE001 - not one of ours (e.g. MLflow's pickled model); try the next
            continue
    return mlflow.pytorch.load_model(uri)
