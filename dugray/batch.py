"""Cut-outs for many images at once on Ray Data: resumable, with a report of what failed.

    from dugray.batch import BatchOptions, run_batch

    report = run_batch("photos/", "out/", BatchOptions(outputs=("cutout", "alpha")))
    print(report.counts)                      # {'ok': 41, 'skipped': 0, 'failed': 1}

Inputs: a folder (searched recursively for image files), one image, a ``.txt`` file with
one path or URI per line, a list of paths / URIs, or a URI pyarrow's filesystems open
(``s3://bucket/photos/``, ``gs://...``, ``file:///...``). Every image goes through
:func:`process_image`: the one-shot matte (:func:`dugray.oneshot.matte_image`, the same plan
and rendering as ``dugray cutout`` and ``POST /v1/matte``, so the same bytes), then its
outputs are written. With ``engine="ray"`` a pool of Ray Data
actors, each loading the networks once, streams the images through ``map_batches``;
``engine="loop"`` runs the same function in a plain loop in this process; ``engine="auto"``
(the default) picks one by :func:`dugray.batch_engine.choose_engine` (the loop on a machine
of few CPUs without a cluster, or for a small job) and says why in ``report.engine_reason``.

OUT_DIR (``<rel>``: the input's path below its folder, or its file name for a list, without
the suffix)::

    cutout/<rel>.png          RGBA cut-out
    alpha/<rel>.png           alpha matte (8-bit grey)
    uncertainty/<rel>.json    size, mean and 95th-percentile epistemic / aleatoric
                              uncertainty, the proposals a user would be asked about,
                              seconds, the Ray node that made it; written last, so it
                              marks the image as done
    summary.json              counts, options, failures, the images most worth a review
    results.csv               one row per input: status ok / skipped / failed, error, node

Resumable: an input whose outputs all exist is skipped (status ``skipped``), so a rerun
after an interruption does only the rest; files are written to a temporary name and
renamed, so a killed run leaves no half-written file behind. A corrupt, unreadable or too
small image gives a ``failed`` row with its reason and never stops the batch; the next run
tries it again. Outputs are local files (the output folder must be on a disk every Ray
worker sees when the pool spans several nodes).

On a cluster (``address``): the actors spread over the nodes; when a node dies, Ray restarts
its actor and retries the images it held on the nodes left (Ray Data's actor defaults), so
the run still finishes with one output set per input and one report row per input; an
image the lost node had already finished is not redone. If the run stops anyway (the
driver killed, the head lost), rerunning the same command does only what is missing.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from dugray import defaults
from dugray.batch_engine import choose_engine, local_cpus
from dugray.data.io import IMAGE_EXTENSIONS, read_rgb, write_atomic
from dugray.models import load_networks
from dugray.oneshot import matte_image
from dugray.session import MattingSession, SessionConfig, fused_nig, propose_patches, uncertainty_maps

OUTPUT_KINDS = ("cutout", "alpha")
ENGINES = ("auto", "ray", "loop")
ROW_FIELDS = ("source", "rel", "status", "error", "seconds", "epistemic_mean", "aleatoric_mean", "node")
LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class BatchOptions:
    """What every image gets.

    outputs : any of OUTPUT_KINDS. refine : run the refiner (None: the one-shot default, no).
    model, refiner : as :func:`load_networks` takes them. session : SessionConfig overrides.
    threads : torch threads of each Ray actor (the loop engine keeps this process's).
    """

    outputs: tuple[str, ...] = ("cutout",)
    refine: bool | None = None
    model: str = "default"
    refiner: str | None = None
    session: dict = field(default_factory=dict)
    threads: int = 1

    def __post_init__(self):
        object.__setattr__(self, "outputs", tuple(self.outputs))
        unknown = sorted(set(self.outputs) - set(OUTPUT_KINDS))
        if not self.outputs or unknown:
            raise ValueError(f"outputs must be some of {OUTPUT_KINDS}, got {list(self.outputs)}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        SessionConfig.from_dict(self.session)  # a typo fails here, not once per image

    def networks(self):
        """(matting network, refiner or None); no refiner is loaded when refine is off."""
        refine = defaults.ONE_SHOT_REFINE if self.refine is None else self.refine
        return load_networks(self.model, self.refiner if refine else "none")


@dataclass
class BatchReport:
    """One row per input (see ROW_FIELDS), sorted by ``rel``, the run's wall time, and the engine
    that ran it ("loop" or "ray"; None when nothing was left to do) with the reason it was picked."""

    rows: list[dict]
    seconds: float
    out_dir: Path
    engine: str | None = None
    engine_reason: str = ""

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(r["status"] for r in self.rows)
        return {s: c.get(s, 0) for s in ("ok", "skipped", "failed")}

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "failed"]


# --------------------------------------------------------------------------- one image


def uncertainty_report(session: MattingSession) -> dict:
    """What a reviewer needs to know about a matte: how unsure the model is, and where."""
    fused = fused_nig(session.state.working())
    maps = uncertainty_maps(fused)
    h, w = session.state.full_shape
    report = {
        "width": w,
        "height": h,
        "rounds": session.rounds,
        "refined": session.state.refined is not None,
        "solve": dict(session.state.solve_info) or None,
    }
    for name in ("epistemic", "aleatoric"):
        v = maps[name][np.isfinite(maps[name])]
        report[f"{name}_mean"] = float(v.mean()) if v.size else None
        report[f"{name}_p95"] = float(np.percentile(v, 95)) if v.size else None
    proposals = session.proposals or propose_patches(session.state.working(), nig=fused)  # a one-shot round asks nobody
    report["proposals"] = [{"box": list(p.box), "score": float(p.score)} for p in proposals]
    return report


def output_paths(out_dir, rel: str, outputs) -> dict[str, Path]:
    """Where an input's outputs go; the ``summary`` JSON is always one of them."""
    out = Path(out_dir)
    paths = {kind: out / kind / f"{rel}.png" for kind in outputs}
    paths["summary"] = out / "uncertainty" / f"{rel}.json"
    return paths


def process_image(
    source: str, rel: str, out_dir, model, refiner, options: BatchOptions, node: str | None = None
) -> dict:
    """One input -> its outputs on disk and a status row; any failure is the row's ``error``.
    ``node`` (the Ray node id) goes into the summary, so a cluster run says where each came from."""
    t0 = time.perf_counter()
    paths = output_paths(out_dir, rel, options.outputs)
    try:
        s = matte_image(
            read_rgb(source), model, refiner, SessionConfig.from_dict(options.session), refine=options.refine
        )
        summary = {"source": source, **uncertainty_report(s), "node": node}
        for kind in OUTPUT_KINDS:
            if kind in paths:
                write_atomic(paths[kind], s.render(kind))
        summary["seconds"] = time.perf_counter() - t0
        write_atomic(paths["summary"], json.dumps(summary, indent=1).encode())
        return _row(source, rel, "ok", summary=summary)
    except Exception as exc:  # noqa: BLE001 - one bad image is reported, never fatal to the batch
        reason = str(exc).splitlines()[0] if str(exc) else ""
        return _row(
            source, rel, "failed", error=f"{type(exc).__name__}: {reason}", seconds=time.perf_counter() - t0, node=node
        )


def _row(source, rel, status, error="", seconds=0.0, summary=None, node=None) -> dict:
    summary = summary or {}
    nan = float("nan")
    return {
        "source": source,
        "rel": rel,
        "status": status,
        "error": error,
        "seconds": float(summary.get("seconds", seconds)),
        "epistemic_mean": _num(summary.get("epistemic_mean", nan)),
        "aleatoric_mean": _num(summary.get("aleatoric_mean", nan)),
        "node": summary.get("node", node),
    }


def _num(v) -> float:
    return float("nan") if v is None else float(v)


# --------------------------------------------------------------------------- inputs


def list_inputs(source, exclude=None) -> list[tuple[str, str]]:
    """(path or URI, rel) of every input image; ``exclude`` is a folder to leave out (OUT_DIR)."""
    if isinstance(source, (list, tuple)):
        items = [(str(s), PurePosixPath(str(s)).stem) for s in source]
    elif "://" in str(source):
        items = _list_uri(str(source))
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            items = _list_folder(path, exclude)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            lines = [s.strip() for s in path.read_text().splitlines()]
            return list_inputs([s for s in lines if s and not s.startswith("#")])
        elif path.is_file():
            items = [(str(path), path.stem)]
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
    seen: dict[str, str] = {}
    for src, rel in items:
        if rel in seen:
            raise ValueError(f"{seen[rel]} and {src} would write the same outputs ({rel}.png); rename one")
        seen[rel] = src
    return items


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _list_folder(folder: Path, exclude) -> list[tuple[str, str]]:
    skip = Path(exclude).expanduser().resolve() if exclude is not None else None
    items = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if not f.is_file() or not _is_image_name(f.name) or any(p.startswith(".") for p in rel.parts):
            continue
        if skip is not None and f.resolve().is_relative_to(skip):
            continue
        items.append((str(f), rel.with_suffix("").as_posix()))
    return items


def _list_uri(uri: str) -> list[tuple[str, str]]:
    import pyarrow.fs as pafs

    fs, inner = pafs.FileSystem.from_uri(uri)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.File:
        return [(uri, PurePosixPath(inner).stem)]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no such file or folder: {uri}")
    base, inner = uri.rstrip("/"), inner.rstrip("/")
    items = []
    for f in sorted(fs.get_file_info(pafs.FileSelector(inner, recursive=True)), key=lambda f: f.path):
        rel = f.path[len(inner) + 1 :]
        if (
            f.type == pafs.FileType.File
            and _is_image_name(f.base_name)
            and not any(p.startswith(".") for p in rel.split("/"))
        ):
            items.append((f"{base}/{rel}", str(PurePosixPath(rel).with_suffix(""))))
    return items


def finished(out_dir, rel: str, outputs) -> dict | None:
    """The stored summary of an input whose outputs all exist, else None (to be done)."""
    paths = output_paths(out_dir, rel, outputs)
    if not all(p.is_file() for p in paths.values()):
        return None
    try:
        return json.loads(paths["summary"].read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- the batch


class _Matter:
    """``map_batches`` callable: each actor of the pool loads the networks once, then mattes rows."""

    def __init__(self, out_dir: str, options: BatchOptions):
        import ray

        self.out_dir, self.options = out_dir, options
        self.model, self.refiner = options.networks()
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict) -> dict:
        import torch

        # torch's thread count is per thread and Ray calls this on another thread than
        # __init__: unset, each actor used every core (4 threads on 2 cores ran 8x slower)
        torch.set_num_threads(self.options.threads)
        rows = [self.one(str(s), str(r)) for s, r in zip(batch["source"], batch["rel"])]
        return {k: np.array([row[k] for row in rows]) for k in ROW_FIELDS}

    def one(self, source: str, rel: str) -> dict:
        """An image's row; one already finished is not redone: Ray retries the tasks of a node
        that died, and the first try may have written every output before the node went."""
        done = finished(self.out_dir, rel, self.options.outputs)
        if done is not None:
            return _row(source, rel, "ok", summary=done)
        return process_image(source, rel, self.out_dir, self.model, self.refiner, self.options, node=self.node)


def run_batch(
    source,
    out_dir,
    options: BatchOptions | None = None,
    engine: str = "auto",
    concurrency: int | None = None,
    address: str | None = None,
    progress=True,
    announce: Callable[[str, str], None] | None = None,
) -> BatchReport:
    """Matte every input not already done; write summary.json and results.csv in ``out_dir``.

    ``engine="ray"`` joins the cluster at ``address`` (or RAY_ADDRESS) or starts a local Ray
    when none is running in this process, and uses ``concurrency`` actors (default: the
    cluster's CPUs / ``options.threads``); ``"loop"`` runs in this process; ``"auto"`` picks
    one (:func:`dugray.batch_engine.choose_engine`) once the images left to do are known.
    ``announce(engine, why)`` is called before any image is matted (not when all are done).
    ``progress``: a bar on stderr (True), on a stream given instead, or none (False). Raises
    ValueError / FileNotFoundError for bad inputs or models before any image is processed;
    per-image problems are rows.
    """
    options = options or BatchOptions()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    t0 = time.perf_counter()
    out = Path(out_dir).expanduser()
    items = list_inputs(source, exclude=out)
    if not items:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {source}")
    rows, todo = [], []
    for src, rel in items:
        done = finished(out, rel, options.outputs)
        if done is None:
            todo.append((src, rel))
        else:
            rows.append(_row(src, rel, "skipped", summary={**done, "seconds": 0.0}))
    reason = "as asked"
    if todo and engine == "auto":
        ray_running = "ray" in sys.modules and sys.modules["ray"].is_initialized()
        engine, reason = choose_engine(
            len(todo), local_cpus(), address or os.environ.get("RAY_ADDRESS"), ray_running, concurrency
        )
    if todo and announce is not None:
        announce(engine, reason)
    if todo:
        model, refiner = options.networks()  # a bad model fails here, once
        if engine == "loop":
            rows += [process_image(src, rel, out, model, refiner, options) for src, rel in _bar(todo, progress)]
        else:
            rows += _run_ray(todo, out, options, concurrency, address, progress)
    report = BatchReport(
        sorted(rows, key=lambda r: r["rel"]),
        time.perf_counter() - t0,
        out,
        engine if todo else None,
        reason if todo else "nothing to do",
    )
    write_reports(report, source, options)
    return report


def _run_ray(todo, out: Path, options: BatchOptions, concurrency, address, progress) -> list[dict]:
    address = address or os.environ.get("RAY_ADDRESS")
    if not address and "ray" not in sys.modules:
        # a new local Ray: token authentication, Ray's own default, said before Ray reads its
        # config (at import), so Ray does not warn that it chose it
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if not ray.is_initialized():
        # address="local" starts a private instance; a bare ray.init() would join any local cluster
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1) // options.threads))
    concurrency = min(concurrency, len(todo))
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # one bar, in images, below
    try:
        ds = ray.data.from_items([{"source": _absolute(s), "rel": r} for s, r in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(
            _Matter,
            fn_constructor_args=(str(out.absolute()), options),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_cpus=options.threads,
        )
        rows = [
            {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}
            for row in _bar(ds.iter_rows(), progress, total=len(todo))
        ]
    finally:
        ctx.enable_progress_bars = bars
    return _one_row_per_input(todo, rows)


def _absolute(source: str) -> str:
    """A local path as every node's workers read it (their working folder is not ours); URIs as they are."""
    return source if "://" in source else os.path.abspath(source)


def _one_row_per_input(todo, rows: list[dict]) -> list[dict]:
    """Exactly one row per input, spelled as listed: the report stays true even if a retry after a
    lost node ever returned a row twice, or none (that input is then failed, for the next run)."""
    by_rel = {row["rel"]: row for row in rows}
    lost = "RuntimeError: no result came back from Ray (a node lost?); run again to do it"
    return [{**by_rel.get(rel, _row(src, rel, "failed", error=lost)), "source": src} for src, rel in todo]


def _bar(iterable, progress, total: int | None = None):
    """A bar in images: none when ``progress`` is false, on stderr when true, on ``progress`` when a stream."""
    from tqdm import tqdm

    return tqdm(
        iterable,
        total=total,
        disable=not progress,
        file=progress if hasattr(progress, "write") else None,
        unit="img",
        desc="matting",
        dynamic_ncols=True,
    )


def write_reports(report: BatchReport, source, options: BatchOptions) -> None:
    """summary.json (counts, failures, the most uncertain images) and results.csv (every row)."""
    done = [r for r in report.rows if r["status"] != "failed" and np.isfinite(r["epistemic_mean"])]
    done.sort(key=lambda r: -r["epistemic_mean"])
    processed = report.counts["ok"]
    summary = {
        "source": source if isinstance(source, (list, tuple)) else str(source),
        "out_dir": str(report.out_dir),
        "engine": report.engine,
        "engine_reason": report.engine_reason,
        "options": asdict(options),
        "counts": report.counts,
        "seconds": report.seconds,
        "images_per_s": processed / report.seconds if processed else None,
        "failures": [{k: r[k] for k in ("source", "rel", "error")} for r in report.failures],
        "most_uncertain": [{"rel": r["rel"], "epistemic_mean": r["epistemic_mean"]} for r in done[:10]],
    }
    report.out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(report.out_dir / "summary.json", json.dumps(summary, indent=1).encode())
    tmp = report.out_dir / ".results.csv.part"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, ROW_FIELDS)
        writer.writeheader()
        writer.writerows(report.rows)
    os.replace(tmp, report.out_dir / "results.csv")
