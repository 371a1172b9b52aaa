"""Shared fixtures: paths to the real data fixtures and offline settings."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
from collections.abc import Callable, Collection
from pathlib import Path

import pandas as pd
import pytest

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_clone(tmp_path_factory: pytest.TempPathFactory):
    """Every test runs from a temporary folder: what a run writes relative to the working
    folder (the default ``./work``) never lands in the clone."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(cwd)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection refused (and recorded): a test using it proves no network."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(errno.ENETUNREACH, "network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


#: Derivative file types whose bytes must repeat between runs with the same seed.
OUTPUT_SUFFIXES = frozenset({".png", ".tsv", ".npy", ".safetensors", ".gz"})


def is_run_log(rel: str | os.PathLike) -> bool:
    """``logs/sub-<label>_<date>.log`` (relative to the output folder): the run's own log, named
    by its start time and quoting the work folder; diagnostics, not derivatives, so reruns and
    path checks leave it out."""
    parts = Path(rel).parts
    return len(parts) == 2 and parts[0] == "logs" and parts[1].endswith(".log")


def tree_digest(root: Path) -> dict[str, str]:
    """Every file, link and folder under ``root``: content hash, link target or 'dir'."""
    out = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def set_cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """An edit of a table (events, captions) that puts ``value`` in one cell."""

    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table[column] = table[column].astype(object)
        table.loc[row, column] = value
        return table

    return edit


def file_digests(
    root: Path, suffixes: Collection[str] | None = None, exclude_dirs: Collection[str] = ()
) -> dict[str, str]:
    """Content hash of each file under ``root`` (of the given suffixes, outside the named
    folders), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and (suffixes is None or p.suffix in suffixes)
        and not set(p.relative_to(root).parts[:-1]) & set(exclude_dirs)
    }


def _shared_data() -> Path:
    env = os.environ.get("BRAINRECON_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real fixtures (Haxby 2001 slice, Miyawaki 2008 V1); skip when absent."""
    path = _shared_data()
    if not path.is_dir():
        pytest.skip(f"real fixtures not found at {path} (set BRAINRECON_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def haxby_dir(shared_data: Path) -> Path:
    path = shared_data / "haxby2001-pymvpa"
    if not path.is_dir():
        pytest.skip(f"Haxby fixture not found at {path}")
    return path


@pytest.fixture(scope="session")
def miyawaki_dir(shared_data: Path) -> Path:
    path = shared_data / "miyawaki2008-figure-v1"
    if not path.is_dir():
        pytest.skip(f"Miyawaki fixture not found at {path}")
    return path


def pytest_collection_modifyitems(config, items):
    """Tests under tests/integration/ (whole runs of the app, resume, Slurm, DataLad) are
    marked ``integration``: ``-m 'not integration'`` leaves them out."""
    integration = Path(__file__).parent / "integration"
    for item in items:
        if integration in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
