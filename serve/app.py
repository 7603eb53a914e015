"""dugray on Ray Serve: the interactive matting session behind an HTTP API.

    serve run serve.app:deployment                       # model from $DUGRAY_MODEL or the default
    serve run serve.app:build model=runs/exp1            # or a folder / checkpoint / models:/...
    serve deploy serve/config.yaml                       # replicas, autoscaling, resources

The graph (every box a deployment, each may have several replicas)::

    HTTP -> APIIngress --+-> Matting       F: batched predict_round at working resolution
                         +-> Fusion        eq. 2 over all rounds, user labels enforced
                         +-> Proposer      Algorithm 1 on the fused epistemic map + summary
                         +-> Solver        posterior + labels + matting Laplacian (dugray.solve)
                         +-> Refinement    R (section 3.4) and the full-resolution outputs
                         +-> SessionStore  bounded SessionState.to_bytes() blobs (1 replica)

The ingress only parses requests and runs the session module's plans
(:func:`dugray.session.round_plan`, ``refine_plan``, ``solve_switch_plan``) with
:func:`dugray.session.run_plan_async`, each step on its deployment; it re-implements no
step, no round and no one-shot path, and input is checked by ``dugray.session`` (a
ValueError becomes a 422). A session's state lives in the store between requests, so any
replica can serve any request and a model replica may die between (or during: the call is
retried) two rounds without losing a session.
The ingress also serves the web page (serve/static, plain files) at ``/``. The model-side
deployments are in serve/deployments.py; :func:`build` below wires the graph.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import replace

import ray
from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from ray import serve
from ray.exceptions import ObjectLostError, RayActorError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

from dugray.compose import OutputOptions
from dugray.session import (
    FUSE,
    OUTPUTS,
    PREDICT,
    PROPOSE,
    REFINE,
    SOLVE,
    NothingToUndo,
    SessionState,
    apply_user_labels,
    new_state,
    one_shot_plan,
    refine_plan,
    round_plan,
    run_plan_async,
    solve_switch_plan,
    undo_plan,
    working_float,
)
from serve.access import Gate, Policy, RequestGuard, replica_gate
from serve.deployments import Fusion, Matting, Proposer, Refinement, SessionStore, Solver
from serve.docs import install_docs
from serve.errors import ApiError, install_error_handlers, save_error, unknown_session
from serve.imaging import CEILING_ENV, ceiling_in_effect, decode_image, decode_plane, decoder_env
from serve.limits import check_label_count, check_label_work
from serve.placement import DEPLOYMENT_NAMES, deployment_options
from serve.posterior_cache import posterior_key
from serve.readiness import Readiness
from serve.schemas import LabelRequest, SessionPatch
from serve.settings import ServeSettings
from serve.uploads import read_form, upload_openapi
from serve.views import (
    checked_sid,
    image_bytes,
    model_id,
    owner_of,
    session_view,
    state_from_bytes,
    state_to_bytes,
    web_file,
    with_request_time,
)

api = FastAPI(
    title="dugray",
    version="1",
    redoc_url=None,  # /docs only (off on a server with keys: serve/access.py)
    docs_url=None,  # /docs from this app's own files, never a CDN (serve/docs.py)
    description="Uncertainty-guided interactive image matting (dugMatting). Errors are "
    '`{"error": ..., "detail": ...}`; boxes are `[y0, x0, y1, x1]` in full-resolution pixels.',
)
install_error_handlers(api)
install_docs(api)
api.add_middleware(RequestGuard, find_gate=replica_gate)  # keys, rate and body limits before any route (serve/access)
# NB: serve.ingress pickles the routes when the class is decorated: everything they use
# must be imported or defined above the APIIngress class.
log = logging.getLogger("ray.serve")
MODEL_DIED = (
    RayActorError,
    ObjectLostError,
    ReplicaUnavailableError,
    DeploymentUnavailableError,
)  # a lost node: its results too
PNG = {200: {"content": {"image/png": {}}}}  # for /docs
ONE_SHOT = {200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}}
GRAPH = DEPLOYMENT_NAMES
"""The deployments of the app, by name: /v1/health is ok only when each can serve (DEPLOYMENTS below)."""


@serve.deployment(ray_actor_options={"num_cpus": 0.2}, max_ongoing_requests=64)
@serve.ingress(api)
class APIIngress:
    """HTTP under /v1: validates input, runs the session steps on the deployments above; the web page at /."""

    def __init__(self, matting, fusion, proposer, solver, refinement, store, settings: ServeSettings):
        if not ceiling_in_effect(settings.max_pixels):  # the decoder's own limit under the header checks
            raise RuntimeError(
                f"OpenCV's {CEILING_ENV} is not {settings.max_pixels} (max_pixels) in this replica: it "
                "must be in the ingress's environment when cv2 is loaded (serve.app.build puts it there)"
            )
        self.matting, self.fusion, self.proposer, self.solver = matting, fusion, proposer, solver
        self.refinement, self.store = refinement, store
        self.settings, self.config = settings, settings.session_config()
        self.readiness = Readiness(serve.get_replica_context().app_name, GRAPH)
        self.gate = Gate(Policy.from_settings(settings))  # RequestGuard finds it through replica_gate

    @api.get("/", include_in_schema=False)
    async def page(self) -> FileResponse:
        """The web page for interactive cutting-out (serve/static: plain files, no build step)."""
        return web_file("index.html")

    @api.get("/static/{name}", include_in_schema=False)
    async def static(self, name: str) -> FileResponse:
        """A file of the web page (index.html, app.js or style.css) or of /docs; 404 for any other name."""
        return web_file(name)

    @api.post("/v1/sessions", status_code=201, openapi_extra=upload_openapi("image", "trimap", "mask"))
    async def create_session(self, request: Request, solve: bool | None = None) -> dict:
        """Start a session from an image (optional trimap or binary mask): round 1 + proposals.

        ``solve`` switches the uncertainty-guided solve on or off for this session (default:
        the server's session config).
        """
        t0 = time.perf_counter()
        state = await self._new_state(request, solve)
        sid = uuid.uuid4().hex
        uncertainty = await self._run(round_plan(state, {}), sid)
        view = session_view(sid, state, uncertainty)
        await self._save(sid, state, view, None, owner_of(request), await image_bytes(state))
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
        check_label_count(len(body.labels), self.settings)
        state, _, version = await self._load(sid, request)
        if len(state.rounds) >= self.settings.max_rounds:
            raise ApiError(409, "round limit reached", f"a session may run {self.settings.max_rounds} rounds")
        try:
            apply_user_labels(state, [item.pair() for item in body.labels])
        except ValueError as exc:
            raise ApiError(422, "invalid labels", str(exc)) from None
        await asyncio.to_thread(check_label_work, state, self.settings)  # nothing runs (or is stored) past the bounds
        uncertainty = await self._run(round_plan(state, {"label_s": time.perf_counter() - t0}), sid)
        view = session_view(sid, state, uncertainty)
        await self._save(sid, state, view, version, owner_of(request))
        return with_request_time(view, t0)

    @api.patch("/v1/sessions/{sid}")
    async def patch_session(self, sid: str, body: SessionPatch, request: Request) -> dict:
        """Change a session's options: ``{"solve": false}`` shows the network's fused matte,
        ``{"solve": true}`` the uncertainty-guided solve (run now); refinement is reset."""
        t0 = time.perf_counter()
        state, old_view, version = await self._load(sid, request)
        await self._run(solve_switch_plan(state, body.solve), sid)
        view = session_view(sid, state, old_view["uncertainty"])
        await self._save(sid, state, view, version, owner_of(request))
        return with_request_time(view, t0)

    @api.post("/v1/sessions/{sid}/refine")
    async def refine(self, sid: str, request: Request) -> dict:
        """Refine fine detail where aleatoric uncertainty is high (until the next round)."""
        t0 = time.perf_counter()
        state, old_view, version = await self._load(sid, request)
        await self._run(refine_plan(state), sid)
        view = session_view(sid, state, old_view["uncertainty"])
        await self._save(sid, state, view, version, owner_of(request))
        return with_request_time(view, t0)

    @api.post("/v1/sessions/{sid}/undo", responses={409: {"description": "the session is at its first round"}})
    async def undo(self, sid: str, request: Request) -> dict:
        """Back to the round before: matte, proposals, labels and uncertainty exactly as that round
        showed them (a refinement is dropped); repeatable down to round 1, then 409."""
        t0 = time.perf_counter()
        state, _, version = await self._load(sid, request)
        try:
            uncertainty = await self._run(undo_plan(state), sid)
        except NothingToUndo as exc:
            raise ApiError(409, "nothing to undo", str(exc)) from None
        view = session_view(sid, state, uncertainty)
        await self._save(sid, state, view, version, owner_of(request))
        return with_request_time(view, t0)

    @api.get("/v1/sessions/{sid}/{output}.png", response_class=Response, responses=PNG)
    async def output(self, sid: str, output: str, request: Request) -> Response:
        """image (the input, RGB), alpha (grey), cutout (RGBA), epistemic or aleatoric (heat maps); full resolution."""
        if output not in OUTPUTS:
            raise ApiError(404, "unknown output", f"expected one of {list(OUTPUTS)}")
        state, _, _ = await self._load(sid, request, image=True)  # every output is drawn at full size
        return Response(await self._render(state, output, sid=sid), media_type="image/png")

    @api.delete("/v1/sessions/{sid}", status_code=204)
    async def delete_session(self, sid: str, request: Request) -> Response:
        """Delete the session and its stored state: 204, or 404 if unknown, expired or not yours."""
        if not await self._store("delete", checked_sid(sid), owner_of(request)):
            raise unknown_session(sid)
        return Response(status_code=204)

    @api.post(
        "/v1/matte",
        response_class=Response,
        openapi_extra=upload_openapi("image", "trimap", "mask"),
        responses=ONE_SHOT,
    )
    async def matte(
        self,
        request: Request,
        output: str = "rgba",
        refine: bool | None = None,
        solve: bool | None = None,
        bg_color: str | None = None,
        format: str = "png",
        crop: bool = False,
        crop_margin: str = "0",
        max_side: int | None = None,
    ) -> Response:
        """One shot, no session: the RGBA cutout (``output=rgba``) or the alpha matte (``alpha``), the
        same bytes as ``dugray cutout`` and ``dugray batch`` give (:func:`dugray.session.one_shot_plan`):
        one round, solved (``solve=false``: the network's matte), not refined unless ``refine=true``
        (then the refiner, and the solve from its matte).

        Delivered as background-removal clients expect (:mod:`dugray.compose`): ``bg_color``
        (hex, e.g. ``81d4fa``) composites the cut-out over a colour, ``format`` is png, jpg or
        webp (JPEG without ``bg_color``: over white), ``crop`` crops to the object with
        ``crop_margin`` (pixels, ``12px`` or ``10%``), ``max_side`` shrinks to a preview size.
        Every option is checked before the upload is read (422).
        """
        if output not in ("rgba", "alpha"):
            raise ApiError(422, "invalid request", "output must be rgba or alpha")
        try:
            options = OutputOptions(
                bg_color=bg_color, format=format, crop=crop, crop_margin=crop_margin, max_side=max_side
            )
            if output == "alpha" and bg_color is not None:
                raise ValueError("bg_color applies to output=rgba, not to the alpha matte")
        except ValueError as exc:
            raise ApiError(422, "invalid option", str(exc)) from None
        state = await self._new_state(request, solve)
        try:
            options.check_size(state.full_shape)  # before the round, not a 500 after it
        except ValueError as exc:
            raise ApiError(422, "invalid option", str(exc)) from None
        refs: dict = {}
        await self._run(one_shot_plan(state, refine), refs=refs)  # the one-shot path, as in process
        data = await self._render(state, "cutout" if output == "rgba" else "alpha", options, fused=refs.get("fused"))
        return Response(data, media_type=options.media_type)

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
        body = {
            "status": "ok" if not missing else "unavailable" if self.readiness.ever_ready else "starting",
            "model": model_id(self.settings.model),
            "auth": bool(self.settings.api_keys),
            "store": stats,
        }
        if missing:
            return JSONResponse({**body, "not_ready": missing}, status_code=503, headers={"Retry-After": "5"})
        return body

    async def drain(self, timeout_s: float = 30.0) -> int:
        """A clean stop (``dugray serve`` on SIGTERM / SIGINT, through a handle, not HTTP): refuse new
        requests with 503 and wait up to ``timeout_s`` for those in flight; how many were left."""
        return await self.gate.drain(timeout_s)

    # ---- the session module's plans, each step on its deployment

    async def _run(self, plan, sid: str | None = None, refs: dict | None = None) -> dict:
        """Run a plan of :mod:`dugray.session`; returns the proposals' uncertainty summary
        (empty when the plan proposed nothing). The deployments get the session at working
        resolution (:meth:`SessionState.working`, never the full-size image), put in the object
        store once per round and read there by every step of it. A session's posterior is kept
        by Fusion under :func:`serve.posterior_cache.posterior_key` (``sid`` given). ``refs``
        (given: the one-shot path) gets the round's fused posterior as ``"fused"``, and
        refinement's matte stays a reference there too, so the output is rendered from them
        where they are instead of fusing again or bouncing the matte through this replica."""
        summary: dict = {}
        refs = {} if refs is None else refs
        shared: dict = {}

        def working(state):
            if "work" not in shared:  # after the network's output is in state.rounds; the same for every later step
                shared["work"] = ray.put(state.working())
            return shared["work"]

        async def predict(state):
            shared.clear()  # a new round: the working state changes
            return await self._call(self.matting.predict, (working_float(state), state.user_map))

        async def fuse(state):
            refs["fused"] = await self._fuse(state, sid, working(state))  # handed on to the next steps by reference
            return refs["fused"]

        async def propose(state, fused):
            proposals, summary["uncertainty"] = await self._call(self.proposer.propose, working(state), fused)
            return proposals

        async def solve(state, fused):
            return await self._call(self.solver.solve, working(state), fused)

        async def refine(state, fused):
            if sid is None:  # one shot: the matte goes on to the render where it is, not through here
                return self.refinement.refine.remote(working(state), fused)
            return await self._call(self.refinement.refine, working(state), fused)

        await run_plan_async(plan, {PREDICT: predict, FUSE: fuse, PROPOSE: propose, SOLVE: solve, REFINE: refine})
        return summary.get("uncertainty", {})

    async def _fuse(self, state: SessionState, sid: str | None, work=None):
        """The Fusion deployment's posterior of ``state`` (a reference), kept there per session version;
        ``work`` is the state's working form when it is in the object store already."""
        key = None if sid is None else await asyncio.to_thread(posterior_key, sid, state)
        return self.fusion.fuse.remote(state.working() if work is None else work, key)

    async def _render(
        self, state: SessionState, output: str, options: OutputOptions | None = None, sid: str | None = None, fused=None
    ) -> bytes:
        """One output of a session, rendered by the Refinement deployment from what it needs: the
        current working matte, or the fused posterior (``fused``: the round's, when the caller has
        it; else fused only when the output needs it, and then found in Fusion's cache when the
        session's round asked for it already)."""
        matte_w = state.refined if state.refined is not None else state.solved
        needs_posterior = output in ("epistemic", "aleatoric") or (output in ("alpha", "cutout") and matte_w is None)
        if needs_posterior and fused is None:
            fused = await self._fuse(state, sid)
        return await self._call(
            self.refinement.render,
            output,
            state.image,
            state.image_w,
            state.config,
            matte_w,
            fused if needs_posterior else None,
            options,
        )

    async def _call(self, method, *args):
        """``await method.remote(*args)``, retried while the replica that had it is replaced (a model
        replica holds nothing a request needs; the store's sessions are on storage)."""
        deadline = time.monotonic() + self.settings.retry_s
        while True:
            try:
                return await method.remote(*args)
            except MODEL_DIED as exc:
                name = method.deployment_name
                if time.monotonic() > deadline:
                    raise ApiError(503, f"{name} unavailable", type(exc).__name__) from None
                log.warning("%s replica lost (%s); retrying", name, type(exc).__name__)
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
        limit, budget = self.settings.max_pixels, self.settings.max_decode_bytes
        image = decode_image(form["image"], limit, max_bytes=budget)
        planes = {name: decode_plane(form[name], limit, name, budget) for name in ("trimap", "mask") if name in form}
        try:
            return new_state(image, config, **planes)
        except ValueError as exc:
            raise ApiError(422, "invalid input", str(exc)) from None

    async def _load(self, sid: str, request: Request, image: bool = False) -> tuple[SessionState, dict, int]:
        """(state, view, version) of a session of the requester; the full-size image only when
        ``image`` (the outputs that read it), else the state has ``image`` None."""
        got = await self._stored("get", sid, request)
        blob, view, version = got
        pixels = await self._stored("image", sid, request) if image else None
        try:
            return await state_from_bytes(blob, pixels), view, version  # off the event loop
        except Exception as exc:  # noqa: BLE001 - any unreadable state: the session is gone, the replica is not
            log.warning("session %s: stored state unreadable (%s); quarantined", sid, type(exc).__name__)
            await self._store("quarantine", sid, f"unreadable state ({type(exc).__name__})")
            raise ApiError(410, "session lost", "its stored state could not be read; start a new session") from None

    async def _stored(self, method: str, sid: str, request: Request):
        """The store's ``get`` or ``image`` of a session of the requester; 404, 410 or 503 when it has none."""
        got = await self._store(method, checked_sid(sid), owner_of(request))
        if got is None:
            raise unknown_session(sid)
        if isinstance(got, dict) and "unavailable" in got:  # the storage failed; the session is kept
            raise ApiError(
                503, "session storage unavailable", "the session is kept; retry", headers={"Retry-After": "5"}
            )
        if isinstance(got, dict):  # its stored state was missing or cut short: quarantined by the store
            raise ApiError(410, "session lost", "its stored state could not be read; start a new session")
        return got

    async def _save(
        self,
        sid: str,
        state: SessionState,
        view: dict,
        version: int | None,
        owner: str | None,
        image: bytes | None = None,
    ) -> None:
        """Write the state (without its image); ``image`` once, when the session is made."""
        result = await self._store("put", sid, await state_to_bytes(state), view, version, owner, image)
        if not result["ok"]:
            raise save_error(result["error"], sid, self.settings.session_ttl_s)

    async def _store(self, method: str, *args):
        """A call on the session store (:meth:`_call`: retried while its replica is replaced)."""
        return await self._call(getattr(self.store, method), *args)


DEPLOYMENTS = (Matting, Fusion, Proposer, Solver, Refinement, SessionStore, APIIngress)


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


def build(args: dict | ServeSettings | None = None) -> serve.Application:
    """The application for ``args`` (``serve run serve.app:build key=value`` / config ``args``), or for
    settings a caller has already resolved (``dugray serve`` checks them before Ray starts)."""
    s = args if isinstance(args, ServeSettings) else ServeSettings.from_args(args)
    n = lambda d, actor=None: d.options(**deployment_options(d, s, actor))  # noqa: E731 - replicas, placement
    models = n(Matting).bind(s), n(Fusion).bind(s), n(Proposer).bind(s), n(Solver).bind(s), n(Refinement).bind(s)
    return n(APIIngress, ingress_options(s)).bind(*models, n(SessionStore).bind(s), s)


deployment = build()
