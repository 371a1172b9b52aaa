"""Stopping ``brainrecon`` with SIGINT / SIGTERM, fast: the workflow run is replaced by a stand-in
that starts two worker processes (as MultiProc does) and waits, so each case takes seconds.
The same on whole runs, then resumed: tests/integration/test_kill_resume.py.

Each case checks the exit code (130 / 143), the one line telling how to resume (same -w), that
the workers are gone, the locks released, nothing written for the participant, the input intact.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from conftest import tree_digest

from nipype_brainrecon.io import output_lock
from nipype_brainrecon.synthetic.simulate import simulate_dataset

ARGS = ["--participant-label", "01", "--model", "demo", "--skip-bids-validation"]

#: ``brainrecon`` with Workflow.run replaced: two forked workers sleep; the main process waits.
#: HANG=once swallows the first interrupt (as Nipype's MapNode does), HANG=always every one
#: (and blocks the repeats bids_app.signals raises it again with).
SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp, os, signal, sys, time
    from nipype.pipeline import engine as pe

    def run(self, **kwargs):
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=time.sleep, args=(300,)) for _ in range(2)]
        for p in procs:
            p.start()
        hang = os.environ.get("HANG")
        if hang == "always":  # stuck for good: not even the repeats get through
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGURG})
        swallowed, ready = 0, False
        while True:
            try:
                if not ready:  # announced inside the try: no signal can land before it
                    ready = True
                    print("workers", *[p.pid for p in procs], file=sys.stderr, flush=True)
                time.sleep(300)
            except KeyboardInterrupt:
                swallowed += 1
                print("swallowed", swallowed, file=sys.stderr, flush=True)
                if not hang or (hang == "once" and swallowed > 1):
                    raise

    pe.Workflow.run = run
    from nipype_brainrecon.bids_app.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return simulate_dataset(
        tmp_path_factory.mktemp("signals") / "ds", n_subjects=1, n_runs=2, seed=3, n_train=20,
        n_test=4,
    )  # fmt: skip


def _start(bids: Path, out: Path, work: Path | None, hang: str = "", cwd=None, group=False):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if hang:
        env["HANG"] = hang
    argv = [str(bids), str(out), "participant", *ARGS]
    if work is not None:
        argv += ["-w", str(work)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *argv],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=group,
    )
    deadline = time.monotonic() + 120
    line = ""
    while not line.startswith("workers"):
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            pytest.fail(f"ended (rc {proc.returncode}) before the run: {proc.stderr.read()}")
        assert time.monotonic() < deadline
    return proc, [int(p) for p in line.split()[1:]]


def _gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGINT", "SIGTERM", "SIGINT-to-group"],  # Ctrl-C in a terminal: every process
)
def test_signal_stops_cleanly(pristine: Path, tmp_path: Path, sig: int, group: bool):
    before = tree_digest(pristine)
    out, work = tmp_path / "out", tmp_path / "work"
    proc, workers = _start(pristine, out, work, group=group)
    assert (work / ".brainrecon.lock").read_text().strip() == str(proc.pid)
    t0 = time.monotonic()
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    rc = proc.wait(timeout=30)
    err = proc.stderr.read()
    assert rc == 128 + sig == (130 if sig == signal.SIGINT else 143), err
    assert time.monotonic() - t0 < 10  # promptly (workers get SIGTERM, 5 s grace at most)
    lines = [ln for ln in err.splitlines() if ln.startswith("brainrecon:")]
    assert lines == [lines[0]] and f"stopped by {signal.Signals(sig).name}" in lines[0], err
    assert f"-w {work}" in lines[0] and "resume" in lines[0]
    assert "Traceback" not in err
    assert _gone(workers), "worker processes left running"
    assert not list(out.glob(".*.lock")) and not (work / ".brainrecon.lock").exists()
    assert not (out / "sub-01").exists() and not (out / "sub-01.html").exists()
    assert tree_digest(pristine) == before


def test_swallowed_interrupt_raised_again(pristine: Path, tmp_path: Path):
    """The workflow swallows the first KeyboardInterrupt: it is raised again until it gets out."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc, workers = _start(pristine, out, work, hang="once")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    err = proc.stderr.read()
    assert "swallowed 1" in err and "swallowed 2" in err and "stopped by SIGTERM" in err
    assert _gone(workers)
    assert not (work / ".brainrecon.lock").exists()


def test_second_sigint_forces(pristine: Path, tmp_path: Path):
    """The run swallows every interrupt (a stuck run); a second Ctrl-C ends it at once.

    The stand-in swallows the first interrupt only when it lands in its sleep; on a loaded
    machine it can land elsewhere and end the run (130) at once, which leaves nothing to force:
    the scenario is then started again (three tries). The second Ctrl-C must end the run within
    10 s, with 130 or by the signal itself (a shell shows both as 130)."""
    for attempt in range(3):
        out, work = tmp_path / f"out{attempt}", tmp_path / f"work{attempt}"
        proc, workers = _start(pristine, out, work, hang="always")
        proc.send_signal(signal.SIGINT)
        time.sleep(1.5)
        if proc.poll() is None:  # the first one (and its repeats) were swallowed
            break
        assert proc.returncode == 130 and _gone(workers)
    else:
        pytest.fail("the stand-in never swallowed the first interrupt in three tries")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) in (130, -signal.SIGINT)
    err = proc.stderr.read()
    assert proc.returncode == -signal.SIGINT or "stopping at once" in err, err
    assert _gone(workers)
    # the kernel dropped the locks with the process; the next run takes the files over
    with output_lock(work, "brainrecon"):
        pass


def test_second_run_on_the_same_work_folder_refused(pristine: Path, tmp_path: Path):
    out, work = tmp_path / "out", tmp_path / "work"
    first, workers = _start(pristine, out, work)
    try:
        second = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(pristine), str(tmp_path / "out2"), "participant",
             *ARGS, "-w", str(work)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    lines = [ln for ln in second.stderr.splitlines() if ln.startswith("brainrecon:")]
    assert second.returncode == 73, second.stderr
    assert len(lines) == 1 and f"process {first.pid}" in lines[0] and "-w" in lines[0]
    assert not (tmp_path / "out2" / "sub-01").exists()


def test_default_work_folder_is_persistent_and_local(pristine: Path, tmp_path: Path):
    """Without -w: ./work in the current folder (locked during the run), named in the line."""
    out, cwd = tmp_path / "out", tmp_path / "here"
    cwd.mkdir()
    proc, _ = _start(pristine, out, None, cwd=cwd)
    assert (cwd / "work" / ".brainrecon.lock").is_file()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert f"-w {cwd / 'work'}" in proc.stderr.read()


def test_default_work_folder_not_inside_output(tmp_path: Path, monkeypatch):
    from nipype_brainrecon.bids_app.workdir import default_work_dir

    monkeypatch.chdir(tmp_path)
    assert default_work_dir(tmp_path / "out") == tmp_path / "work"
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")  # as `datalad run` does, at the output dataset's root
    assert default_work_dir(tmp_path / "out") == tmp_path / "out_work"


def test_default_work_folder_refused_inside_input(pristine: Path, tmp_path: Path, monkeypatch,
                                                  capsys):  # fmt: skip
    """Run from inside the BIDS dataset without -w: ./work would be written into the input."""
    from nipype_brainrecon.bids_app.cli import main

    ds = Path(shutil.copytree(pristine, tmp_path / "ds", symlinks=True))
    before = tree_digest(ds)
    monkeypatch.chdir(ds)
    code = main([str(ds), str(tmp_path / "out"), "participant", *ARGS])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("brainrecon:")]
    assert code == 73 and len(lines) == 1, err
    assert f"{ds / 'work'}: the default work folder" in lines[0] and "-w/--work-dir" in lines[0]
    assert tree_digest(ds) == before
    assert not (tmp_path / "out").exists()
