"""Runs that survive being killed, subjects that fail alone, outputs that keep no personal data.

One small simulated dataset (two subjects, two runs, 40 + 6 images), the shipped demo model and
small settings (one sample, 25 DDIM steps, one process) keep each participant run to
about 20 s on one CPU core. The participant level is run through the ``brainrecon`` command in a
subprocess, killed with SIGKILL in the middle of decoding (the feature node) and again in the
middle of reconstruction, and rerun with the same work directory: it must finish without
re-executing finished nodes and give the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import OUTPUT_SUFFIXES, file_digests, tree_digest

from nipype_brainrecon.synthetic.simulate import simulate_dataset

pytestmark = pytest.mark.slow

ARGS = [
    "--model",
    "demo",
    "--samples",
    "1",
    "--steps",
    "25",  # 20 U-Net steps: reconstruction lasts long enough to be killed inside it
    "--nprocs",
    "1",
    "--skip-bids-validation",
    "-v",
]
#: Values in participants.tsv that must never reach the outputs.
SECRETS = {"age": "87", "sex": "F", "handedness": "ambidextrous", "name": "Zyxqw Secretname"}
SUB01 = "brainrecon_wf/sub_01_wf"
FEATURES = f"{SUB01}/decoding_wf/features"


def output_digests(root: Path) -> dict[str, str]:
    """Checksums of the images, tables, arrays and weights of a derivatives folder."""
    return file_digests(root, OUTPUT_SUFFIXES, exclude_dirs={"logs"})


def _command(bids: Path, out: Path, work: Path, *labels: str) -> list[str]:
    exe = Path(sys.executable).parent / "brainrecon"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nipype_brainrecon.bids_app.cli"]
    return [
        *cmd,
        str(bids),
        str(out),
        "participant",
        "--participant-label",
        *labels,
        "-w",
        str(work),
        *ARGS,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONUNBUFFERED"] = "1"
    env["MKL_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def _run(cmd: list[str], log: Path, timeout: float = 240) -> int:
    with log.open("w") as handle:
        return subprocess.run(
            cmd, stdout=handle, stderr=subprocess.STDOUT, env=_env(), timeout=timeout
        ).returncode


def _kill_when(cmd: list[str], log: Path, node: str, timeout: float = 180) -> None:
    """Start ``cmd``; SIGKILL its whole process group once Nipype logs executing ``node``."""
    marker = f'[Node] Executing "{node}"'
    with log.open("w") as handle:
        proc = subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )
        deadline = time.monotonic() + timeout
        try:
            while marker not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    pytest.fail(f"run ended (rc {proc.returncode}) before {node} ran: {log}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{node} never started: {log}")
                time.sleep(0.02)
            time.sleep(0.1)  # inside the node: running, not finished
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _results(work: Path) -> dict[str, int]:
    """Finished nodes (their result files) and the files' modification times in ns."""
    return {
        str(p.parent.relative_to(work)): p.stat().st_mtime_ns
        for p in (work / "brainrecon_wf").rglob("result_*.pklz")
    }


def _executed(log: Path) -> set[str]:
    text = log.read_text(errors="replace")
    return set(re.findall(r'\[Node\] Executing "([^"]+)"', text))


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("resume")
    bids = simulate_dataset(base / "bids", n_subjects=2, n_runs=2, seed=3, n_train=40, n_test=6)
    table = pd.read_csv(bids / "participants.tsv", sep="\t")
    for key, value in SECRETS.items():
        table[key] = value
    table.to_csv(bids / "participants.tsv", sep="\t", index=False)
    # sub-02's preprocessed BOLD is constant over time: its inputs pass every up-front check,
    # and its GLM fails inside the workflow ("every voxel ... constant").
    import nibabel as nib

    for bold in (bids / "derivatives/fmriprep/sub-02/func").glob("*desc-preproc_bold.nii.gz"):
        img = nib.load(bold)
        flat = np.full(img.shape, 100.0, dtype=np.float32)
        nib.save(nib.Nifti1Image(flat, img.affine, img.header), bold)
    return bids


@pytest.fixture(scope="module")
def baseline(sim: Path) -> tuple[Path, Path]:
    """An uninterrupted run of sub-01."""
    base = sim.parent
    before = tree_digest(sim)
    out, work = base / "out_base", base / "work_base"
    rc = _run(_command(sim, out, work, "01"), base / "base.log")
    assert rc == 0, (base / "base.log").read_text()[-3000:]
    assert tree_digest(sim) == before
    return out, work


def test_killed_twice_resumes_without_redoing_nodes(sim: Path, baseline: tuple[Path, Path]):
    base = sim.parent
    before = tree_digest(sim)
    out, work = base / "out_resume", base / "work_resume"
    cmd = _command(sim, out, work, "01")

    # 1. killed in the middle of decoding: the feature node has started, not finished
    _kill_when(cmd, base / "kill1.log", "features")
    done1 = _results(work)
    assert done1, "some decoding nodes (the GLM) should have finished"
    assert not any(k.endswith("decoding_wf/features") for k in done1)
    assert not (out / "sub-01").exists()  # no partial outputs

    # 2. rerun, killed in the middle of reconstruction
    _kill_when(cmd, base / "kill2.log", "_reconstruct0")
    done2 = _results(work)
    assert {k: done2.get(k) for k in done1} == done1, "finished nodes were rerun"
    assert not (set(_executed(base / "kill2.log")) & {_fullname(k) for k in done1})
    assert any(k.endswith("decoding_wf/features") for k in done2)
    assert not any("reconstruct/mapflow" in k for k in done2)
    assert not (out / "sub-01").exists()

    # 3. rerun to the end
    assert _run(cmd, base / "resume.log") == 0, (base / "resume.log").read_text()[-3000:]
    done3 = _results(work)
    assert {k: done3.get(k) for k in done2} == done2, "finished nodes were rerun"
    executed = _executed(base / "resume.log")
    assert executed, "the last run should execute the nodes left"
    assert not executed & {_fullname(k) for k in done2}
    assert any("reconstruct" in name for name in executed)

    # same bytes as the uninterrupted run, inputs untouched, no lock left behind
    expected = output_digests(baseline[0])
    assert expected and output_digests(out) == expected
    assert tree_digest(sim) == before
    assert not list(out.glob(".*.lock"))


def _fullname(result_dir: str) -> str:
    """Work-dir path of a node → the name Nipype logs when it executes it."""
    return Path(result_dir).name


def test_nipype_hashes_file_content(baseline: tuple[Path, Path]):
    """hash_method = content: a node's hash file holds the MD5 of its input files' bytes."""
    import json

    hashfile = next((baseline[1] / FEATURES).glob("_0x*.json"))
    entries = dict((k, v) for k, v in json.loads(hashfile.read_text()))
    path, digest = entries["captions_file"]
    assert digest == hashlib.md5(Path(path).read_bytes()).hexdigest()


def test_one_failing_subject_does_not_stop_the_other(sim: Path, baseline: tuple[Path, Path]):
    base = sim.parent
    before = tree_digest(sim)
    out = base / "out_both"
    log = base / "both.log"
    # the baseline's work dir: sub-01's nodes are cached, sub-02's GLM fails
    rc = _run(_command(sim, out, baseline[1], "01", "02"), log)
    text = log.read_text(errors="replace")
    assert rc == 1, text[-3000:]
    assert "sub-01: done" in text and "sub-02: FAILED" in text
    assert "1 participant(s) failed" in text
    assert (out / "sub-01.html").is_file() and (out / "sub-01").is_dir()
    assert not (out / "sub-02").exists()  # nothing partial of the failed subject
    crashes = sorted((out / "logs").glob("crash-*"))
    assert crashes and any("sub_02_wf" in c.read_text(errors="replace") for c in crashes)
    report = (out / "sub-02.html").read_text()
    linked = [c for c in crashes if c.name in report]
    assert linked, "the failed subject's report links its crash file"
    assert output_digests(out / "sub-01") == output_digests(baseline[0] / "sub-01")
    assert tree_digest(sim) == before


def test_outputs_carry_no_personal_metadata(sim: Path, baseline: tuple[Path, Path]):
    out = baseline[0]
    texts = [
        p.read_text(errors="replace")
        for p in out.rglob("*")
        if p.is_file() and p.suffix in {".json", ".tsv", ".html", ".md", ".txt", ""}
    ]
    assert texts
    for text in texts:
        for key in ("handedness", "Zyxqw", "Secretname", "ambidextrous"):
            assert key not in text
        assert '"age"' not in text and '"sex"' not in text
    assert not list(out.rglob("participants.tsv"))
