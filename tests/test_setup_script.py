"""setup.sh says what it does: one line per step with its time, nothing else on a quiet run.

Run against stand-in pip and python in a copy of the script (a real install takes minutes and a
network): the steps, their order and the one-line form are what is checked.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB = "#!/usr/bin/env bash\n{body}\n"


def run_setup(tmp_path: Path, torch_importable: bool) -> list[str]:
    shutil.copy(ROOT / "setup.sh", tmp_path / "setup.sh")
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    python = (
        'echo "python $*" >> "$(dirname "$0")/calls"\nif [ "$1" = -c ]; then exit {code}; fi\n'
        'echo "numba kernels compiled and cached in 0.1 s"'
    )
    pip = 'echo "pip $*" >> "$(dirname "$0")/calls"\nsleep 1'
    for name, body in (("python", python.format(code=0 if torch_importable else 1)), ("pip", pip)):
        (bin_ / name).write_text(STUB.format(body=body))
        (bin_ / name).chmod(0o755)
    out = subprocess.run(
        ["bash", "setup.sh"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHON": "false"},
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
    return out.stdout.splitlines()


def test_setup_prints_one_line_per_step_with_its_time(tmp_path):
    lines = run_setup(tmp_path, torch_importable=False)
    steps = [re.fullmatch(r"setup: (.+)\.\.\. (\d+) s", line) for line in lines[:-1]]
    assert all(steps), lines
    assert [m.group(1).split(" ")[0] for m in steps] == ["torch", "dugray", "numba"]
    assert int(steps[0].group(2)) >= 1 and int(steps[1].group(2)) >= 1  # the stand-in pip takes a second
    assert lines[-1] == f"dugray installed in {tmp_path}/.venv"


def test_setup_keeps_an_importable_torch(tmp_path):
    lines = run_setup(tmp_path, torch_importable=True)
    assert [line.rsplit("... ", 1)[0] for line in lines[:-1]] == [
        "setup: dugray and its dependencies (Ray, MLflow, ...)",
        "setup: numba kernels and Python byte-code compiled (side by side)",
    ]


def test_pip_leaves_the_byte_code_to_the_step_beside_numba(tmp_path):
    """pip compiles byte-code one file after another (45 s of a 100 s install on 2 cores); setup.sh
    asks it not to and compiles the venv's byte-code while numba compiles its kernels."""
    run_setup(tmp_path, torch_importable=False)
    calls = (tmp_path / ".venv" / "bin" / "calls").read_text().splitlines()
    installs = [c for c in calls if c.startswith("pip install")]
    assert len(installs) == 2 and all("--no-compile" in c for c in installs), installs
    assert "python -m compileall -q .venv/lib" in calls and "python -m dugray.session" in calls, calls
