"""Runs stopped by SIGINT / SIGTERM (and SIGKILL in the output swap), then resumed.

One small simulated subject (two runs, 40 + 6 images), the shipped demo model and small
settings (as tests/integration/test_hardening_resume.py, which kills with SIGKILL). The
``brainrecon`` command runs in a subprocess, is stopped at several points and rerun with the
same ``-w``. After each stop: exit code 130 (SIGINT) or 143 (SIGTERM), one line naming the work
folder to resume with, no participant output, no lock left, no temporary folder in $TMPDIR or
OUTPUT_DIR; after the resumed run: the same bytes as one uninterrupted run (the reference,
shared by the module). A rerun that fails leaves every earlier output byte-identical.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import OUTPUT_SUFFIXES, file_digests, tree_digest

from nipype_brainrecon.io import SWAP_PAUSE_ENV
from nipype_brainrecon.synthetic.simulate import simulate_dataset

pytestmark = pytest.mark.slow

ARGS = ["--participant-label", "01", "--model", "demo", "--samples", "1", "--steps", "25",
        "--skip-bids-validation", "-v"]  # fmt: skip
SUB01 = "brainrecon_wf/sub_01_wf"
#: Top-level files a successful run refreshes and a failed one must leave alone.
TOP = ["dataset_description.json", "logs/CITATION.md", "logs/settings.toml"]


def outputs(root: Path) -> dict[str, str]:
    """Checksums of the images, tables, arrays and weights, and of the top-level files."""
    digests = file_digests(root, OUTPUT_SUFFIXES, exclude_dirs={"logs"})
    return {**digests, **{k: v for k, v in file_digests(root).items() if k in TOP}}


#: ``brainrecon`` whose ridge fits (milliseconds on this data) first say so and wait 5 s, so
#: that a signal lands inside one; the fit itself is unchanged, and so are the node hashes.
SLOW_FIT = """
import sys, time
from nipype_brainrecon.interfaces import decoding
fit = decoding.FitDecoder._run_interface
def slow(self, runtime):
    print("ridge fit started", flush=True)
    time.sleep(5)
    return fit(self, runtime)
decoding.FitDecoder._run_interface = slow
from nipype_brainrecon.bids_app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _command(bids: Path, out: Path, work: Path, nprocs: int = 1, slow_fit=False) -> list[str]:
    exe = Path(sys.executable).parent / "brainrecon"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nipype_brainrecon.bids_app.cli"]
    if slow_fit:
        cmd = [sys.executable, "-c", SLOW_FIT]
    return [*cmd, str(bids), str(out), "participant", "-w", str(work), *ARGS,
            "--nprocs", str(nprocs)]  # fmt: skip


def _env(tmpdir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    env["TMPDIR"] = str(tmpdir)
    return {**env, **extra}


def _run(cmd: list[str], log: Path, tmpdir: Path, **env: str) -> int:
    with log.open("w") as handle:
        return subprocess.run(
            cmd, stdout=handle, stderr=subprocess.STDOUT, env=_env(tmpdir, **env), timeout=400
        ).returncode


def _stop_when(cmd, log: Path, marker: str, sig: int, tmpdir: Path, *, group=False, **env) -> int:
    """Start ``cmd``; send ``sig`` once ``marker`` is in its output; return its exit code."""
    with log.open("w") as handle:
        proc = subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, env=_env(tmpdir, **env),
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        try:
            while marker not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    pytest.fail(f"run ended (rc {proc.returncode}) before {marker!r}: {log}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{marker!r} never came: {log}")
                time.sleep(0.02)
            time.sleep(0.1)
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return rc


def _executing(node: str) -> str:
    return f'[Node] Executing "{node}"'


def _results(work: Path) -> set[str]:
    return {str(p.parent.relative_to(work)) for p in work.rglob("result_*.pklz")}


def _assert_clean(out: Path, work: Path, tmpdir: Path, log: Path, sig: int) -> None:
    text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith("brainrecon: stopped")]
    assert len(lines) == 1, text[-3000:]
    assert signal.Signals(sig).name in lines[0] and f"-w {work}" in lines[0]
    assert not list(out.glob(".*.lock")) and not (work / ".brainrecon.lock").exists()
    assert not [p.name for p in out.iterdir() if re.search(r"\.(partial|old)-", p.name)]
    assert not list(tmpdir.glob("brainrecon-work-*"))


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("kill")
    return simulate_dataset(base / "bids", n_subjects=1, n_runs=2, seed=3, n_train=40, n_test=6)


@pytest.fixture(scope="module")
def tmpdir(sim: Path) -> Path:
    """The runs' $TMPDIR: nothing of theirs may stay in it."""
    path = sim.parent / "tmp"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def reference(sim: Path, tmpdir: Path) -> Path:
    """One uninterrupted run."""
    base = sim.parent
    rc = _run(_command(sim, base / "out_ref", base / "work_ref"), base / "ref.log", tmpdir)
    assert rc == 0, (base / "ref.log").read_text()[-3000:]
    return base / "out_ref"


@pytest.fixture(scope="module")
def resumed(sim: Path, tmpdir: Path, reference: Path) -> tuple[Path, Path]:
    """Stopped by Ctrl-C (to the process group, MultiProc workers included) during a ridge
    fit, by SIGTERM during reconstruction, then resumed: the reference's bytes."""
    base = sim.parent
    before = tree_digest(sim)
    out, work = base / "out", base / "work"

    log = base / "stop1.log"
    fit = f"{SUB01}/decoding_wf/fit_z"
    rc = _stop_when(_command(sim, out, work, nprocs=2, slow_fit=True), log, "ridge fit started",
                    signal.SIGINT, tmpdir, group=True)  # fmt: skip
    assert rc == 130, log.read_text()[-3000:]
    _assert_clean(out, work, tmpdir, log, signal.SIGINT)
    done = _results(work)
    assert done and fit not in done  # stopped inside the fit, earlier nodes kept
    assert not list((out / "logs").glob("crash-*"))  # a stop is not a crash
    assert not (out / "sub-01").exists() and not (out / "sub-01.html").exists()

    log = base / "stop2.log"
    rc = _stop_when(_command(sim, out, work), log, _executing("_reconstruct0"), signal.SIGTERM,
                    tmpdir)  # fmt: skip
    assert rc == 143, log.read_text()[-3000:]
    _assert_clean(out, work, tmpdir, log, signal.SIGTERM)
    done2 = _results(work)
    assert fit in done2 and done < done2
    assert not (out / "sub-01").exists()
    assert not list((out / "logs").glob("crash-*"))  # a stop is not a crash

    log = base / "resume.log"
    assert _run(_command(sim, out, work), log, tmpdir) == 0, log.read_text()[-3000:]
    executed = set(re.findall(r'\[Node\] Executing "([^"]+)"', log.read_text()))
    assert "fit_z" not in executed and "_reconstruct0" in executed  # resumed, not redone
    assert outputs(out) == outputs(reference)
    assert tree_digest(sim) == before
    assert not list(tmpdir.glob("brainrecon*"))
    return out, work


def test_stopped_runs_resume_to_the_same_bytes(resumed: tuple[Path, Path], reference: Path):
    out, _ = resumed
    expected = outputs(reference)
    assert any(k.startswith("sub-01/") and k.endswith(".png") for k in expected)
    assert outputs(out) == expected
    assert (out / "sub-01.html").is_file() and not list(out.glob(".*.lock"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopped_during_the_output_swap(resumed, reference: Path, tmpdir: Path, sig: int):
    """The swap of sub-01/ held open between its two renames (a test hook): SIGTERM waits for
    the swap to finish; SIGKILL leaves the previous folder beside, put back by the rerun."""
    out, work = resumed
    base = out.parent
    sim = base / "bids"
    log = base / f"swap-{sig}.log"
    rc = _stop_when(_command(sim, out, work), log, "swap paused", sig, tmpdir,
                    **{SWAP_PAUSE_ENV: "3"})  # fmt: skip
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
        left = [p.name for p in out.iterdir() if p.name.startswith(".sub-01.old-")]
        assert left and not (out / "sub-01").exists()  # the window a plain rmtree lost both in
    else:
        assert rc == 143, log.read_text()[-3000:]
        _assert_clean(out, work, tmpdir, log, sig)
        assert outputs(out) == outputs(reference)  # the swap finished: a complete version
    log = base / f"swap-{sig}-resume.log"
    assert _run(_command(sim, out, work), log, tmpdir) == 0, log.read_text()[-3000:]
    if sig == signal.SIGKILL:
        assert "restored the previous version" in log.read_text()
    assert outputs(out) == outputs(reference)
    assert not [p.name for p in out.iterdir() if re.search(r"\.(partial|old)-|\.lock$", p.name)]
    assert not list(tmpdir.glob("brainrecon*"))


def test_failed_rerun_leaves_the_outputs_byte_identical(resumed, tmpdir: Path):
    """Rerun on inputs whose GLM fails inside the workflow (constant BOLD): exit 1, every file
    of the finished output byte-identical (report, CITATION, settings, summary included); the
    failure report and crash files are new files under logs/."""
    out, work = resumed
    base = out.parent
    bad = Path(shutil.copytree(base / "bids", base / "bids_bad", symlinks=True))
    for bold in (bad / "derivatives/fmriprep/sub-01/func").glob("*desc-preproc_bold.nii.gz"):
        img = nib.load(bold)
        flat = np.full(img.shape, 100.0, dtype=np.float32)
        nib.save(nib.Nifti1Image(flat, img.affine, img.header), bold)
    before = tree_digest(out)
    log = base / "failed.log"
    assert _run(_command(bad, out, work), log, tmpdir) == 1, log.read_text()[-3000:]
    after = tree_digest(out)
    assert {k: after.get(k) for k in before} == before  # nothing changed, nothing removed
    new = sorted(set(after) - set(before))
    assert new and all(k.startswith("logs/") for k in new), new
    failed = [k for k in new if re.fullmatch(r"logs/sub-01_failed-\d{8}T\d{6}\.html", k)]
    assert failed, new
    assert any(k.startswith("logs/crash-") for k in new)
    assert "sub-01: FAILED" in log.read_text()
