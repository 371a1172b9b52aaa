#!/usr/bin/env bash
# The demo on the embedded default: a simulated dataset, the shipped demo model, both levels.
set -euo pipefail
venv=${1:-.venv}
out=${2:-${DEMO_OUT:-brainrecon-demo}}  # the default folder is in .gitignore
export PATH="$PWD/$venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "demo: $out exists; remove it or set DEMO_OUT=another-folder (make demo DEMO_OUT=...)" >&2
  exit 73
fi
start=$(date +%s)
brainrecon-demo "$out"
echo "[time] demo: $(( $(date +%s) - start )) s"
