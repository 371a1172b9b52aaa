"""Whole-or-nothing outputs (nipype_brainrecon.io): the swap that always leaves one complete
version, the recovery of a swap a kill interrupted, and the lock a killed holder left."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import tree_digest

from nipype_brainrecon import io
from nipype_brainrecon.errors import OutputError


def _fill(folder: Path, tag: str) -> dict[str, str]:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(f"a {tag}\n")
    (folder / "sub" / "b.bin").write_bytes(tag.encode() * 100)
    return tree_digest(folder)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_atomic_directory_replaces_whole(tmp_path: Path, monkeypatch, exchange: bool):
    target = tmp_path / "sub-01"
    _fill(target, "old")
    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    with io.atomic_directory(target, overwrite=True) as tmp:
        new = _fill(tmp, "new")
        assert tree_digest(target)["a.txt"] != new["a.txt"]  # not yet in place
    assert tree_digest(target) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01"]  # no .old-/.partial- left


def test_exchange_is_one_step_on_linux(tmp_path: Path):
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux's")
    a, b = tmp_path / "a", tmp_path / "b"
    _fill(a, "A")
    _fill(b, "B")
    da, db = tree_digest(a), tree_digest(b)
    assert io._exchange(a, b)
    assert tree_digest(a) == db and tree_digest(b) == da


def test_failed_body_leaves_target_byte_identical(tmp_path: Path):
    target = tmp_path / "sub-01"
    before = _fill(target, "old")
    with pytest.raises(RuntimeError), io.atomic_directory(target, overwrite=True) as tmp:
        _fill(tmp, "new")
        raise RuntimeError("the run failed")
    assert tree_digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_recover_puts_back_the_previous_version(tmp_path: Path, caplog):
    """Killed between the two renames: the previous version is at .<name>.old-<pid>, the new
    one at .<name>.partial-<pid>-*; the recovery puts the previous one back."""
    pid = _dead_pid()
    old = tmp_path / f".sub-01.old-{pid}"
    before = _fill(old, "old")
    _fill(tmp_path / f".sub-01.partial-{pid}-x1y2", "new")
    with caplog.at_level(logging.WARNING, logger="nipype_brainrecon.io"):
        done = io.recover_swaps(tmp_path)
    assert len(done) == 2 and "restored the previous version" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01"]
    assert tree_digest(tmp_path / "sub-01") == before


def test_recover_removes_old_when_target_complete_and_spares_live(tmp_path: Path):
    pid = _dead_pid()
    current = _fill(tmp_path / "sub-01", "new")
    _fill(tmp_path / f".sub-01.old-{pid}", "old")  # killed after the second rename
    live = tmp_path / f".sub-02.partial-{os.getpid()}-abc"  # a live writer's folder
    live.mkdir()
    io.recover_swaps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "sub-01"]
    assert tree_digest(tmp_path / "sub-01") == current


def test_kill_during_swap_then_recovery(tmp_path: Path):
    """SIGKILL in the window between the two renames (the test hook holds it open): one
    complete version survives (the old one, beside), and the next write recovers it."""
    target = tmp_path / "sub-01"
    before = _fill(target, "old")
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from nipype_brainrecon.io import atomic_directory
        with atomic_directory({str(target)!r}, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("new")
        """
    )
    env = dict(os.environ, **{io.SWAP_PAUSE_ENV: "60"})
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert "swap paused" in proc.stderr.readline()
        assert not target.exists()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert tree_digest(tmp_path / f".sub-01.old-{proc.pid}") == before
    io.recover_swaps(tmp_path)
    assert tree_digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01"]


def test_sigterm_during_swap_waits_for_the_swap(tmp_path: Path):
    """SIGINT/SIGTERM are held while the swap renames: the process ends after it, the new
    version in place, nothing left beside it."""
    target = tmp_path / "sub-01"
    _fill(target, "old")
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from nipype_brainrecon.io import atomic_directory
        with atomic_directory({str(target)!r}, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("new")
        import time; time.sleep(30)
        """
    )
    env = dict(os.environ, **{io.SWAP_PAUSE_ENV: "1"})
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True
    )
    assert "swap paused" in proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == -signal.SIGTERM
    assert (target / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01"]


def test_stale_lock_taken_over_with_a_message(tmp_path: Path, caplog):
    pid = _dead_pid()
    (tmp_path / ".sub-01.lock").write_text(f"{pid}\n")  # left by a killed run
    with caplog.at_level(logging.WARNING, logger="nipype_brainrecon.io"):
        with io.output_lock(tmp_path, "sub-01") as lock:
            assert lock.read_text().strip() == str(os.getpid())
    assert f"taking over the stale lock of process {pid}" in caplog.text
    assert not (tmp_path / ".sub-01.lock").exists()


def test_lock_refusal_names_holder_and_fix(tmp_path: Path):
    with io.output_lock(tmp_path, "brainrecon", fix="give this run another -w"):
        holder = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from nipype_brainrecon.io import output_lock\n"
                f"with output_lock({str(tmp_path)!r}, 'brainrecon', fix='give another -w'):\n"
                f"    pass",
            ],
            capture_output=True,
            text=True,
        )
    assert holder.returncode != 0
    assert f"process {os.getpid()}" in holder.stderr and "give another -w" in holder.stderr
    with pytest.raises(OutputError):  # and in-process, the same error class (exit 73)
        with io.output_lock(tmp_path, "x"), io.output_lock(tmp_path, "x"):
            pass
