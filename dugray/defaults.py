"""The interaction defaults, defined once (plain constants: importing this costs nothing).

Read by :class:`dugray.session.SessionConfig` (and through it the Serve settings and the
evaluation), by Algorithm 1 (:mod:`dugray.proposal`) and by the command line's help.
"""

WORK_SIZE = 512
"""Long side of the working resolution: the size the default model is trained at."""
K = 24
"""Algorithm 1's grid: k x k cells over the working image."""
N = 10
"""Proposals per round (the paper's simulated user answers 10)."""
T = 0.0
"""Algorithm 1's score threshold: cells whose mean epistemic uncertainty is below it are not proposed."""
ONE_SHOT_REFINE = False
"""Whether a one-shot matte (``dugray cutout``, ``dugray batch``, :func:`dugray.matte_image`,
``POST /v1/matte``: :func:`dugray.session.one_shot_plan`) runs the refiner when not told: no.
Trimap-free on the train/ photos the refiner made the solved matte worse (docs/usage.md,
"One-shot defaults"), and it costs a second network and a second solve."""
NETWORK_ROUNDS = "first"
"""When the matting network runs in a session: only in the "first" round, whose posterior the label
rounds reuse, not in "every" round (the paper). The default model (v4, U^2-Netp fine-tuned) barely
reads the user map: on the train/ photos every round rerun changed a 2-round or 5-click matte by at
most 0.02 SAD, and cost 10x the round's time (docs/evaluation.md, "The network once per image")."""
