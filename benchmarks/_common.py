"""Helpers shared by the benchmarks: the machine they ran on and the memory they used."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_PACKAGES = ("numpy", "scipy", "himalaya", "scikit-learn", "nipype-brainrecon")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"absent"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident memory in KiB (``VmRSS``; ``VmHWM`` for its peak)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_worker_child(
    module: str, spec: Mapping[str, Any], env: Mapping[str, str], timeout: float
) -> tuple[dict[str, Any], float, Any]:
    """Run ``python -m MODULE --worker SPEC_JSON`` from the repository root and return its last
    stdout line as JSON (or ``{"error": ...}``), the wall time and the child's own rusage
    (``os.wait4``, not ``Popen.wait``: ``ru_maxrss`` in KiB is that child's peak RSS)."""
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(dict(spec))]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        wall = time.perf_counter()
        proc = subprocess.Popen(cmd, env=dict(env), cwd=ROOT, stdout=out, stderr=err, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - wall
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        lines = stderr.strip().splitlines()
        reason = f"timed out after {timeout:.0f} s" if wall >= timeout else None
        return {"error": reason or (lines[-1] if lines else f"exit code {code}")}, wall, usage
    return json.loads(stdout.strip().splitlines()[-1]), wall, usage


def himalaya_banded_ridge_cv(
    train_blocks: list, y_train, alphas_per_band, fit_intercept: bool = True, n_folds: int = 5
):
    """The reference banded ridge: himalaya's ``BandedRidgeCV`` on standardised blocks.

    The Cartesian grid of ``alphas_per_band`` is given as band scalings ``1 / alpha_b`` on a
    ridge of 1 (``deltas_b = log(1 / alpha_b)``), with unshuffled ``KFold(n_folds)``: the setup
    under which our ``fit_banded_ridge_cv`` must choose the same alphas. Returns the fitted model
    and the per-block ``StandardScaler`` (apply them to test blocks before ``predict``).
    """
    import numpy as np
    from himalaya.ridge import BandedRidgeCV
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    from nipype_brainrecon.ridge.banded import banded_alpha_grid

    combos = banded_alpha_grid(alphas_per_band, len(train_blocks))
    scalers = [StandardScaler().fit(b) for b in train_blocks]
    model = BandedRidgeCV(
        groups="input",
        solver_params={
            "n_iter": 1.0 / combos,
            "alphas": np.array([1.0]),
            "progress_bar": False,
            "warn": False,
        },
        cv=KFold(n_folds),
        fit_intercept=fit_intercept,
    ).fit([s.transform(b) for s, b in zip(scalers, train_blocks, strict=True)], y_train)
    return model, scalers
