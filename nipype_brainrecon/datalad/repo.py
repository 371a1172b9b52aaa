"""Datasets on disk and the DataLad API: find git-annex, tell datasets from plain folders.

Shared by the other modules of :mod:`nipype_brainrecon.datalad`: :func:`datalad_api` imports
``datalad.api`` (git-annex on ``PATH`` first), :func:`quiet` keeps DataLad's per-file logging
for ``-vv``, :func:`result_message` and :func:`short_error` make one-line messages.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import UsageError

LOGGER = logging.getLogger(__name__)

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://|///|[\w.-]+@[\w.-]+:|ria\+|osf://)")


def ensure_git_annex() -> str:
    """Return the git-annex program, putting the interpreter's ``bin/`` on ``PATH`` if needed.

    The ``git-annex`` wheel installs the program beside the Python interpreter of its
    environment, which is not on ``PATH`` when that environment is not activated.

    Raises
    ------
    UsageError
        No git-annex anywhere.
    """
    found = shutil.which("git-annex")
    if found:
        return found
    beside = Path(sys.executable).parent / "git-annex"
    if beside.is_file() and os.access(beside, os.X_OK):
        os.environ["PATH"] = os.pathsep.join([str(beside.parent), os.environ.get("PATH", "")])
        return str(beside)
    raise UsageError(
        "git-annex: not found on PATH; install it (pip install git-annex, or apt-get install "
        "git-annex) to read or write DataLad datasets"
    )


def datalad_api() -> Any:
    """``datalad.api``, with git-annex on PATH; a usage error when DataLad is not installed."""
    ensure_git_annex()
    try:
        import datalad.api as dl
    except ImportError as exc:
        raise UsageError(
            "datalad: the Python package is not installed; pip install "
            "'nipype-brainrecon[datalad]' to use DataLad datasets"
        ) from exc
    return dl


@contextmanager
def quiet() -> Any:
    """DataLad logs every annexed file it moves at INFO; keep that for ``-vv`` (DEBUG) only."""
    logger = logging.getLogger("datalad")
    previous = logger.level
    if not LOGGER.isEnabledFor(logging.DEBUG):
        logger.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(previous)


def result_message(result: Mapping[str, Any]) -> str:
    """A DataLad result's message as one line (it may be a format tuple)."""
    msg = result.get("message", "")
    if isinstance(msg, (tuple, list)) and msg:
        try:
            msg = msg[0] % tuple(msg[1:])
        except (TypeError, ValueError):
            msg = " ".join(str(m) for m in msg)
    text = " ".join(str(msg).split())
    return text or str(result.get("status", "failed"))


def short_error(exc: BaseException) -> str:
    """An exception's text on one line, at most 300 characters."""
    return " ".join(str(exc).split())[:300]


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the root of an installed DataLad dataset (or a git-annex repository).

    Checked from the file system only (no DataLad import), so plain folders cost nothing.
    """
    root = Path(path)
    return (root / ".git").exists() and (
        (root / ".datalad").is_dir() or (root / ".git" / "annex").exists()
    )


def dataset_root(path: Path) -> Path | None:
    """The closest folder at or above ``path`` holding a ``.git``; None if there is none."""
    for candidate in [path, *path.parents]:
        if (candidate / ".git").exists():
            return candidate
    return None


def is_url(source: str) -> bool:
    """Whether ``source`` is a clone source rather than a local path (URL, ``///``, ``ria+``)."""
    return bool(_URL.match(source))


def uses_datalad(*sources: str | os.PathLike | None) -> bool:
    """Whether any source is a clone URL or lies in a DataLad dataset / git-annex repository
    (including a subdataset not installed yet): then :func:`prepare_inputs` has work to do."""
    for source in sources:
        if source is None:
            continue
        text = os.fspath(source)
        if is_url(text):
            return True
        local = Path(text).absolute()
        existing = next((p for p in [local, *local.parents] if p.exists()), None)
        root = dataset_root(existing) if existing is not None else None
        if root is not None and is_dataset(root):
            return True
    return False


def dataset_info(path: Path) -> dict[str, Any]:
    """Identity of a local dataset for provenance: path, DataLad id, commit."""
    info: dict[str, Any] = {"path": str(path)}
    if not is_dataset(path):
        return info
    dl = datalad_api()
    ds = dl.Dataset(str(path))
    info["id"] = ds.id
    try:
        info["commit"] = ds.repo.get_hexsha()
    except Exception:  # an empty repository has no commit
        info["commit"] = None
    return info


def absent_count(path: Path) -> int:
    """How many annexed files of the dataset at ``path`` have no content here (0: not one)."""
    if not is_dataset(path):
        return 0
    dl = datalad_api()
    try:
        out = dl.Dataset(str(path)).repo.call_annex(["find", "--not", "--in=here"])
    except Exception:  # a plain git repository has no annex
        return 0
    return len([line for line in out.splitlines() if line.strip()])
