#!/usr/bin/env bash
# The demo on the embedded default: a simulated BIDS + fMRIPrep dataset, validated.
set -euo pipefail
venv=${1:-.venv}
out=${2:-brainrecon-demo}
export PATH="$PWD/$venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ -e "$out/dataset" ]; then
  echo "demo: $out/dataset exists; remove it or set DEMO_OUT=another-folder" >&2
  exit 73
fi
brainrecon-simulate "$out/dataset" --subjects 2
bids-validator-deno "$out/dataset" >/dev/null && echo "BIDS validator: raw dataset valid"
bids-validator-deno "$out/dataset/derivatives/fmriprep" >/dev/null && echo "BIDS validator: fMRIPrep derivatives valid"
echo "demo dataset: $out/dataset"
