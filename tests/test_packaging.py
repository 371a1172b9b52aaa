"""Packaging hygiene: the wheel builds quietly and carries the license, py.typed and the data.

The build runs on a copy of the project's sources in ``tmp_path`` (the working tree is left
alone) without build isolation, so that no index is reached: the virtual environment's own
setuptools builds it, as ``pip install -e .`` does in ``tools/setup_venv.sh``.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE")
PACKAGES = ("nipype_brainrecon", "workflows", "bids_app")
WARNING_MARKS = ("BuildBackendWarning", "is absent from the `packages` configuration")

pytest.importorskip("setuptools")
if not (ROOT / "setup.cfg").is_file():  # an installed copy, not the source tree
    pytest.skip("needs the source tree", allow_module_level=True)


def _copy_sources(dst: Path) -> Path:
    for name in SOURCES:
        shutil.copy2(ROOT / name, dst / name)
    for name in PACKAGES:
        shutil.copytree(
            ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return dst


def _shipped_data() -> set[str]:
    """Every demo-model and report-template file on disk, as wheel paths."""
    pkg = ROOT / "nipype_brainrecon"
    found = {
        p.relative_to(ROOT).as_posix()
        for folder in (pkg / "data" / "demo_model", pkg / "reports" / "templates")
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert any(f.endswith(".safetensors") for f in found)
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    src = _copy_sources(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    (wheel,) = out.glob("nipype_brainrecon-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    return {"src": src, "log": log, "names": names, "metadata": metadata}


def test_the_wheel_builds_without_a_warning_block(built):
    for mark in WARNING_MARKS:
        assert mark not in built["log"], built["log"]


def test_the_wheel_carries_license_types_and_data(built):
    names = built["names"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)
    assert "License-File: LICENSE" in built["metadata"]
    assert "nipype_brainrecon/py.typed" in names
    missing = _shipped_data() - names
    assert not missing, f"data files left out of the wheel: {sorted(missing)}"
    # every package of the source tree (setup.cfg lists them: a new one must be added there)
    wheel_dirs = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    for folder, prefix in (
        ("nipype_brainrecon", ""),
        ("workflows", "nipype_brainrecon/"),
        ("bids_app", "nipype_brainrecon/"),
    ):
        for init in (ROOT / folder).rglob("__init__.py"):
            package = prefix + init.parent.relative_to(ROOT).as_posix()
            assert package in wheel_dirs, f"{package}: add it to setup.cfg's packages"
    assert "nipype_brainrecon/bids_app/cli.py" in names


def test_the_license_is_the_apache_2_0_text():
    text = (ROOT / "LICENSE").read_text()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["license"] == "Apache-2.0"
    assert "Apache License\n                           Version 2.0, January 2004" in text
    sections = [
        "1. Definitions.",
        "2. Grant of Copyright License.",
        "3. Grant of Patent License.",
        "4. Redistribution.",
        "5. Submission of Contributions.",
        "6. Trademarks.",
        "7. Disclaimer of Warranty.",
        "8. Limitation of Liability.",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
    ]
    positions = [text.find(s) for s in sections]
    assert -1 not in positions and positions == sorted(positions), positions
    assert len(text.splitlines()) == 202  # apache.org's LICENSE-2.0.txt, whole


def test_requirements_pin_nothing_above_and_declare_threadpoolctl():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    torch = [r for r in reqs if r.startswith("torch")]
    assert torch == ["torch>=2.1"], torch  # CI pins through tools/constraints-ci.txt instead
    assert any(r.startswith("threadpoolctl") for r in reqs)
    constraints = (ROOT / "tools" / "constraints-ci.txt").read_text().split()
    assert any(line.startswith("torch==") for line in constraints)


def test_the_editable_build_is_quiet_too(built, tmp_path):
    """``pip install -e .`` goes through setuptools' PEP 660 hook: it must not warn either."""
    code = (
        "import sys; from setuptools import build_meta as b; print(b.build_editable(sys.argv[1]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=built["src"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert list(tmp_path.glob("*.whl")), log
    for mark in WARNING_MARKS:
        assert mark not in log, log
