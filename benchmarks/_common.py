"""Helpers shared by the benchmarks: the machine they ran on and the memory they used."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from pathlib import Path

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
