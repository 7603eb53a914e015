"""dugray on Ray Serve: the interactive matting session behind an HTTP API.

    serve run serve.app:deployment                       # model from $DUGRAY_MODEL or the default
    serve run serve.app:build model=runs/exp1            # or a folder / checkpoint / models:/...
    serve deploy serve/config.yaml                       # replicas, autoscaling, resources

The graph (every box a deployment, each may have several replicas)::

    HTTP -> APIIngress --+-> Matting       F: batched predict_round at working resolution
                         +-> Fusion        eq. 2 over all rounds, user labels enforced
                         +-> Proposal      Algorithm 1 on the fused epistemic map + summary
                         +-> Solve         posterior + labels + matting Laplacian (dugray.solve)
                         +-> Refinement    R (section 3.4) and the full-resolution outputs
                         +-> SessionStore  bounded SessionState.to_bytes() blobs (1 replica)

The ingress only parses requests and runs the session module's plans
(:func:`dugray.session.round_plan`, ``refine_plan``, ``solve_switch_plan``) with
:func:`dugray.session.run_plan_async`, each step on its deployment; it re-implements no
step, no round and no one-shot path, and input is checked by ``dugray.session`` (a
ValueError becomes a 422). A session's state lives in the store between requests, so any replica can serve any request and a model replica
may die between (or during: the call is retried) two rounds without losing a session.
The ingress also serves the web page (serve/static, plain files) at ``/``.
"""

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

from dugray.data.io import encode_png
from dugray.session import (
    FUSE,
    PREDICT,
    PROPOSE,
    REFINE,
    SOLVE,
    MattingSession,
    SessionState,
    apply_user_labels,
    fused_nig,
    new_state,
    predict_rounds,
    propose_patches,
    refine_plan,
    refine_step,
    round_plan,
    run_plan_async,
    solve_step,
    solve_switch_plan,
    warm_up,
    working_float,
)
from dugray.propagate import warm_up as warm_up_propagate
from dugray.solve import warm_up as warm_up_solve
from dugray.visualize import heat
from serve.access import Policy, RequestGuard
from serve.blobs import SID, open_blobs
from serve.errors import ApiError, install_error_handlers, unknown_session
from serve.imaging import CEILING_ENV, ceiling_in_effect, decode_image, decode_plane, decoder_env
from serve.loading import load_matting, load_refiner, set_threads
from serve.memory import trim
from serve.readiness import Readiness
from serve.schemas import LabelRequest, SessionPatch
from serve.settings import ServeSettings
from serve.store import SessionTable
from serve.uploads import read_form, upload_openapi
from serve.views import OUTPUTS, session_view, uncertainty_summary, with_request_time

api = FastAPI(
    title="dugray",
    version="1",
    redoc_url=None,  # /docs only (off on a server with keys: serve/access.py)
    description="Uncertainty-guided interactive image matting (dugMatting). Errors are "
    '`{"error": ..., "detail": ...}`; boxes are `[y0, x0, y1, x1]` in full-resolution pixels.',
)
install_error_handlers(api)
api.add_middleware(RequestGuard)  # keys, rate limit and body limits before any route (serve/access.py)
# NB: serve.ingress pickles the routes when the class is decorated: everything they use
# must be imported or defined above the APIIngress class.
log = logging.getLogger("ray.serve")
MODEL_DIED = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)
PNG = {200: {"content": {"image/png": {}}}}  # for /docs
SAVE_ERRORS = {
    "missing": (404, "session expired or deleted"),
    "conflict": (409, "session changed meanwhile; reload it and retry"),
    "too_large": (413, "session state too large for the store"),
    "quota": (429, "too many live sessions", "delete one of yours (DELETE /v1/sessions/{id}) or wait for one to expire"),
    "share": (429, "session store share used up", "your sessions hold your share of the store's bytes; delete one of "
              "yours (DELETE /v1/sessions/{id}) or wait for one to expire"),
    "storage": (503, "session storage failed", "the session could not be written; retry"),
}
WEB_FILES = ("index.html", "app.js", "style.css")
GRAPH = ("Matting", "Fusion", "Proposal", "Solve", "Refinement", "SessionStore", "APIIngress")
"""The deployments of the app, by name: /v1/health is ok only when each can serve (DEPLOYMENTS below)."""


def owner_of(request: Request) -> str | None:
    """Who makes the request (set by serve.access.RequestGuard): ``key:...`` or ``addr:...``."""
    return getattr(request.state, "owner", None)


def checked_sid(sid: str) -> str:
    """A session id that can be one (else 404 before any work): the store's ids are 32 hex digits."""
    if not SID.fullmatch(sid):
        raise unknown_session(sid[:64])
    return sid


def model_id(uri: str) -> str:
    """'default', or a short hash of the model's URI: /v1/health tells versions apart without paths."""
    return uri if uri == "default" else "sha256:" + hashlib.sha256(uri.encode()).hexdigest()[:12]


def web_file(name: str) -> FileResponse:
    """A file of the web page, looked up beside this module where the replica imported it.

    A module-level function is pickled by reference, so the path is the replica's own,
    not the one of the process that built the app.
    """
    if name not in WEB_FILES:
        raise ApiError(404, "not found", name)
    return FileResponse(Path(__file__).parent / "static" / name, headers={"cache-control": "no-cache"})


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=8)
class Matting:
    """The matting network F; concurrent requests are batched (same shapes share a pass)."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.model = load_matting(settings)
        warm_up(self.model, config=settings.session_config())  # ready means fast: the first request compiles nothing
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
    """Eq. 2 over all rounds of a state, the labels' carried evidence summed in (user labels enforced)."""

    def __init__(self):
        warm_up_propagate()  # the geodesic kernel of label carrying: compiled (or loaded) now, not in a request

    def fuse(self, state: SessionState):
        """The rounds of ``state`` fused as its session config says (eq. 2; labels enforced when configured)."""
        return fused_nig(state)


@serve.deployment(ray_actor_options={"num_cpus": 0.05}, max_ongoing_requests=16)
class Proposal:
    """Algorithm 1: the next patches to ask about, and the uncertainty summary, from the fused NIG."""

    def __init__(self):
        warm_up_propagate()  # "spread" proposals measure each answer's reach with the geodesic kernel

    def propose(self, state: SessionState, fused) -> tuple:
        """(proposals with full-resolution boxes, mean epistemic / aleatoric summary) from the fused NIG."""
        return propose_patches(state, nig=fused), uncertainty_summary(fused)


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=16)
class Solve:
    """The uncertainty-guided solve of the fused posterior with the user's labels (None when the session's config is off)."""

    def __init__(self, settings: ServeSettings):
        warm_up_solve()  # compiles its numba kernels now, not in the first user's request
        warm_up(config=settings.session_config())  # and a photo-sized solve: the heap real requests need

    def solve(self, state: SessionState, fused):
        """The solve of ``state``'s fused posterior and labels (None when the session's solve is off)."""
        result = solve_step(state, nig=fused)
        trim()
        return result


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=8)
class Refinement:
    """The refiner R, and every full-resolution output (alpha, RGBA cutout, heat maps)."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.refiner = load_refiner(settings)
        warm_up(refiner=self.refiner, config=settings.session_config())  # refinement, solve and every render

    def refine(self, state: SessionState, fused):
        """The refined working matte of the fused posterior (:func:`dugray.session.refine_step`)."""
        set_threads(self.settings)
        refined = refine_step(state, self.refiner, nig=fused)
        trim()
        return refined

    def render(self, state: SessionState, output: str) -> bytes:
        """One of OUTPUTS as PNG bytes at the input's full resolution."""
        if output == "image":
            png = encode_png(state.image)
        else:
            s = MattingSession.from_state(state, None)
            if output in ("epistemic", "aleatoric"):
                png = encode_png(heat(getattr(s, output)))
            else:
                png = encode_png(s.cutout() if output == "cutout" else s.alpha_u8)
        trim()  # full-resolution temporaries: give them back to the system
        return png


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class SessionStore(SessionTable):
    """All sessions, bounded and owned (see serve/store.py), written through to ``session_storage``
    so a restarted replica serves every live session. Exactly one replica: last-access times
    live in it, and a second would expire what the first serves (refused at start)."""

    def __init__(self, settings: ServeSettings):
        replicas = serve.get_replica_context().world_size  # None when autoscaled
        if replicas != 1:
            raise RuntimeError(f"SessionStore must have exactly 1 replica, not {replicas} (serve/store.py)")
        super().__init__(settings.max_sessions, settings.session_ttl_s, settings.max_store_bytes,
                         blobs=open_blobs(settings.session_storage), max_per_owner=settings.max_sessions_per_owner,
                         max_bytes_per_owner=settings.max_store_bytes_per_owner)


@serve.deployment(ray_actor_options={"num_cpus": 0.2}, max_ongoing_requests=64)
@serve.ingress(api)
class APIIngress:
    """HTTP under /v1: validates input, runs the session steps on the deployments above; the web page at /."""

    def __init__(self, matting, fusion, proposal, solver, refinement, store, settings: ServeSettings):
        if not ceiling_in_effect(settings.max_pixels):  # the decoder's own limit under the header checks
            raise RuntimeError(f"OpenCV's {CEILING_ENV} is not {settings.max_pixels} (max_pixels) in this replica: it "
                               "must be in the ingress's environment when cv2 is loaded (serve.app.build puts it there)")
        self.matting, self.fusion, self.proposal, self.solver = matting, fusion, proposal, solver
        self.refinement, self.store = refinement, store
        self.settings, self.config = settings, settings.session_config()
        self.readiness = Readiness(serve.get_replica_context().app_name, GRAPH)
        RequestGuard.install(Policy.from_settings(settings))

    @api.get("/", include_in_schema=False)
    async def page(self) -> FileResponse:
        """The web page for interactive cutting-out (serve/static: plain files, no build step)."""
        return web_file("index.html")

    @api.get("/static/{name}", include_in_schema=False)
    async def static(self, name: str) -> FileResponse:
        """A file of the web page (index.html, app.js or style.css); 404 for any other name."""
        return web_file(name)

    @api.post("/v1/sessions", status_code=201, openapi_extra=upload_openapi("image", "trimap", "mask"))
    async def create_session(self, request: Request, solve: bool | None = None) -> dict:
        """Start a session from an image (optional trimap or binary mask): round 1 + proposals.

        ``solve`` switches the uncertainty-guided solve on or off for this session (default:
        the server's session config).
        """
        t0 = time.perf_counter()
        state = await self._new_state(request, solve)
        uncertainty = await self._run(round_plan(state, {}))
        sid = uuid.uuid4().hex
        view = session_view(sid, state, uncertainty)
        await self._save(sid, state, view, None, owner_of(request))
        return with_request_time(view, t0)

    @api.get("/v1/sessions/{sid}")
    async def get_session(self, sid: str, request: Request) -> dict:
        """The session's current view: size, round, proposals, uncertainty, labels, solve, links to its
        PNGs and the last round's timings (404 if unknown or expired).
        """
        view = await self._store("view", checked_sid(sid), owner_of(request))
        if view is None:
            raise unknown_session(sid)
        return view

    @api.post("/v1/sessions/{sid}/labels")
    async def label(self, sid: str, body: LabelRequest, request: Request) -> dict:
        """Paint the answers into the user map, run the network again, fuse, propose anew."""
        t0 = time.perf_counter()
        state, _, version = await self._load(sid, request)
        if len(state.rounds) >= self.settings.max_rounds:
            raise ApiError(409, "round limit reached", f"a session may run {self.settings.max_rounds} rounds")
        try:
            apply_user_labels(state, [item.pair() for item in body.labels])
        except ValueError as exc:
            raise ApiError(422, "invalid labels", str(exc)) from None
        uncertainty = await self._run(round_plan(state, {"label_s": time.perf_counter() - t0}))
        view = session_view(sid, state, uncertainty)
        await self._save(sid, state, view, version, owner_of(request))
        return with_request_time(view, t0)

    @api.patch("/v1/sessions/{sid}")
    async def patch_session(self, sid: str, body: SessionPatch, request: Request) -> dict:
        """Change a session's options: ``{"solve": false}`` shows the network's fused matte,
        ``{"solve": true}`` the uncertainty-guided solve (run now); refinement is reset."""
        t0 = time.perf_counter()
        state, old_view, version = await self._load(sid, request)
        await self._run(solve_switch_plan(state, body.solve))
        view = session_view(sid, state, old_view["uncertainty"])
        await self._save(sid, state, view, version, owner_of(request))
        return with_request_time(view, t0)

    @api.post("/v1/sessions/{sid}/refine")
    async def refine(self, sid: str, request: Request) -> dict:
        """Refine fine detail where aleatoric uncertainty is high (until the next round)."""
        t0 = time.perf_counter()
        state, old_view, version = await self._load(sid, request)
        await self._run(refine_plan(state))
        view = session_view(sid, state, old_view["uncertainty"])
        await self._save(sid, state, view, version, owner_of(request))
        return with_request_time(view, t0)

    @api.get("/v1/sessions/{sid}/{output}.png", response_class=Response, responses=PNG)
    async def output(self, sid: str, output: str, request: Request) -> Response:
        """image (the input, RGB), alpha (grey), cutout (RGBA), epistemic or aleatoric (heat maps); full resolution."""
        if output not in OUTPUTS:
            raise ApiError(404, "unknown output", f"expected one of {list(OUTPUTS)}")
        state, _, _ = await self._load(sid, request)
        return Response(await self.refinement.render.remote(state, output), media_type="image/png")

    @api.delete("/v1/sessions/{sid}", status_code=204)
    async def delete_session(self, sid: str, request: Request) -> Response:
        """Delete the session and its stored state: 204, or 404 if unknown, expired or not yours."""
        if not await self._store("delete", checked_sid(sid), owner_of(request)):
            raise unknown_session(sid)
        return Response(status_code=204)

    @api.post("/v1/matte", response_class=Response, openapi_extra=upload_openapi("image", "trimap", "mask"), responses=PNG)
    async def matte(self, request: Request, output: str = "rgba", refine: bool = False,
                    solve: bool | None = None) -> Response:
        """One shot, no session: the RGBA cutout (``output=rgba``) or the alpha matte (``alpha``);
        ``solve`` as for sessions, ``refine`` runs the refiner after it."""
        if output not in ("rgba", "alpha"):
            raise ApiError(422, "invalid request", "output must be rgba or alpha")
        state = await self._new_state(request, solve)
        await self._run(round_plan(state, propose=False))  # the one-shot path: nobody to ask
        if refine:
            await self._run(refine_plan(state))
        png = await self.refinement.render.remote(state, "cutout" if output == "rgba" else "alpha")
        return Response(png, media_type="image/png")

    @api.get("/v1/health", responses={503: {"description": "a deployment cannot serve (yet)"}})
    async def health(self):
        """Readiness, open to all (no key): 200 ``{"status": "ok"}`` only when every deployment of
        the graph can serve (a replica past its warm-up), else 503 with ``status`` ``starting``
        (never ready yet) or ``unavailable`` and the deployments in ``not_ready``; which model
        (``default`` or a hash of its URI, never a path), whether keys are required, and the
        session store's counters.
        """
        missing = await self.readiness.check()
        stats = None
        if "SessionStore" not in missing:
            try:
                stats = await asyncio.wait_for(self.store.stats.remote(), timeout=2.0)
            except (asyncio.TimeoutError, *MODEL_DIED):
                missing = [*missing, "SessionStore"]
        body = {"status": "ok" if not missing else "unavailable" if self.readiness.ever_ready else "starting",
                "model": model_id(self.settings.model), "auth": bool(self.settings.api_keys), "store": stats}
        if missing:
            return JSONResponse({**body, "not_ready": missing}, status_code=503, headers={"Retry-After": "5"})
        return body

    async def drain(self, timeout_s: float = 30.0) -> int:
        """A clean stop (``dugray serve`` on SIGTERM / SIGINT, through a handle, not HTTP): refuse new
        requests with 503 and wait up to ``timeout_s`` for those in flight; how many were left."""
        return await RequestGuard.drain(timeout_s)

    # ---- the session module's plans, each step on its deployment

    async def _run(self, plan) -> dict:
        """Run a plan of :mod:`dugray.session`; returns the proposals' uncertainty summary
        (empty when the plan proposed nothing)."""
        summary: dict = {}

        async def predict(state):
            return await self._predict(state)

        async def fuse(state):
            return self.fusion.fuse.remote(state)  # handed on to Proposal / Solve / Refinement by reference

        async def propose(state, fused):
            proposals, summary["uncertainty"] = await self.proposal.propose.remote(replace(state, rounds=[]), fused)
            return proposals

        async def solve(state, fused):
            return await self.solver.solve.remote(replace(state, rounds=[]), fused)

        async def refine(state, fused):
            return await self.refinement.refine.remote(state, fused)

        await run_plan_async(plan, {PREDICT: predict, FUSE: fuse, PROPOSE: propose, SOLVE: solve, REFINE: refine})
        return summary.get("uncertainty", {})

    async def _predict(self, state: SessionState):
        """One network run; retried while the Matting replica that had it is replaced."""
        deadline = time.monotonic() + self.settings.retry_s
        while True:
            try:
                return await self.matting.predict.remote((working_float(state), state.user_map))
            except MODEL_DIED as exc:
                if time.monotonic() > deadline:
                    raise ApiError(503, "matting model unavailable", type(exc).__name__) from None
                log.warning("Matting replica lost (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _new_state(self, request: Request, solve: bool | None = None) -> SessionState:
        form = await read_form(request, self.settings.max_upload_bytes)
        if "image" not in form:
            raise ApiError(422, "missing field", "the multipart field 'image' is required")
        if "trimap" in form and "mask" in form:
            raise ApiError(422, "invalid request", "give either trimap or mask, not both")
        config = self.config if solve is None else replace(self.config, solve=solve)
        return await asyncio.to_thread(self._decode, form, config)

    def _decode(self, form: dict, config) -> SessionState:
        limit = self.settings.max_pixels
        image = decode_image(form["image"], limit)
        planes = {name: decode_plane(form[name], limit, name) for name in ("trimap", "mask") if name in form}
        try:
            return new_state(image, config, **planes)
        except ValueError as exc:
            raise ApiError(422, "invalid input", str(exc)) from None

    async def _load(self, sid: str, request: Request) -> tuple[SessionState, dict, int]:
        got = await self._store("get", checked_sid(sid), owner_of(request))
        if got is None:
            raise unknown_session(sid)
        if isinstance(got, dict):  # its stored state was missing or cut short: quarantined by the store
            raise ApiError(410, "session lost", "its stored state could not be read; start a new session")
        blob, view, version = got
        try:
            return SessionState.from_bytes(blob), view, version
        except Exception as exc:  # noqa: BLE001 - any unreadable state: the session is gone, the replica is not
            log.warning("session %s: stored state unreadable (%s); quarantined", sid, type(exc).__name__)
            await self._store("quarantine", sid, f"unreadable state ({type(exc).__name__})")
            raise ApiError(410, "session lost", "its stored state could not be read; start a new session") from None

    async def _save(self, sid: str, state: SessionState, view: dict, version: int | None, owner: str | None) -> None:
        result = await self._store("put", sid, state.to_bytes(), view, version, owner)
        if not result["ok"]:
            status, error, detail = SAVE_ERRORS[result["error"]]
            headers = {"Retry-After": str(min(60, int(self.settings.session_ttl_s)))} if status == 429 else None
            raise ApiError(status, error, detail if detail is not None else sid, headers=headers)

    async def _store(self, method: str, *args):
        """A call on the session store, retried while its replica is replaced (its sessions are on storage)."""
        deadline = time.monotonic() + self.settings.retry_s
        while True:
            try:
                return await getattr(self.store, method).remote(*args)
            except MODEL_DIED as exc:
                if time.monotonic() > deadline:
                    raise ApiError(503, "session store unavailable", type(exc).__name__) from None
                log.warning("SessionStore replica lost (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)


DEPLOYMENTS = (Matting, Fusion, Proposal, Solve, Refinement, SessionStore, APIIngress)


def required_cpus(settings: ServeSettings) -> float:
    """Logical CPUs the app reserves (every replica's num_cpus): a Ray with fewer never starts it."""
    total = 0.0
    for d in DEPLOYMENTS:
        replicas = settings.replicas.get(d.name) or (d.num_replicas if isinstance(d.num_replicas, int) else 1)
        total += d.ray_actor_options.get("num_cpus", 1) * replicas
    return round(total, 4)  # Ray counts resources in units of 1e-4


def ingress_options(settings: ServeSettings) -> dict:
    """The ingress's actor options: its decorator's, and OpenCV's ceiling in its environment
    (read once, when cv2 is loaded: it has to be there when the replica's process starts).
    A config file's ``ray_actor_options`` for APIIngress replace these: give the variable there
    (serve/config.yaml does); the ingress refuses to start when it is missing."""
    options = dict(APIIngress.ray_actor_options)
    runtime_env = dict(options.get("runtime_env") or {})
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **decoder_env(settings.max_pixels)}
    return {**options, "runtime_env": runtime_env}


def build(args: dict | None = None) -> serve.Application:
    """The application for ``settings`` (``serve run serve.app:build key=value`` / config ``args``)."""
    s = ServeSettings.from_args(args)
    n = lambda d: d.options(num_replicas=s.replicas[d.name]) if d.name in s.replicas else d  # noqa: E731
    models = n(Matting).bind(s), n(Fusion).bind(), n(Proposal).bind(), n(Solve).bind(s), n(Refinement).bind(s)
    return n(APIIngress).options(ray_actor_options=ingress_options(s)).bind(*models, n(SessionStore).bind(s), s)


deployment = build()
