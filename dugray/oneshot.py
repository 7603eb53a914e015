"""The one-shot matte in Python: one image in, its matte out, nobody to ask.

    >>> from dugray import load_networks, matte_image              # doctest: +SKIP
    >>> net, refiner = load_networks("default", "none")            # doctest: +SKIP
    >>> session = matte_image(image, net)                          # doctest: +SKIP
    >>> png = session.render("alpha")          # the bytes dugray cutout / POST /v1/matte give

``dugray cutout``, ``dugray batch`` (both engines) and ``POST /v1/matte`` compute the same
thing through the same plan (:func:`dugray.session.one_shot_plan`) and render it with the same
function (:func:`dugray.session.deliver`), so one image with the same options gives the same
bytes on every path. The defaults, in one place: trimap-free unless a trimap or mask is given,
one network pass at ``SessionConfig().work_size``, the uncertainty-guided solve on, no
proposals, no refinement (:data:`dugray.defaults.ONE_SHOT_REFINE`; docs/usage.md says why).
"""

from __future__ import annotations

from dugray.session import MattingSession, SessionConfig


def matte_image(
    image, model, refiner=None, config: SessionConfig | None = None, trimap=None, mask=None, refine: bool | None = None
) -> MattingSession:
    """The one-shot matte of ``image`` (RGB uint8 HxWx3) as a started session (``.alpha``,
    ``.cutout()``, ``.render(output, options)``). ``trimap`` / ``mask``: what is already known;
    ``refine``: run ``refiner`` (None: the one-shot default, no); ``config``: the session's
    options (the solve, the working size)."""
    return MattingSession(image, model, refiner, config, trimap=trimap, mask=mask).start_one_shot(refine)
