#!/usr/bin/env bash
# Set up dugray on a fresh machine: a virtual environment in .venv with everything installed.
# torch is installed first, pinned to the CPU build that lies on this kind of machine
# (an unpinned torch would pull a multi-GB CUDA build); a torch already importable in
# .venv (e.g. a GPU build you installed) is kept.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
step() {  # one line per step: what it does, then how long it took (pip's own output stays quiet)
  local what=$1 t0=$SECONDS
  shift
  printf 'setup: %s... ' "$what"
  "$@"
  echo "$((SECONDS - t0)) s"
}
[ -x .venv/bin/python ] || step "virtual environment .venv" "$PYTHON" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  step "torch ${DUGRAY_TORCH_VERSION:-2.13.0} (CPU build, about 1 GB)" \
    .venv/bin/pip install --quiet --no-compile "torch==${DUGRAY_TORCH_VERSION:-2.13.0}"
fi
step "dugray and its dependencies (Ray, MLflow, ...)" .venv/bin/pip install --quiet --no-compile -e ".[dev]"
# compile the numba kernels now (dugray.session.warmup), into numba's cache: a server (or the first cut-out) then loads them
# in milliseconds instead of compiling them in every replica on its first start. Beside it, on the
# other core, the installed packages' byte-code, which pip would have compiled one file after
# another during the install (--no-compile above): 45 s of a 100 s install on 2 cores
compile_all() {
  .venv/bin/python -m compileall -q .venv/lib > /dev/null 2>&1 &  # a few packages ship files of other Pythons: ignored
  local bytecode=$!
  .venv/bin/python -m dugray.session > /dev/null
  wait "$bytecode" || true
}
step "numba kernels and Python byte-code compiled (side by side)" compile_all
echo "dugray installed in $(pwd)/.venv"
