#!/usr/bin/env bash
# The test command (.ci/run calls it through `make test`): lint, validate datasets, run pytest.
# Prints how long each phase took.
set -euo pipefail
venv=${1:-.venv}
export PATH="$PWD/$venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
phase() { echo "[time] $1: $(( $(date +%s) - $2 )) s"; }

t=$(date +%s)
ruff check nipype_brainrecon workflows bids_app tests benchmarks tools
ruff format --check nipype_brainrecon workflows bids_app tests benchmarks tools
phase lint "$t"

t=$(date +%s)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
brainrecon-simulate "$scratch/sim" --subjects 2
bids-validator-deno "$scratch/sim" >"$scratch/raw.log" || { cat "$scratch/raw.log"; exit 1; }
bids-validator-deno "$scratch/sim/derivatives/fmriprep" >"$scratch/prep.log" || { cat "$scratch/prep.log"; exit 1; }
echo "BIDS validator: simulated raw + fMRIPrep derivatives valid"
shared=${BRAINRECON_SHARED_DATA:-$PWD/../shared/data}
if [ -d "$shared/haxby2001-pymvpa" ]; then
  python -m nipype_brainrecon.datasets haxby "$shared/haxby2001-pymvpa" "$scratch/haxby"
  bids-validator-deno "$scratch/haxby" >"$scratch/hraw.log" || { cat "$scratch/hraw.log"; exit 1; }
  bids-validator-deno "$scratch/haxby/derivatives/fmriprep" >"$scratch/hprep.log" || { cat "$scratch/hprep.log"; exit 1; }
  echo "BIDS validator: Haxby raw + fMRIPrep-like derivatives valid"
else
  echo "BIDS validator: Haxby fixture absent at $shared, skipped"
fi
phase validate "$t"

t=$(date +%s)
python -m pytest  # testpaths, doctests and markers: pyproject.toml
phase pytest "$t"
