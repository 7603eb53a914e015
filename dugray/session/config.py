"""SessionConfig: everything that decides a session's numbers, as typed plain data.

The state holds this dataclass (not a dict); JSON appears only at the edges, where a
session is stored (:meth:`SessionConfig.to_dict` / :meth:`SessionConfig.from_dict`) or a
client sends options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dugray import defaults
from dugray.propagate import CarryParams
from dugray.solve import SolveParams
from dugray.typed import from_dict
from dugray.upsample import DEFAULT_EPS, DEFAULT_RADIUS

MIN_SIDE = 8
"""Smallest accepted image side in pixels."""
FUSION_MODES = ("nig", "last")
PROPOSAL_MODES = ("epistemic", "evidence", "spread")
NETWORK_ROUNDS = ("every", "first")


@dataclass(frozen=True)
class SessionConfig:
    """Everything that decides a session's numbers; plain data, JSON-serialisable, immutable
    (change a field with :func:`dataclasses.replace`).

    work_size : long side of the working resolution (images are never enlarged).
    k, n, t : Algorithm 1 grid size, proposals per round, score threshold.
    fusion : "nig" fuses all rounds with eq. 2 (the paper); "last" uses only the latest
        round (ablation).
    enforce_labels : user fg/bg labels are hard constraints in the matte (see the package doc).
    reliable_quantile, max_patches, seed : refinement pixel filter, patch budget and the
        seed of the gamma_s sample (refinement is deterministic given the state).
    upsample_radius, upsample_eps, upsample_guide : guided upsampling to full resolution
        ("color" or "gray" guide).
    foreground_max_side : resolution bound of the cutout's colour estimation.
    solve : run the uncertainty-guided solve (:mod:`dugray.solve`) after every round: the
        fused posterior, the user's labels and the image's matting Laplacian in one sparse
        solve; the matte a session returns is the solved one (refinement refines the
        network's matte, then solves again from it: :func:`dugray.session.refine_step`).
    solve_params : :class:`dugray.solve.SolveParams` (weights, pins, Laplacian, guard); a dict
        of overrides is turned into one.
    carry : the user's labels carry to the pixels that look like them and are connected to
        them (:mod:`dugray.propagate`), as NIG evidence fused into the posterior.
    carry_params : :class:`dugray.propagate.CarryParams` (a dict of overrides is turned into one).
    proposals : what Algorithm 1 ranks: "epistemic" (the paper: the network's fused rounds),
        "evidence" (the posterior with the labels' carried evidence: where it disagrees with
        the network, eq. 2's beta and so the epistemic uncertainty rise) or "spread" (the
        same, and each pick discounts the cells its answer would carry to, so one question
        is asked per region).
    temper_rounds : the posterior weighs the m fused network rounds as one round's evidence
        (:func:`dugray.nig.nig_temper`): the rounds are the same network on nearly the same
        input, not m independent observations, and eq. 2's summation alone would make every
        new round hold the solve m times tighter to the network's matte (the paper: False).
    network_rounds : when the matting network runs: "every" round, on the image and the user map
        so far (the paper), or only the "first", whose posterior every label round then reuses
        (the labels act through their carried evidence, enforcement and the solve; with
        ``temper_rounds`` m copies of one round fuse back to that round exactly). "first" spares a
        network that barely reads the user map (u2netp, v4) its forward in every label round.
    """

    work_size: int = defaults.WORK_SIZE
    k: int = defaults.K
    n: int = defaults.N
    t: float = defaults.T
    fusion: str = "nig"
    enforce_labels: bool = True
    reliable_quantile: float = 0.9
    max_patches: int = 64
    seed: int = 0
    upsample_radius: int = DEFAULT_RADIUS
    upsample_eps: float = DEFAULT_EPS
    upsample_guide: str = "color"
    foreground_max_side: int | None = 1024
    solve: bool = True
    solve_params: SolveParams = field(default_factory=SolveParams)
    carry: bool = True
    carry_params: CarryParams = field(default_factory=CarryParams)
    proposals: str = "evidence"
    temper_rounds: bool = True
    network_rounds: str = defaults.NETWORK_ROUNDS

    def __post_init__(self):
        if self.work_size < MIN_SIDE:
            raise ValueError(f"work_size must be >= {MIN_SIDE}, got {self.work_size}")
        if self.k < 1 or self.n < 0:
            raise ValueError(f"need k >= 1 and n >= 0, got k={self.k}, n={self.n}")
        if self.proposals not in PROPOSAL_MODES:
            raise ValueError(f"proposals must be one of {PROPOSAL_MODES}, got {self.proposals!r}")
        if self.network_rounds not in NETWORK_ROUNDS:
            raise ValueError(f"network_rounds must be one of {NETWORK_ROUNDS}, got {self.network_rounds!r}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {self.fusion!r}")
        if self.upsample_guide not in ("color", "gray"):
            raise ValueError(f"upsample_guide must be 'color' or 'gray', got {self.upsample_guide!r}")
        if not 0 < self.reliable_quantile <= 1:
            raise ValueError(f"reliable_quantile must be in (0, 1], got {self.reliable_quantile}")
        # overrides given as dicts (YAML, JSON, keyword arguments) become the typed parameters here
        for name, cls in (("solve_params", SolveParams), ("carry_params", CarryParams)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise ValueError(f"{name} must be a {cls.__name__} or a dict of its fields, got {type(value).__name__}")

    def to_dict(self) -> dict:
        """Every field as plain JSON-ready values (the parameters as nested dicts); :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SessionConfig:
        """Build from a dict (nested parameter dicts allowed); unknown keys are an error."""
        return from_dict(cls, d)
