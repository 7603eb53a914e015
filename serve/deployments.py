"""The model-side deployments of the Serve graph (serve/app.py wires them behind the ingress).

Each takes only what its step needs: the network a working image and user map, the others a
:class:`dugray.session.WorkingState` (the session at working resolution, without the full-size
image) and the fused posterior by reference. None holds anything a request needs between calls,
so a replica may die and be replaced mid-session (the ingress retries); the sessions themselves
live in the one SessionStore replica, written through to storage.
"""

import numpy as np
from ray import serve

from dugray.compose import OutputOptions
from dugray.session import (
    WorkingState,
    deliver,
    fused_nig,
    predict_rounds,
    propose_patches,
    refine_step,
    solve_step,
    warm_up_network,
    warm_up_outputs,
    warm_up_posterior,
)
from serve.blobs import open_blobs
from serve.loading import load_matting, load_refiner, set_threads
from serve.memory import trim
from serve.posterior_cache import PosteriorCache
from serve.settings import ServeSettings
from serve.store import SessionTable
from serve.views import uncertainty_summary


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=8)
class Matting:
    """The matting network F; concurrent requests are batched (same shapes share a pass)."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.model = load_matting(settings)
        warm_up_network(self.model, settings.session_config())  # ready means fast: a photo-sized pass already ran
        self.predict.set_max_batch_size(settings.batch_size)
        self.predict.set_batch_wait_timeout_s(settings.batch_wait_s)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def predict(self, inputs: list[tuple]) -> list:
        """Each input is (working image float HxWx3 in [0, 1], user map HxW) -> its NIG."""
        set_threads(self.settings)  # per thread in torch: this is not __init__'s thread
        # arrays arrive read-only (zero-copy from the object store); torch wants writable ones
        out = predict_rounds(self.model, [np.array(x) for x, _ in inputs], [np.array(u) for _, u in inputs])
        trim()
        return out


@serve.deployment(ray_actor_options={"num_cpus": 0.05}, max_ongoing_requests=16)
class Fusion:
    """Eq. 2 over all rounds of a session, the labels' carried evidence summed in (user labels enforced)."""

    def __init__(self, settings: ServeSettings):
        warm_up_posterior(settings.session_config())  # label carrying's kernel loaded, a photo-sized heap
        self.cache = PosteriorCache()

    def fuse(self, work: WorkingState, key: str | None = None):
        """The rounds of ``work`` (a session at working resolution) fused as its config says; kept
        under ``key`` (:func:`serve.posterior_cache.posterior_key`) so a session's outputs do not re-fuse."""
        return self.cache.get_or_fuse(key, lambda: fused_nig(work))


@serve.deployment(ray_actor_options={"num_cpus": 0.05}, max_ongoing_requests=16)
class Proposer:
    """Algorithm 1: the next patches to ask about, and the uncertainty summary, from the fused NIG."""

    def __init__(self, settings: ServeSettings):
        warm_up_posterior(settings.session_config())  # "spread" proposals use label carrying's kernel

    def propose(self, work: WorkingState, fused) -> tuple:
        """(proposals with full-resolution boxes, mean epistemic / aleatoric summary) from the fused NIG."""
        return propose_patches(work, nig=fused), uncertainty_summary(fused)


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=16)
class Solver:
    """The uncertainty-guided solve of the fused posterior with the user's labels (None when the session's
    config is off)."""

    def __init__(self, settings: ServeSettings):
        warm_up_posterior(settings.session_config())  # its numba kernels loaded, a photo-sized solve's heap

    def solve(self, work: WorkingState, fused):
        """The solve of ``work``'s fused posterior and labels (None when the session's solve is off)."""
        result = solve_step(work, nig=fused)
        trim()
        return result


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=8)
class Refinement:
    """The refiner R, and every full-resolution output (alpha, RGBA cutout, heat maps)."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.refiner = load_refiner(settings)
        warm_up_outputs(self.refiner, settings.session_config())  # refinement and every render

    def refine(self, work: WorkingState, fused):
        """The refined working matte of the fused posterior (:func:`dugray.session.refine_step`)."""
        set_threads(self.settings)
        refined = refine_step(work, self.refiner, nig=fused)
        trim()
        return refined

    def render(
        self, output: str, image, image_w, config, matte_w=None, fused=None, options: OutputOptions | None = None
    ) -> bytes:
        """One of OUTPUTS at the input's full resolution, delivered as ``options`` say (PNG by default):
        :func:`dugray.session.deliver`, as in process, so the bytes are the command line's.
        ``matte_w`` for alpha and cutout, ``fused`` for the heat maps."""
        data = deliver(output, image, image_w, config, matte_w, fused, options)
        trim()  # full-resolution temporaries: give them back to the system
        return data


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class SessionStore(SessionTable):
    """All sessions, bounded and owned (see serve/store.py), written through to ``session_storage``
    so a restarted replica serves every live session. Exactly one replica: last-access times
    live in it, and a second would expire what the first serves (refused at start)."""

    def __init__(self, settings: ServeSettings):
        replicas = serve.get_replica_context().world_size  # None when autoscaled
        if replicas != 1:
            raise RuntimeError(f"SessionStore must have exactly 1 replica, not {replicas} (serve/store.py)")
        super().__init__(
            settings.max_sessions,
            settings.session_ttl_s,
            settings.max_store_bytes,
            blobs=open_blobs(settings.session_storage, settings.max_store_bytes // 16),
            max_per_owner=settings.max_sessions_per_owner,
            max_bytes_per_owner=settings.max_store_bytes_per_owner,
        )
