"""Serving settings: one plain dataclass, from the app builder's args and the environment.

Every deployment gets the same :class:`ServeSettings` at bind time, so a config file's
``args`` (or ``serve run serve.app:build key=value``) and the env vars ``DUGRAY_MODEL`` /
``DUGRAY_REFINER`` decide everything in one place. Args win over env vars.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dugray.models.loading import refiner_uri_for
from dugray.session import SessionConfig
from dugray.typed import check_known, json_or_word
from serve.access import Networks
from serve.placement import check_deployment_names, check_placement

ENV_MODEL = "DUGRAY_MODEL"
ENV_REFINER = "DUGRAY_REFINER"
ENV_API_KEYS = "DUGRAY_API_KEYS"
ENV_API_KEYS_FILE = "DUGRAY_API_KEYS_FILE"
DEFAULT_STORAGE = os.path.join("~", ".cache", "dugray", "sessions")
"""Sessions are written here unless ``session_storage`` says otherwise (one folder per user)."""


@dataclass
class ServeSettings:
    """What the server loads and how it bounds its work.

    model, refiner : 'default' (the shipped weights), a checkpoint path, a training output
        folder or an MLflow URI (``models:/dugray-matting/1``); refiner 'none' disables it.
        When refiner is unset it follows a folder or 'default' model, else 'none'.
    device : 'auto' (CUDA when the replica was given a GPU), 'cpu' or 'cuda'.
    torch_threads : intra-op threads per model replica; 0 keeps what Ray set (OMP_NUM_THREADS).
    network_max_side : the matting network runs at most at this long side inside the working size
        (its NIG maps come back at the working size, where the labels and the solve stay); unset =
        the model's own ``infer_max_side``, else the working size. A speed for quality trade:
        with the shipped model, 384 and 2 torch threads make an 800x600 click round 0.44x as
        long and 5 clicks on the train/ photos 9.46 SAD instead of 8.67 (docs/evaluation.md,
        "Network resolution").
    max_pixels : largest accepted image (width x height); larger gets 413.
    max_decode_bytes : bytes one image decode may allocate, read from its header before decoding
        (pixels x channels x bytes per sample, a TIFF's tile or strip buffer included); more gets
        413. Default 8 x max_pixels (a 16-bit RGBA image of the largest size).
    max_upload_bytes : largest accepted upload (multipart body); larger gets 413.
    max_json_bytes : largest accepted JSON body (labels, options); larger gets 413.
    api_keys : accepted API keys (also ``DUGRAY_API_KEYS``, comma-separated, or a file named by
        ``DUGRAY_API_KEYS_FILE``, one per line); empty = no authentication (then bind to
        127.0.0.1 only). A session belongs to the key that made it.
    max_sessions_per_owner : live sessions one key (or, without keys, one client address)
        may hold; more gets 429.
    max_store_bytes_per_owner : bytes of session state one owner may hold in the store (its
        share of ``max_store_bytes``; default a quarter of it); more gets 429, so one client
        cannot fill the store and evict everyone else's sessions.
    trusted_proxies : addresses or networks (``10.0.0.0/8``) of the proxies in front of the
        server whose ``X-Forwarded-For`` names the client; from anyone else it is ignored.
    allowed_hosts : without keys, the host names a request may address the server by (its
        ``Host``; IP addresses always may): a page of another site cannot reach it through a
        DNS name it controls. ``["*"]`` allows any.
    rate_limit_per_s, rate_burst : requests per second per key / address (token bucket,
        per ingress replica); past it 429 with Retry-After. A rate of 0 turns it off; the
        burst is at least 1.
    session_storage : where the store writes every session (a local folder, or any
        pyarrow filesystem URI such as s3://bucket/dugray-sessions), so a restarted store
        replica serves them; 'none' keeps them in memory.
    max_sessions, session_ttl_s, max_store_bytes : bounds of the session store (LRU
        eviction past the count or the bytes, expiry after ttl seconds without use).
    max_rounds : network rounds per session (each adds 16 bytes per working pixel).
    max_labels_per_request, max_labels_per_session : labels one request may carry, and one session
        hold (every label is a box each fusion paints, microseconds each; the web page sends a brush
        stroke as one box per brush position, 70+ for one stroke across a small image); more gets
        422. What a label costs in time is its region's carry, bounded by ``max_carry_passes``.
    max_carry_passes : geodesic passes over the working image the labels' carry may cost each fusion
        (:func:`dugray.propagate.carry_passes`: one per separate labelled fg/bg region, times
        regrow + 1, and one per released transition region; about 47 ms each at 512x512); a label
        request past it gets 422 and the session is unchanged.
    batch_size, batch_wait_s : @serve.batch parameters of the Matting deployment.
    retry_s : how long the ingress keeps retrying a model call whose replica died.
    session : SessionConfig overrides (work_size, k, n, t, fusion, ...).
    replicas : fixed replica counts per deployment name, e.g. {"Matting": 2} (else the
        decorators' or the config file's); the names are serve.placement.DEPLOYMENT_NAMES
        (Matting, Fusion, Proposer, Solver, Refinement, SessionStore, APIIngress), any other
        an error. SessionStore has exactly one: it holds the sessions' last-access times, and a
        second one would expire what the first serves.
    placement : where replicas may run, per deployment name: ``resources`` (custom node
        resources its replicas ask for, added to its ``ray_actor_options``) and
        ``max_replicas_per_node``, e.g. ``{"Matting": {"resources": {"matting_node": 1}}}``
        (serve/placement.py), by the same names; empty = anywhere, as on one node.
    """

    model: str = "default"
    refiner: str | None = None
    device: str = "auto"
    torch_threads: int = 0
    network_max_side: int | None = None
    max_pixels: int = 40_000_000
    max_decode_bytes: int | None = None
    max_upload_bytes: int = 64 * 2**20
    max_json_bytes: int = 2**20
    api_keys: list = field(default_factory=list)
    max_sessions_per_owner: int = 16
    max_store_bytes_per_owner: int | None = None
    trusted_proxies: list = field(default_factory=list)
    allowed_hosts: list = field(default_factory=lambda: ["localhost"])
    rate_limit_per_s: float = 20.0
    rate_burst: float = 40.0
    session_storage: str = DEFAULT_STORAGE
    max_sessions: int = 64
    session_ttl_s: float = 3600.0
    max_store_bytes: int = 2 * 2**30
    max_rounds: int = 12
    max_labels_per_request: int = 1024
    max_labels_per_session: int = 8192
    max_carry_passes: int = 32
    batch_size: int = 4
    batch_wait_s: float = 0.01
    retry_s: float = 60.0
    session: dict = field(default_factory=dict)
    replicas: dict = field(default_factory=dict)
    placement: dict = field(default_factory=dict)

    def __post_init__(self):
        self.session_config()  # validate early: a typo fails at build time, not per request
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.max_pixels < 64 or self.max_sessions < 1 or self.max_rounds < 1 or self.batch_size < 1:
            raise ValueError("max_pixels, max_sessions, max_rounds and batch_size must be positive")
        if self.max_sessions_per_owner < 1 or self.max_json_bytes < 1024 or self.rate_limit_per_s < 0:
            raise ValueError("max_sessions_per_owner must be >= 1, max_json_bytes >= 1024, rate_limit_per_s >= 0")
        if self.rate_burst < 1:
            raise ValueError(f"rate_burst must be at least 1 (a request), got {self.rate_burst}")
        if min(self.max_labels_per_request, self.max_labels_per_session, self.max_carry_passes) < 1:
            raise ValueError("max_labels_per_request, max_labels_per_session and max_carry_passes must be >= 1")
        if self.network_max_side is not None and not 32 <= int(self.network_max_side) <= 16384:
            raise ValueError(f"network_max_side must be 32-16384 pixels or unset, got {self.network_max_side}")
        if self.max_decode_bytes is None:
            self.max_decode_bytes = 8 * self.max_pixels
        if self.max_decode_bytes < self.max_pixels:
            raise ValueError("max_decode_bytes must be at least max_pixels (one byte per pixel)")
        if self.max_store_bytes_per_owner is None:
            self.max_store_bytes_per_owner = self.max_store_bytes // 4
        if not 1 <= self.max_store_bytes_per_owner <= self.max_store_bytes:
            raise ValueError("max_store_bytes_per_owner must be between 1 and max_store_bytes")
        for name in ("trusted_proxies", "allowed_hosts"):
            value = getattr(self, name)
            setattr(
                self,
                name,
                [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value),
            )
        try:
            Networks(self.trusted_proxies)
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {exc}") from None
        if isinstance(self.api_keys, str):
            self.api_keys = [k.strip() for k in self.api_keys.split(",") if k.strip()]
        if any(not isinstance(k, str) or len(k) < 16 for k in self.api_keys):
            raise ValueError("every API key must be a string of at least 16 characters")
        check_deployment_names("replicas", self.replicas)
        check_placement(self.placement)
        store_replicas = self.replicas.get("SessionStore", 1)
        if store_replicas != 1:
            raise ValueError(
                f"replicas: SessionStore={store_replicas}; the store has exactly one replica (each "
                "replica keeps its own last-access times, so a second would expire what the first serves)"
            )

    def session_config(self) -> SessionConfig:
        """The SessionConfig of every session: the defaults with ``session``'s overrides."""
        return SessionConfig.from_dict(self.session)

    @property
    def refiner_uri(self) -> str | None:
        """The refiner to load, or None (:func:`dugray.models.refiner_uri_for`)."""
        return refiner_uri_for(self.model, self.refiner)

    def to_dict(self) -> dict:
        """Every setting as a plain dict."""
        return asdict(self)

    @classmethod
    def from_args(
        cls, args: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> ServeSettings:
        """Settings from env vars overridden by ``args``; unknown keys are an error.

        String values that look like JSON (numbers, dicts) are parsed, so
        ``serve run serve.app:build max_sessions=8 'replicas={"Matting": 2}'`` works.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if environ.get(ENV_MODEL):
            values["model"] = environ[ENV_MODEL]
        if environ.get(ENV_REFINER):
            values["refiner"] = environ[ENV_REFINER]
        if environ.get(ENV_API_KEYS):
            values["api_keys"] = environ[ENV_API_KEYS]
        elif environ.get(ENV_API_KEYS_FILE):
            values["api_keys"] = read_keys(environ[ENV_API_KEYS_FILE])
        check_known(cls, args or {}, "serve settings", list_known=True)
        values.update(
            {
                k: json_or_word(v) if k not in ("model", "refiner", "session_storage") else v
                for k, v in (args or {}).items()
            }
        )
        return cls(**values)


def read_keys(path) -> list[str]:
    """API keys from a file, one per line (blank lines and ``#`` comments skipped): keys given
    this way never appear in a command line (``ps`` shows those to every user)."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the API key file {path}: {exc.strerror}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
