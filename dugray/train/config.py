"""Training configuration: one plain dataclass, loadable from YAML/JSON, overridable by flags.

Defaults follow the authors' released recipe where this machine allows it (Adam with
betas (0.5, 0.999), linear warm-up then cosine decay to 1e-6, lambda = 0.01, horizontal
flip and crops centred on the transition band half of the time) and are scaled down
where it does not (crop size, batch, epochs: see docs/training.md, "Default model").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dugray.data.augment import AugmentConfig
from dugray.detail_patches import NOISES
from dugray.typed import check_known


@dataclass
class TrainConfig:
    """Everything a training job needs, as plain data: data, output and tracking, stages, model,
    optimisation and scale; the field docstrings say what each means.

    Built with :meth:`from_dict` (a YAML/JSON file from :func:`load_config_file`, overridden by
    train.py's flags), which checks it; the driver hands it to every Ray Train worker in a LoopArgs.
    """

    # data
    data: str = ""
    """Dataset folder (any layout dugray.data reads) or a manifest .parquet."""
    extra_data: list = field(default_factory=list)
    """More datasets mixed into training (folders or manifests); their train splits are used."""
    extra_repeat: int = 1
    """Each extra dataset's rows appear this many times per epoch (each with its own
    crops): the mixing ratio of a small real set against a large synthetic one."""
    extra_fraction: float = 0.0
    """If > 0, the share of training rows taken from ``extra_data`` (split evenly between
    the extra datasets, rows cycled as needed); overrides ``extra_repeat``."""
    train_split: str = "train"
    val_split: str = "val"
    samples_per_epoch: int = 0
    """Examples drawn per epoch (0 = every train row once)."""
    val_samples: int = 16
    crop: int = 256
    crop_scales: tuple = (1.0,)
    """Crop side = crop * scale, resized to ``crop``; the authors use (1, 1.5, 2)."""
    usermap_mode: str = "uniform"
    trimap_prob: float = 0.0
    """Share of training user maps that are whole trimaps (trimap-based mode)."""
    jitter_p: float = 0.0
    """Probability of a colour jitter (brightness, contrast, saturation, hue, gamma) of
    a training image; the matte is unchanged."""
    flip_p: float = 0.5
    """Probability of the paper's random horizontal flip (image and matte together)."""
    blur_p: float = 0.2
    """Probability of the paper's random blur of a training image (matte unchanged); the
    paper gives no probabilities for blur, sharpen and shadow: 0.2 each is our choice."""
    sharpen_p: float = 0.2
    """Probability of the paper's random sharpen (unsharp mask) of a training image."""
    shadow_p: float = 0.2
    """Probability of the paper's random shadow (a darkened soft polygon) on a training image."""
    seed: int = 0
    # output and tracking
    out: str = "runs/dugray"
    storage: str = ""
    """Ray Train storage for checkpoints (default <out>/ray); a path every node sees
    (NFS) or a URI (s3://...) on a multi-node cluster."""
    experiment: str = "dugray"
    run_name: str = ""
    matting_model_name: str = "dugray-matting"
    """MLflow registered-model name of the matting network."""
    refiner_model_name: str = "dugray-refiner"
    # what and how long
    stage: str = "all"
    """'1', '2' or 'all'."""
    epochs: int = 10
    stage2_epochs: int = 0
    """Epochs of stage 2 (0 = same as ``epochs``)."""
    # model
    arch: str = "unet"
    """Matting backbone (``dugray.models.available_models()``)."""
    arch_kwargs: dict = field(default_factory=dict)
    alpha_min: float = 1.0
    """NIG head: alpha = softplus + alpha_min (paper 1.0; the authors' code 2.1)."""
    loss: str = "nig"
    """'nig' (the method) or 'l1' (plain regression head: the ablation of Table 3)."""
    nig_lambda: float = 0.01
    matte_weight: float = 1.0
    refiner: str = "hrnet_lite"
    refiner_kwargs: dict = field(default_factory=dict)
    patches_per_image: int = 16
    reliable_quantile: float = 0.9
    matting: str = ""
    """Stage 2's frozen matting network when this job does not run stage 1 ('default', a
    training output folder, a checkpoint file or an MLflow URI); empty = stage 1's of
    the same ``out``. Lets several refiners be trained for one network (Table 4)."""
    stage2_noise: str = "aleatoric"
    """How stage 2 draws the refiner's input gamma_s (Table 4): 'aleatoric' (each pixel's
    E[sigma^2], the method), 'fixed' (one variance per image, its mean E[sigma^2]) or
    'none' (gamma_s = gamma). Stored in the refiner, which inference then follows."""
    # optimisation
    batch_size: int = 8
    lr: float = 5e-4
    stage2_lr: float = 1e-3
    betas: tuple = (0.5, 0.999)
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    grad_clip: float = 1.0
    # scale
    address: str = ""
    """Ray cluster to join ('auto', 'ray://...'); empty = RAY_ADDRESS if set, else a local Ray."""
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    data_cpus: float = 1.0
    """Logical CPUs set aside for the Ray Data tasks (decode, augment) beside the workers;
    a run whose workers leave less than this on the cluster is refused at once."""
    prefetch_batches: int = 2
    """Batches each worker's shard iterator prepares ahead of the step (keeps a GPU fed)."""
    amp: bool = False
    """Mixed precision (torch.autocast, bf16 on CPU, fp16 with a gradient scaler on CUDA).
    Off by default: the shipped model and every figure here were trained in float32."""
    worker_resources: dict = field(default_factory=dict)
    """Custom Ray resources each training worker also asks for (e.g. {"trainer_slot": 1} on a
    cluster whose nodes offer one slot each: one worker per node)."""
    max_failures: int = 2
    resume: bool = False
    init_from: str = ""
    """Warm start when there is nothing to resume: 'default' (the shipped weights), a
    training output folder or a checkpoint file. Stage 1 starts from its matting
    network (architecture included: ``arch`` is then ignored), stage 2 from its
    refiner; optimiser and schedule start afresh."""
    pretrained: str = ""
    """Stage 1 builds ``arch`` and loads pretrained weights into it (architectures with
    ``load_pretrained``: u2netp, u2netp_guided): 'u2netp' (the cached file of ``dugray
    pretrained u2netp``) or a path to that ONNX file. With ``init_from`` too, the network then
    warm-starts its own trained part from that model (u2netp_guided: its light U-Net)."""
    pretrained_lr_scale: float = 1.0
    """Learning rate of the pretrained layers relative to ``lr`` (below 1 protects what they
    know while the new parts learn; networks with ``pretrained_parameters``)."""
    pretrained_frozen_epochs: float = 0.0
    """The pretrained layers' learning rate is 0 for this many first epochs of stage 1 (the
    new parts learn around what they know first), then ``pretrained_lr_scale`` x the schedule."""
    side_weight: float = 1.0
    """Weight of the deep supervision of U^2-Netp's side outputs (arch u2netp: binary
    cross-entropy of its seven logits against alpha, as U^2-Net was trained); 0 turns it off."""
    log_every: int = 10

    @property
    def stage2_epoch_count(self) -> int:
        return self.stage2_epochs or self.epochs

    def augment_config(self):
        """The training augmentations these keys ask for, as the pipeline's AugmentConfig."""
        return AugmentConfig(
            flip_p=self.flip_p,
            blur_p=self.blur_p,
            sharpen_p=self.sharpen_p,
            shadow_p=self.shadow_p,
            crop_scales=tuple(self.crop_scales),
            jitter_p=self.jitter_p,
        )

    def to_dict(self) -> dict:
        """Every key as a plain dict (logged to MLflow as config.json and as run parameters)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build and validate; unknown keys are an error."""
        values = dict(values)
        check_known(cls, values, "config keys")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError on a bad value; also turns ``betas`` and ``crop_scales`` (lists from
        YAML / JSON) into tuples.
        """
        if self.stage not in ("1", "2", "all"):
            raise ValueError(f"stage must be 1, 2 or all, got {self.stage!r}")
        if self.loss not in ("nig", "l1"):
            raise ValueError(f"loss must be 'nig' or 'l1', got {self.loss!r}")
        for name in ("epochs", "batch_size", "num_workers", "crop"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data_cpus <= 0:
            raise ValueError(
                f"data_cpus must be > 0 (the data tasks need a CPU beside the workers), got {self.data_cpus}"
            )
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.pretrained_frozen_epochs < 0 or self.side_weight < 0:
            raise ValueError(
                f"pretrained_frozen_epochs and side_weight must be >= 0, got "
                f"{self.pretrained_frozen_epochs} and {self.side_weight}"
            )
        if self.pretrained_lr_scale <= 0:
            raise ValueError(
                f"pretrained_lr_scale must be > 0 (freeze with a small value), got {self.pretrained_lr_scale}"
            )
        if self.prefetch_batches < 0:
            raise ValueError(f"prefetch_batches must be >= 0, got {self.prefetch_batches}")
        if self.crop % 32:
            raise ValueError(f"crop must be a multiple of 32, got {self.crop}")
        self.betas = tuple(self.betas)
        self.crop_scales = tuple(self.crop_scales)
        if self.extra_repeat < 1:
            raise ValueError(f"extra_repeat must be >= 1, got {self.extra_repeat}")
        if not 0.0 <= self.extra_fraction < 1.0:
            raise ValueError(f"extra_fraction must be in [0, 1), got {self.extra_fraction}")
        if self.extra_fraction and not self.extra_data:
            raise ValueError("extra_fraction needs extra_data")
        if self.stage2_noise not in NOISES:
            raise ValueError(f"stage2_noise must be one of {', '.join(NOISES)}, got {self.stage2_noise!r}")
        for name in ("jitter_p", "flip_p", "blur_p", "sharpen_p", "shadow_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def load_config_file(path) -> dict:
    """Values from a YAML or JSON file (a flat mapping of TrainConfig keys)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    text = p.read_text()
    if p.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"config file {p} must hold a mapping of keys to values")
    return values


def check_official_init(cfg, arch_flag) -> None:
    """``--init-from modnet-official:PATH``: stages 1 or all (stage 2's refiner then starts new),
    arch modnet; loads the file once (its errors now, not in a worker) and makes PATH absolute
    for the workers."""
    # torch (through dugray.models) only here, to load the official file: building and checking a config needs none
    from dugray.models.modnet_official import PREFIX, load_official_modnet, official_path

    if cfg.stage == "2":
        raise ValueError(
            f"--init-from {PREFIX}PATH warm-starts the matting network (stage 1 or all); the refiner "
            "has no official weights"
        )
    if arch_flag is not None and arch_flag != "modnet":
        raise ValueError(f"--init-from {PREFIX}PATH trains the modnet architecture, not --arch {arch_flag}")
    kwargs = cfg.arch_kwargs if cfg.arch == "modnet" else {}
    path = official_path(cfg.init_from).resolve()
    load_official_modnet(path, **{"alpha_min": cfg.alpha_min, **kwargs})
    cfg.arch, cfg.arch_kwargs, cfg.init_from = "modnet", kwargs, f"{PREFIX}{path}"
