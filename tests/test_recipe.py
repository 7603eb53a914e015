"""The training recipe as a new user reads it, and every repository file the help and the docs name.

The recipe is taken from README.md itself (the block after ``<!-- recipe: training``), so the
commands tested are the commands shown; docs/training.md must show the same block.
"""

import contextlib
import io
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dugray.cli import main

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- recipe: training"
COMMANDS = ["", "cutout", "interactive", "batch", "serve", "eval", "train"]
PATH = re.compile(r"(?<![\w/.$~:-])((?:[\w.-]+/)+[\w.-]+\.(?:ya?ml|py|md|toml|sh|json|png|pt|parquet|csv))(?![\w/])")
SOURCE = (".yaml", ".yml", ".py", ".md", ".toml", ".sh")
OUTPUTS = ("runs", "data", "eval", "out", "mlruns", "artifacts")
"""Folders the commands write (outputs named in examples, not files of the repository)."""


def recipe(path: Path) -> str:
    """The fenced bash block right after the recipe marker in ``path``."""
    text = path.read_text()
    assert MARK in text, f"{path.name} has no training recipe"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARK) :], re.S)
    return block.group(1)


def test_readme_and_training_md_show_the_same_training_recipe():
    readme = recipe(ROOT / "README.md")
    assert readme == recipe(ROOT / "docs" / "training.md")
    lines = [line.split("#")[0].strip() for line in readme.splitlines()]
    assert lines[1] == "ray start --head --num-cpus 2" and lines[2] == "export RAY_AUTH_MODE=token"
    assert any(line.startswith("python jobs/make_data.py synth") and "--n 24 --size 128" in line for line in lines)
    assert any(line.startswith("ray job submit") for line in lines) and "--cpus-per-worker 0.5" in readme
    assert "mlflow runs list" in readme and "runs/tiny/mlflow.db" in readme
    assert "No available agent to submit job" in (ROOT / "README.md").read_text()  # what AGENT_RETRY does, told


def help_texts() -> dict[str, str]:
    """``dugray [COMMAND] --help`` and ``python jobs/NAME.py --help``, run in this process (with the
    ``job_script_path`` fixture: sys.path as the script would have it)."""
    texts = {}
    for command in COMMANDS:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([command, "--help"] if command else ["--help"])
        texts[f"dugray {command}".strip()] = out.getvalue()
    for job in sorted((ROOT / "jobs").glob("*.py")):
        out, argv = io.StringIO(), sys.argv
        sys.argv = [str(job), "--help"]
        try:
            with (
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(io.StringIO()),
                contextlib.suppress(SystemExit),
            ):
                runpy.run_path(str(job), run_name="__main__")
        finally:
            sys.argv = argv
        texts[f"jobs/{job.name}"] = out.getvalue()
    return texts


def named_files(text: str, tracked_dirs: set[str]) -> set[str]:
    """Paths in ``text`` that name a file of the repository: under one of its folders, or a source
    or config file anywhere (not a placeholder such as jobs/NAME.py, not an output, not ../ outside)."""
    found = set()
    for path in PATH.findall(text):
        parts = path.split("/")
        if path.startswith("../") or parts[0] in OUTPUTS or any(Path(p).stem.isupper() for p in parts):
            continue
        if parts[0] in tracked_dirs or path.endswith(SOURCE):
            found.add(path)
    return found


@pytest.fixture(scope="module")
def tracked_dirs() -> set[str]:
    return {p.parts[0] for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".venv", "__"))} | {".ci"}


def test_every_repository_file_named_in_help_texts_and_docs_exists(tracked_dirs, job_script_path):
    texts = help_texts()
    assert len(texts) == len(COMMANDS) + len(list((ROOT / "jobs").glob("*.py")))
    assert all("usage:" in text for text in texts.values()), [k for k, t in texts.items() if "usage:" not in t]
    docs = {p.relative_to(ROOT).as_posix(): p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    missing, checked = [], 0
    for where, text in {**texts, **docs}.items():
        base = (ROOT / where).parent if where.endswith(".md") else ROOT
        for path in named_files(text, tracked_dirs):
            checked += 1
            if not (ROOT / path).exists() and not (base / path).exists():
                missing.append(f"{where}: {path}")
    assert checked > 100 and not missing, missing
    assert "jobs/configs/default_model.yaml" in texts["dugray train"]  # the config the help shows is real


RAY_WRAPPER = """
ray() {  # the block's own commands, on this test's own ports (RECIPE_*, from the fixture)
  if [ "$1 $2" = "start --head" ]; then
    shift 2
    command ray start --head --port "$RECIPE_GCS_PORT" --dashboard-port "$RECIPE_DASHBOARD_PORT" \\
      --dashboard-agent-listen-port "$RECIPE_AGENT_PORT" --ray-client-server-port "$RECIPE_CLIENT_PORT" "$@"
    return
  fi
  if [ "$1 $2" = "job submit" ]; then
    shift 2
    # what the README tells a user: 'No available agent' right after `ray start` means try again
    for attempt in 1 2 3 4 5 6; do
      # the log goes outside the working directory: a file written into it while `ray job submit` hashes
      # and zips it made the package the job asked for another than the one uploaded ("Failed to
      # download runtime_env file package ... prematurely deleted")
      command ray job submit --address "http://127.0.0.1:$RECIPE_DASHBOARD_PORT" "$@" 2>&1 \\
        | tee "$RAY_TMPDIR/ray-job.log" && return 0
      grep -q "No available agent to submit job" "$RAY_TMPDIR/ray-job.log" || return 1
      echo "recipe test: Ray's job agent is not up yet; submitting again in 10 s" >&2
      sleep 10
    done
    return 1
  fi
  command ray "$@"
}
"""
"""What the test adds to the block. Ports: the head gets free ports of its own instead of Ray's
defaults (6379, 8265, 52365, 10001), so that another Ray on the machine (another test's, a
parallel test worker's, a user's) neither blocks the recipe nor is joined by it; the commands
are otherwise the block's. Retry: a busy machine's fresh Ray may answer the first submission
with Ray's own "No available agent to submit job, please try again later" (its job agent gets
10 s to come up); the README says to run it again, and so does this."""


def stop_processes_under(folder: str) -> None:
    """Stop the Ray this test started: the processes whose command line names its temp folder and
    everything they started (never `ray stop`, which stops every Ray on the machine)."""

    def tree() -> set[int]:
        parents, pids = {}, set()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmd = (proc / "cmdline").read_bytes()
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if folder.encode() in cmd and int(proc.name) != os.getpid():
                pids.add(int(proc.name))
        grew = True
        while grew:
            more = {pid for pid, ppid in parents.items() if ppid in pids} - pids
            grew, pids = bool(more), pids | more
        return pids

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in tree():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(3)


def free_ports(count: int) -> list[str]:
    """``count`` distinct ports free on every address right now (held open together, so none repeats)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("", 0))
            held.append(s)
        return [str(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """The README's block in a copy of the repository (its tracked files, this test's venv as .venv),
    run once; its Ray head stays up for the module's tests and is stopped after them.
    Yields (the block's process, the copy, the environment, the seconds it took)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    repo = tmp_path_factory.mktemp("recipe") / "repo"
    for name in files:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / ".venv").symlink_to(Path(sys.prefix))
    ray_tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_")) and k != "PYTHONPATH"}
    env["RAY_TMPDIR"] = ray_tmp
    ports = free_ports(4)
    env.update(
        RECIPE_GCS_PORT=ports[0],
        RECIPE_DASHBOARD_PORT=ports[1],
        RECIPE_AGENT_PORT=ports[2],
        RECIPE_CLIENT_PORT=ports[3],
    )
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", RAY_WRAPPER + recipe(ROOT / "README.md")],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        yield proc, repo, env, time.perf_counter() - t0
    finally:
        stop_processes_under(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_the_readme_training_recipe_runs_as_written(recipe_run):
    """A trained model, both stages' models registered, and MLflow lists the job's runs."""
    proc, repo, _, seconds = recipe_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (repo / "runs/tiny/matting.pt").stat().st_size > 0 and (repo / "runs/tiny/refiner.pt").stat().st_size > 0
    runs = proc.stdout[proc.stdout.rindex("Date") :]  # `mlflow runs list`: the last command's table
    assert "stage1" in runs and "stage2" in runs and len(runs.strip().splitlines()) == 2 + 3, runs
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'runs/tiny/mlflow.db'}")
    assert {m.name for m in client.search_registered_models()} >= {"dugray-matting", "dugray-refiner"}
    print(f"recipe: {seconds:.0f} s")


@pytest.mark.slow
def test_a_job_that_leaves_its_data_no_cpu_is_refused_at_once(recipe_run):
    """The hang of an earlier issue, on the recipe's own head (`ray start --head --num-cpus 2`): two
    workers of one CPU each would leave Ray Data's tasks none, and the job sat silent. It is refused
    in seconds, saying what to change (the recipe's --cpus-per-worker 0.5 is that change, and trains)."""
    proc, repo, env, _ = recipe_run
    assert proc.returncode == 0, "the recipe failed: its head may not be up"
    submit = [
        "ray",
        "job",
        "submit",
        "--address",
        f"http://127.0.0.1:{env['RECIPE_DASHBOARD_PORT']}",
        "--working-dir",
        ".",
        "--",
        "python",
        "jobs/train.py",
        "--data",
        f"{repo}/data/tiny/plain",
        "--out",
        f"{repo}/runs/refused",
        "--epochs",
        "1",
        "--crop",
        "64",
        "--batch-size",
        "4",
        "--num-workers",
        "2",
    ]
    start = time.perf_counter()
    refused = subprocess.run(
        submit,
        cwd=repo,
        env=dict(env, RAY_AUTH_MODE="token", PATH=f"{repo / '.venv/bin'}:{env['PATH']}"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "lower --num-workers or --cpus-per-worker" in refused.stdout + refused.stderr, refused.stdout[-3000:]
    assert time.perf_counter() - start < 90 and not (repo / "runs/refused/matting.pt").exists()
