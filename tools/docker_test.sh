#!/usr/bin/env bash
# Build the BIDS App image without Docker Hub and check it against the host install:
#   1. `docker run IMAGE --version` and the image labels give the package version;
#   2. a participant run in the container (input mounted read-only, model mounted read-only, no
#      network, a uid with no passwd entry) gives the same outputs as the same run on the host;
#   3. a `--datalad` participant run in the container, its input a clone URL of a DataLad dataset,
#      exits 0 and leaves a DataLad output dataset with a run record (and the host run's images).
# The base image is debootstrapped Debian bookworm (python 3.11, like the CPU torch wheel on disk),
# the engine a private dockerd on scratch folders, stopped and removed on exit.
#
# Usage (as root; installs docker.io and debootstrap with apt when missing):
#   bash tools/docker_test.sh [VENV]        VENV: the host install (default .venv, see setup_venv.sh)
# Environment: BRAINRECON_DOCKER_KEEP=1 keeps the scratch folder (logs, both outputs) for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${1:-.venv}
export PATH="$root/$venv/bin:$PATH"
# One thread everywhere so that host and container compute in the same order.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
say() { echo "docker_test: $*"; }
phase() { echo "[time] docker $1: $(($(date +%s) - $2)) s"; }
fail() {
  say "FAILED: $*" >&2
  exit 1
}
start=$(date +%s)

[ "$(id -u)" = 0 ] || fail "run as root (it starts its own dockerd)"
command -v brainrecon >/dev/null || fail "brainrecon not found in $venv; run 'make install' first"
version=$(python -c "import nipype_brainrecon; print(nipype_brainrecon.__version__)")
torch_version=$(python -c "import torch; print(torch.__version__.split('+')[0])")
image=local/brainrecon:$version
# A uid:gid with no passwd entry: the image must run as anybody.
run_uid=4321:4321

# ---- tools ----
t=$(date +%s)
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi
# The client that comes with this dockerd (another one may be earlier on PATH).
docker=docker
[ -x /usr/bin/docker ] && docker=/usr/bin/docker
phase tools "$t"

# ---- scratch folder and a private engine ----
tmp=$(mktemp -d /tmp/brainrecon-docker.XXXXXX)
run=$tmp/run
mkdir -p "$run"
host_pid=
dl_pid=
cleanup() {
  local rc=$?
  if [ -n "$dl_pid" ]; then kill "$dl_pid" 2>/dev/null || true; fi
  if [ -n "$host_pid" ]; then
    pkill -P "$host_pid" 2>/dev/null || true
    kill "$host_pid" 2>/dev/null || true
  fi
  if [ -f "$run/dockerd.pid" ]; then
    local pid
    pid=$(cat "$run/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  # Mounts the engine may have left (overlay layers, its own exec root).
  awk -v p="$tmp/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l || true
  if [ "${BRAINRECON_DOCKER_KEEP:-0}" = 1 ]; then
    say "scratch kept in $tmp"
  else
    rm -rf "$tmp"
  fi
  echo "[time] docker total: $(($(date +%s) - start)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t=$(date +%s)
dockerd --data-root "$tmp/data" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
  --storage-driver=overlay2 --iptables=false --bridge=none -H "unix://$run/docker.sock" \
  >"$tmp/dockerd.log" 2>&1 &
export DOCKER_HOST=unix://$run/docker.sock
for _ in $(seq 120); do
  $docker info >/dev/null 2>&1 && break
  sleep 0.5
done
$docker info >/dev/null 2>&1 || {
  tail -20 "$tmp/dockerd.log"
  fail "dockerd did not start"
}
phase engine "$t"

# ---- the input dataset and a small model; the host reference run goes on in the background ----
t=$(date +%s)
brainrecon-simulate "$tmp/bids" --subjects 1 --runs 2 --train 40 --test 6 -q
mkdir -p "$tmp/models"
python - "$tmp/models/tiny-sd" >/dev/null 2>&1 <<'EOF'
import sys

from nipype_brainrecon.diffusion.models import build_tiny_sd

build_tiny_sd(sys.argv[1], profile="demo")
EOF
# save_pretrained leaves some weight files 0600: open them to the container's uid.
chmod -R a+rX "$tmp/models"
# The --datalad run's input: the same dataset as a DataLad dataset (every file annexed), which the
# container clones by URL into its output dataset (sourcedata/raw) and gets only what it reads.
gitconfig=$tmp/gitconfig
printf '[user]\n\tname = docker test\n\temail = docker-test@example.org\n[safe]\n\tdirectory = *\n' \
  >"$gitconfig"
cp -a "$tmp/bids" "$tmp/origin"
GIT_CONFIG_GLOBAL=$gitconfig GIT_CONFIG_NOSYSTEM=1 python - "$tmp/origin" >"$tmp/origin.log" 2>&1 <<'EOF' || {
import sys

import datalad.api as dl

ds = dl.create(sys.argv[1], force=True, result_renderer="disabled")
ds.save(message="simulated input", result_renderer="disabled")
assert not ds.repo.dirty
EOF
  tail -20 "$tmp/origin.log"
  fail "making the DataLad input dataset (is datalad installed in $venv?)"
}
chmod -R a+rX "$tmp/origin"
phase dataset "$t"

settings=(participant --samples 1 --steps 10 --nprocs 1 --omp-nthreads 1)
(
  t0=$(date +%s)
  brainrecon "$tmp/bids" "$tmp/out-host" "${settings[@]}" --model "$tmp/models/tiny-sd" \
    >"$tmp/host.log" 2>&1
  echo "[time] docker host run: $(($(date +%s) - t0)) s" >"$tmp/host.time"
) &
host_pid=$!

# ---- base image: Debian bookworm with python3 + venv, from the Debian mirror ----
t=$(date +%s)
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
debootstrap --variant=minbase --include=python3-minimal,python3-venv bookworm "$tmp/rootfs" \
  "${mirror:-http://deb.debian.org/debian}" >"$tmp/debootstrap.log" 2>&1 || {
  tail -20 "$tmp/debootstrap.log"
  fail "debootstrap"
}
rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/*
tar -C "$tmp/rootfs" -c . | $docker import - local/bookworm-python:latest >/dev/null
rm -rf "$tmp/rootfs"
phase base-image "$t"

# ---- build context: the project's files, the CPU torch wheel, the CA bundle for pip ----
t=$(date +%s)
ctx=$tmp/context
mkdir -p "$ctx/wheels"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$root" ls-files -z -co --exclude-standard |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -C "$ctx" -xf -
else
  tar --exclude=./.venv --exclude="./$venv" -cf - . | tar -C "$ctx" -xf -
fi
python -m pip download -q --no-deps "torch==$torch_version" -d "$ctx/wheels" 2>&1 |
  { grep -v "^WARNING: Location" || true; }
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$ctx/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/certs/"
fi
say "context $(du -sh "$ctx" | cut -f1) with $(ls "$ctx/wheels")"
DOCKER_BUILDKIT=0 $docker build --network host -t "$image" \
  --build-arg BASE_IMAGE=local/bookworm-python \
  --build-arg TORCH_VERSION="$torch_version" \
  --build-arg VERSION="$version" \
  --build-arg IMAGE_NAME=local/brainrecon \
  --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --build-arg VCS_REF="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$ctx" >"$tmp/build.log" 2>&1 || {
  tail -40 "$tmp/build.log"
  fail "docker build"
}
size=$($docker image inspect -f '{{.Size}}' "$image")
say "built $image ($((size / 1000000)) MB)"
# The CUDA flavour's build arguments: a TORCH_VERSION other than the pin must stop the build
# before anything is installed (the build stage's layers are cached; this takes seconds).
if DOCKER_BUILDKIT=0 $docker build --network host --force-rm --target build \
  --build-arg BASE_IMAGE=local/bookworm-python --build-arg VERSION="$version" \
  --build-arg TORCH_VERSION=0.0.1 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
  "$ctx" >"$tmp/build-torch-mismatch.log" 2>&1; then
  fail "the build accepted TORCH_VERSION=0.0.1 against the constraints' torch==$torch_version"
fi
grep -q "TORCH_VERSION=0.0.1 differs from torch==$torch_version" "$tmp/build-torch-mismatch.log" ||
  fail "TORCH_VERSION mismatch: no message (see $tmp/build-torch-mismatch.log)"
say "TORCH_VERSION=0.0.1 (CUDA index) refused: differs from torch==$torch_version"
phase build "$t"

# ---- 1. version and labels ----
t=$(date +%s)
got=$($docker run --rm --network none -u "$run_uid" "$image" --version)
[ "$got" = "brainrecon $version" ] || fail "--version printed '$got', expected 'brainrecon $version'"
for label in org.label-schema.version org.opencontainers.image.version; do
  value=$($docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$image")
  [ "$value" = "$version" ] || fail "label $label is '$value', expected '$version'"
done
say "--version: '$got'; labels org.label-schema.version, org.opencontainers.image.version: $version"
if [ -f nipype_brainrecon/data/demo_model/model_index.json ]; then
  $docker run --rm --network none -u "$run_uid" --entrypoint python "$image" -c \
    "from nipype_brainrecon.diffusion.models import demo_model_path; print(demo_model_path())" ||
    fail "the demo model is not in the image"
  say "demo model present in the image"
fi
phase version "$t"

# ---- 3. (started now, checked at the end) a --datalad participant run in the container ----
# Input: a clone URL of the read-only DataLad dataset; the output becomes a DataLad dataset.
mkdir -p "$tmp/out-datalad"
chown "$run_uid" "$tmp/out-datalad"
(
  t0=$(date +%s)
  rc=0
  $docker run --rm --network none -u "$run_uid" -e OMP_NUM_THREADS=1 -e MKL_NUM_THREADS=1 \
    -v "$tmp/origin:/mnt/origin:ro" -v "$tmp/models:/mnt/models:ro" \
    -v "$tmp/out-datalad:/mnt/out" "$image" file:///mnt/origin /mnt/out "${settings[@]}" \
    --model /mnt/models/tiny-sd --datalad >"$tmp/datalad.log" 2>&1 || rc=$?
  echo "$rc $(($(date +%s) - t0))" >"$tmp/datalad.status"
) &
dl_pid=$!

# ---- 2. participant level in the container vs on the host ----
t=$(date +%s)
mkdir -p "$tmp/out-container"
chown "$run_uid" "$tmp/out-container"
$docker run --rm --network none -u "$run_uid" -e OMP_NUM_THREADS=1 -e MKL_NUM_THREADS=1 \
  -v "$tmp/bids:/mnt/bids:ro" -v "$tmp/models:/mnt/models:ro" -v "$tmp/out-container:/mnt/out" \
  "$image" /mnt/bids /mnt/out "${settings[@]}" --model /mnt/models/tiny-sd \
  >"$tmp/container.log" 2>&1 || {
  tail -30 "$tmp/container.log"
  fail "participant run in the container"
}
tail -1 "$tmp/container.log"
phase container-run "$t"

t=$(date +%s)
wait "$host_pid" || {
  host_pid=
  tail -30 "$tmp/host.log"
  fail "participant run on the host"
}
host_pid=
tail -1 "$tmp/host.log"
cat "$tmp/host.time"

status=0
python - "$tmp/out-host" "$tmp/out-container" "$tmp" "local/brainrecon:$version" <<'EOF' || status=$?
"""Compare the host and container derivatives; exit 1 on any difference that matters."""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from safetensors.numpy import load_file

host, cont, tmp, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
# The outputs hold no absolute path (bids: URIs and paths relative to the output dataset), and
# the mounts keep the host's relative layout (bids, models and the output side by side), so the
# two runs must agree byte for byte but for the container's entry in dataset_description.json;
# an absolute path that leaked would show as a difference unless mapped here.
mounts = [(f"{tmp}/out-host", "/mnt/out"), (f"{tmp}/bids", "/mnt/bids"), (f"{tmp}/models", "/mnt/models")]


def norm(text: str) -> str:
    for a, b in mounts:
        text = text.replace(a, b)
    return text


def files(top: Path) -> set[str]:
    """Output files but the run logs, which are named by their start time."""
    return {
        str(p.relative_to(top))
        for p in top.rglob("*")
        if p.is_file() and not (p.parent.name == "logs" and p.suffix == ".log")
    }


def same_json(a: Path, b: Path) -> bool:
    ja, jb = json.loads(norm(a.read_text())), json.loads(b.read_text())
    if a.name == "dataset_description.json":
        containers = [g.pop("Container", None) for g in jb.get("GeneratedBy", [])]
        if containers[:1] != [{"Type": "docker", "Tag": tag}]:
            print(f"  GeneratedBy.Container is {containers}, expected Tag {tag}")
            return False
        print(f"  GeneratedBy.Container: {containers[0]}")
    return ja == jb


def same_content(a: Path, b: Path) -> bool:
    name = a.name
    if name.endswith((".tsv", ".md", ".html", ".svg", ".txt")):
        return norm(a.read_text()) == b.read_text()
    if name.endswith(".json"):
        return same_json(a, b)
    if name.endswith(".png"):
        return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    if name.endswith(".npy"):
        return np.array_equal(np.load(a), np.load(b))
    if name.endswith(".safetensors"):
        ta, tb = load_file(a), load_file(b)
        return ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
    if name.endswith((".nii", ".nii.gz")):
        ia, ib = nib.load(a), nib.load(b)
        return np.array_equal(ia.get_fdata(), ib.get_fdata()) and np.array_equal(
            ia.affine, ib.affine
        )
    return False


fh, fc = files(host), files(cont)
bad = [f"only on the host: {f}" for f in sorted(fh - fc)]
bad += [f"only in the container: {f}" for f in sorted(fc - fh)]
kinds: dict[str, list[int]] = {}
for rel in sorted(fh & fc):
    a, b = host / rel, cont / rel
    kind = "".join(a.suffixes[-2:]) if rel.endswith(".nii.gz") else a.suffix or a.name
    n = kinds.setdefault(kind, [0, 0, 0])  # files, byte-identical, equal after path mapping
    n[0] += 1
    if a.read_bytes() == b.read_bytes():
        n[1] += 1
        n[2] += 1
    elif same_content(a, b):
        n[2] += 1
    else:
        bad.append(f"differs: {rel}")
print(f"compared {len(fh & fc)} files (kind: files / byte-identical / equal content):")
for kind, (n, ident, equal) in sorted(kinds.items()):
    print(f"  {kind:14s} {n:3d} / {ident:3d} / {equal:3d}")
for line in bad:
    print("  MISMATCH", line)
sys.exit(1 if bad or not (fh & fc) else 0)
EOF
phase compare "$t"
[ "$status" = 0 ] || fail "container outputs differ from the host's"
say "OK: the container reproduces the host run"

# ---- 3. the --datalad run: exit 0, a DataLad output dataset with the participant's run record ----
t=$(date +%s)
wait "$dl_pid" || true
dl_pid=
read -r dl_rc dl_seconds <"$tmp/datalad.status"
echo "[time] docker datalad run: $dl_seconds s"
[ "$dl_rc" = 0 ] || {
  tail -30 "$tmp/datalad.log"
  fail "--datalad participant run in the container exited $dl_rc"
}
grep '^datalad: fetched' "$tmp/datalad.log" || true
GIT_CONFIG_GLOBAL=$gitconfig GIT_CONFIG_NOSYSTEM=1 python - "$tmp/out-datalad" "$tmp/origin" \
  "$tmp/out-host" <<'EOF' || fail "the --datalad run's output dataset"
"""The output is a clean DataLad dataset whose HEAD is sub-01's run record; same images as the host."""

import hashlib
import sys
from pathlib import Path

import datalad.api as dl

from nipype_brainrecon import datalad as brd

out, origin, host = (Path(p) for p in sys.argv[1:4])
assert brd.is_dataset(out), f"{out}: not a DataLad dataset"
ds = dl.Dataset(str(out))
assert not ds.repo.dirty, f"{out}: uncommitted changes"
subs = ds.subdatasets(result_renderer="disabled", result_xfm="relpaths")
assert subs == ["sourcedata/raw"], subs
run = brd.run_record(out)
rec = run.record
assert rec["exit"] == 0 and run.message.endswith("participant sub-01"), (run.message, rec["exit"])
assert " sourcedata/raw . participant" in rec["cmd"] and "--participant-label 01" in rec["cmd"], rec
assert rec["outputs"] == brd.participant_outputs("01"), rec["outputs"]
assert rec["brainrecon"]["sources"]["raw"]["id"] == dl.Dataset(str(origin)).id
inputs = rec["inputs"]
assert any(p.endswith("_desc-preproc_bold.nii.gz") for p in inputs), inputs


def pngs(top):
    return {
        str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in top.glob("sub-01/**/*.png")
    }


a, b = pngs(host), pngs(out)
assert a and a == b, f"PNG reconstructions differ from the host run: {sorted(set(a) ^ set(b))}"
print(f"datalad: {out.name} is a DataLad dataset; HEAD {run.commit[:8]} '{run.message}'")
print(f"  record: exit {rec['exit']}, {len(inputs)} inputs, outputs {rec['outputs']}")
print(f"  {len(a)} PNG images byte-identical with the host run's")
EOF
phase datalad-check "$t"
say "OK: --datalad run in the container recorded"
