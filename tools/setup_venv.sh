#!/usr/bin/env bash
# Create (or reuse) a virtual environment with nipype-brainrecon and its test extras.
# torch is installed first and pinned: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
venv=${1:-.venv}
stamp="$venv/.brainrecon-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt setup.cfg ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
start=$(date +%s)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/python" -m pip install -q "torch==2.13.0" 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/python" -m pip install -q -e ".[test]" 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/python" -c "import nipype_brainrecon, torch; print(f'installed nipype-brainrecon {nipype_brainrecon.__version__} (torch {torch.__version__})')"
touch "$stamp"
echo "[time] install: $(( $(date +%s) - start )) s"
