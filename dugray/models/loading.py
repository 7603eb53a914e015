"""The one loader: a model URI to the matting network and its refiner, on a device.

Every entry point (CLI, batch, evaluation, the Serve replicas, the demo, training's
``--init-from``) resolves models here, so one URI means the same everywhere:

- ``'default'`` (or empty): the weights shipped in the package (both networks);
- a training output folder: its ``matting.pt`` and, when present, ``refiner.pt``;
- a checkpoint file: that network only (the refiner is then named separately);
- an MLflow URI (``models:/dugray-matting/1``, ``runs:/<id>/matting``): that network only.

A checkpoint records its kind ('model' or 'refiner'); asking for one kind and finding
the other is a :class:`CheckpointError`, not a network that silently misbehaves.

    >>> from dugray.models import load_networks
    >>> net, refiner = load_networks("default", device="cpu")
    >>> net.kind, refiner.kind
    ('model', 'refiner')
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn as nn

from .checkpoint import CheckpointError, check_kind, load_checkpoint

log = logging.getLogger(__name__)

ALLOW_PICKLE_ENV = "DUGRAY_ALLOW_PICKLE"
"""Set to 1 to let MLflow's pickled model be loaded when a run holds no dugray checkpoint."""
KINDS = {"matting": "model", "refiner": "refiner"}
"""What each network is called here -> the kind its checkpoint records."""
NONE = "none"
"""The refiner URI that turns refinement off."""
DEFAULT = "default"
"""The model URI of the weights shipped in the package."""
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def default_paths() -> dict[str, Path]:
    """Where the shipped matting network and refiner lie."""
    return {"matting": WEIGHTS / "matting.pt", "refiner": WEIGHTS / "refiner.pt"}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'; ValueError otherwise."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for but CUDA is not available")
    return dev


def is_mlflow_uri(uri: str) -> bool:
    """True for what MLflow resolves (``models:``, ``runs:`` or any ``scheme://`` URI), not a local path."""
    return "://" in uri or uri.startswith(("models:", "runs:"))


def refiner_uri_for(model: str | None, refiner: str | None = None) -> str | None:
    """The refiner that goes with ``model``: ``refiner`` when given ('none' turns it off),
    else the one beside the model when it is 'default' or a training folder, else None."""
    if refiner is not None and refiner.strip():
        return None if refiner.strip().lower() == NONE else refiner
    model = model or DEFAULT
    if model == DEFAULT or (not is_mlflow_uri(model) and Path(model).expanduser().is_dir()):
        return model
    return None


def load_model(uri: str | None = None, kind: str = "matting", tracking_uri: str | None = None) -> nn.Module:
    """One network (``kind`` 'matting' or 'refiner') from a URI, path or 'default', in eval mode on the CPU.

    MLflow URIs resolve against ``tracking_uri``, else MLFLOW_TRACKING_URI / MLflow's default.
    Raises FileNotFoundError (nothing there) or CheckpointError (unreadable, or the other kind).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not uri or uri == DEFAULT:
        return load_checkpoint(default_paths()[kind], kind=KINDS[kind])
    if is_mlflow_uri(uri):
        net = _load_mlflow(uri, kind, tracking_uri)
        check_kind(getattr(net, "kind", "model"), KINDS[kind], uri)
        return net
    p = Path(uri).expanduser()
    if p.is_dir():
        p = p / f"{kind}.pt"
    return load_checkpoint(p, kind=KINDS[kind])


def load_networks(
    model: str | None = DEFAULT,
    refiner: str | None = None,
    device="cpu",
    tracking_uri: str | None = None,
    parts=("matting", "refiner"),
) -> tuple[nn.Module | None, nn.Module | None]:
    """(matting network, refiner or None) for ``model``, in eval mode on ``device``.

    ``refiner`` None follows the model (see :func:`refiner_uri_for`); a folder without a
    refiner (stage 1 only) gives None, but a refiner named explicitly must exist.
    ``parts`` loads only some of them (a Serve replica holds one network): the others
    come back as None.
    """
    dev = resolve_device(device)
    net = load_model(model, "matting", tracking_uri).to(dev).eval() if "matting" in parts else None
    ref = None
    uri = refiner_uri_for(model, refiner) if "refiner" in parts else None
    if uri is not None:
        try:
            ref = load_model(uri, "refiner", tracking_uri).to(dev).eval()
        except FileNotFoundError:
            if refiner is not None and refiner.strip():
                raise  # asked for explicitly: a missing file is an error
            log.warning("no refiner beside model %r; refinement keeps the matte as it is", model)
    return net, ref


def _load_mlflow(uri: str, kind: str, tracking_uri: str | None = None) -> nn.Module:
    """The weights-only dugray checkpoint logged beside the MLflow model (never unpickled).

    MLflow's own loader unpickles, which runs whatever code the file holds; it is used only
    when the operator opts in (``DUGRAY_ALLOW_PICKLE=1``) for a run that has no checkpoint.
    """
    import mlflow

    if tracking_uri and uri.startswith("models:/"):  # download_artifacts resolves these against the global URI only
        name, version = uri[len("models:/") :].split("/", 1)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        uri = client.get_model_version_download_uri(name, version)
    local = Path(mlflow.artifacts.download_artifacts(uri, tracking_uri=tracking_uri))
    refused = []
    for candidate in sorted(local.rglob("*.pt")):
        try:
            return load_checkpoint(candidate, kind=KINDS[kind])
        except Exception as exc:  # noqa: BLE001 - not one of ours (e.g. MLflow's pickled model); try the next
            refused.append(f"{candidate.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if os.environ.get(ALLOW_PICKLE_ENV) != "1":
        why = f" ({'; '.join(refused)})" if refused else ""
        raise CheckpointError(
            f"{uri} holds no dugray checkpoint{why}; loading MLflow's pickled model runs "
            f"arbitrary code: set {ALLOW_PICKLE_ENV}=1 only if you trust its source"
        )
    return mlflow.pytorch.load_model(uri).eval()
