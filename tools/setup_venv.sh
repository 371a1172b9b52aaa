#!/usr/bin/env bash
# Create (or reuse) a virtual environment with nipype-brainrecon and its test extras.
# torch is installed first, at the version of tools/constraints-ci.txt (the constraints hold for
# every later install too): an unpinned torch could pull a multi-GB CUDA build.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu installs torch from that index instead
# (the CPU build on a fresh Linux machine, where PyPI's default torch wheel is the CUDA one).
# A failing pip command fails the setup; only pip's harmless 'WARNING: Location' lines are hidden.
set -euo pipefail
venv=${1:-.venv}
constraints=tools/constraints-ci.txt
stamp="$venv/.brainrecon-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt setup.cfg ] && [ "$stamp" -nt pyproject.toml ] \
  && [ "$stamp" -nt "$constraints" ]; then
  exit 0
fi
start=$(date +%s)
quiet_pip() {
  # pipefail: the pipeline fails when pip does; grep's status 1 (every line filtered) is no error
  "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v '^WARNING: Location' || [ $? -eq 1 ]; }
}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
quiet_pip install -q --upgrade pip
torch_index=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  torch_index=(--index-url "$TORCH_INDEX_URL")
fi
quiet_pip install -q -c "$constraints" ${torch_index[@]+"${torch_index[@]}"} torch
quiet_pip install -q -c "$constraints" -e ".[test]"
"$venv/bin/python" -c "import nipype_brainrecon, torch; print(f'installed nipype-brainrecon {nipype_brainrecon.__version__} (torch {torch.__version__})')"
touch "$stamp"
echo "[time] install: $(( $(date +%s) - start )) s"
