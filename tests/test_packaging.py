"""Packaging hygiene: the wheel builds quietly and carries the license, py.typed and the data.

The build runs on a copy of the project's sources in ``tmp_path`` (the working tree is left
alone) without build isolation, so that no index is reached: the virtual environment's own
setuptools builds it, as ``pip install -e .`` does in ``tools/setup_venv.sh``.
"""

from __future__ import annotations

import configparser
import re
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


# ---- the Docker image's constraints: tools/constraints-docker.txt ----
DOCKER_CONSTRAINTS = ROOT / "tools" / "constraints-docker.txt"
# What the Dockerfile's build stage installs with pip besides the package ("/src[datalad]", whose
# requirements come from setup.cfg) and the build backend.
DOCKER_INSTALLS = ("bids-validator-deno", "pip")
# torch's accelerator packages (PyPI's CUDA build): the torch wheel pins them, the file does not.
UNPINNED = re.compile(r"^(nvidia-|cuda-|triton$)")


def _image_requirements() -> list[str]:
    """setup.cfg's install_requires and [datalad] extra, then DOCKER_INSTALLS."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    lines += cfg["options.extras_require"]["datalad"].splitlines()
    return [line.strip() for line in lines if line.strip()] + list(DOCKER_INSTALLS)


def _pins(path: Path) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {
        canonicalize_name(name): version
        for name, _, version in (line.partition("==") for line in lines if line)
    }


def _build_requires() -> list[str]:
    """The names in pyproject.toml's ``[build-system] requires`` (setuptools, wheel)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^requires\s*=\s*\[(.*?)\]", text, re.M | re.S)
    assert block, "pyproject.toml: no [build-system] requires"
    return [re.split(r"[<>=!~ \[;]", r)[0] for r in re.findall(r'"([^"]+)"', block.group(1))]


def docker_closure(roots=None) -> dict[str, str]:
    """Name -> version in this environment of every distribution that ``pip install roots``
    brings, following the installed metadata (markers evaluated for this interpreter)."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    roots = _image_requirements() if roots is None else roots
    todo, seen, found = [Requirement(r) for r in roots], set(), {}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen or UNPINNED.match(name):
            continue
        seen.add((name, frozenset(req.extras)))
        dist = distribution(req.name)  # PackageNotFoundError: not installed here
        found[name] = dist.version.split("+")[0]  # torch 2.13.0+cpu is pinned as 2.13.0
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None:
                todo.append(sub)
            elif any(sub.marker.evaluate({"extra": e}) for e in req.extras) or (
                "extra" not in str(sub.marker) and sub.marker.evaluate({"extra": ""})
            ):
                todo.append(sub)
    found.pop("nipype-brainrecon", None)
    return found


def test_the_docker_constraints_pin_every_requirement_of_the_image():
    from importlib.metadata import PackageNotFoundError

    try:
        needed = docker_closure()
    except PackageNotFoundError as exc:  # pragma: no cover - an environment without the extras
        pytest.skip(f"{exc} is not installed here (install the [test] extra)")
    pins = _pins(DOCKER_CONSTRAINTS)
    missing = sorted(set(needed) - set(pins))
    assert not missing, (
        f"{DOCKER_CONSTRAINTS.name} lacks {missing}: regenerate it "
        "(python tests/test_packaging.py --docker-constraints)"
    )
    assert set(_build_requires()) <= set(pins), _build_requires()
    ci = _pins(ROOT / "tools" / "constraints-ci.txt")
    assert pins["torch"] == ci["torch"], "the image must ship the torch CI tests"
    assert all(v and v[0].isdigit() for v in pins.values()), "pins are name==version"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "PIP_CONSTRAINT=/src/tools/constraints-docker.txt" in dockerfile


if __name__ == "__main__" and sys.argv[1:] == ["--docker-constraints"]:
    # Print tools/constraints-docker.txt anew: its comment lines, then this environment's pins
    # (build requirements not installed here keep their current pin).
    old = _pins(DOCKER_CONSTRAINTS)
    new = docker_closure()
    for name in _build_requires():
        try:
            new.setdefault(name, docker_closure((name,))[name])
        except Exception:  # not installed here (wheel): keep the current pin
            new.setdefault(name, old[name])
    for line in DOCKER_CONSTRAINTS.read_text().splitlines():
        if line.startswith("#"):
            print(line)
    for name in sorted(new):
        print(f"{name}=={new[name]}")


_TORCHVISION_PROBE = """
import json, logging
from nipype_brainrecon.diffusion import loading  # installs the filter

seen = []
class Keep(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())

log = logging.getLogger("transformers.utils.import_utils")
log.addHandler(Keep())
from diffusers import StableDiffusionImg2ImgPipeline  # imports CLIPImageProcessor
import transformers
quiet = list(seen)
log.filters.clear()  # the control: without the filter the note reaches handlers
transformers.ViTImageProcessor
print(json.dumps({"quiet": quiet, "control": seen[len(quiet):]}))
"""


def test_no_torchvision_fallback_warning_when_the_pipeline_loads():
    """transformers 5 without torchvision logs '`CLIPImageProcessor` requires torchvision ...'
    when diffusers' img2img pipeline is imported; loading.py drops exactly that note."""
    import json
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _TORCHVISION_PROBE], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if not any("requires torchvision" in m for m in got["control"]):
        pytest.skip(
            "this transformers does not fall back (torchvision installed or transformers 4)"
        )
    assert not [m for m in got["quiet"] if "requires torchvision" in m], got["quiet"]
    printed = [line for line in proc.stderr.splitlines() if "requires torchvision" in line]
    assert all("`ViTImageProcessor`" in line for line in printed), printed  # the control's only
