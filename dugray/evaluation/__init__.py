"""Benchmark with simulated users: the paper's tables (section 4, Appendix C) on any dataset.

    from dugray.evaluation import EvalConfig, evaluate
    summary = evaluate("data/synth/plain", "eval_out", model="runs/exp1", config=EvalConfig(rounds=2))

Modules, each small: :mod:`.auroc` (rank-statistic AUROC), :mod:`.closed_form` (the
pymatting reference), :mod:`.scoring` (both metric protocols), :mod:`.data` (examples
from a manifest), :mod:`.methods` (the table rows on one image, all through
:class:`dugray.session.MattingSession`), :mod:`.report` / :mod:`.figures` (outputs),
:mod:`.tracking` (MLflow), :mod:`.runner` (the driver). The job is ``jobs/evaluate.py`` (:mod:`.evaluate_job`).
"""

from .auroc import auroc, average_ranks, error_detection_auroc
from .closed_form import closed_form_alpha
from .methods import Outcome, Plan, describe, run_image
from .runner import EvalConfig, EvalError, evaluate, prepare, run
from .scoring import PROTOCOLS, score_matte

__all__ = [
    "PROTOCOLS",
    "EvalConfig",
    "EvalError",
    "Outcome",
    "Plan",
    "auroc",
    "average_ranks",
    "closed_form_alpha",
    "describe",
    "error_detection_auroc",
    "evaluate",
    "prepare",
    "run",
    "run_image",
    "score_matte",
]
