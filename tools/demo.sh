#!/usr/bin/env bash
# The demo on the embedded default: a simulated dataset, the shipped demo model, both levels.
set -euo pipefail
venv=${1:-.venv}
out=${2:-brainrecon-demo}
export PATH="$PWD/$venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "demo: $out exists; remove it or set DEMO_OUT=another-folder" >&2
  exit 73
fi
brainrecon-demo "$out"
