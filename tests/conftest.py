"""Shared fixtures: paths to the real data fixtures and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


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
