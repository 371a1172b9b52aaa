"""Get annexed content: only the files asked for, in parallel, with a count of what moved."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import MissingInputError
from .repo import datalad_api, quiet, result_message, short_error

LOGGER = logging.getLogger(__name__)

#: Bytes in a megabyte, as the transfer summaries count them.
MB = 1024 * 1024
_KEY_SIZE = re.compile(r"-s(\d+)(?:-|--)")


def _key_size(path: Path) -> int | None:
    """Size in bytes written in the annex key a locked file links to (None if unknown)."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    match = _KEY_SIZE.search(Path(target).name + "-")
    return int(match.group(1)) if match else None


def _check_fetched(absent: list[Path], results: list[dict[str, Any]]) -> None:
    """Raise for the first file ``datalad get`` failed on or left without content."""
    failures = {
        Path(r["path"]): result_message(r)
        for r in results
        if r.get("action") == "get" and r.get("status") in ("error", "impossible")
    }
    still = [p for p in absent if not p.is_file()]
    if failures or still:
        bad = [p for p in absent if p in failures or p in still]
        first = bad[0]
        reason = failures.get(first, "content still absent after get")
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise MissingInputError(
            f"{first}: annexed content cannot be fetched ({reason}){more}; make a remote that "
            "has it available (git annex whereis) or use a complete copy of the dataset"
        )


def _distinct_bytes(files: list[Path]) -> int:
    """Bytes of the files' content, each annex key counted once."""
    # Files with identical content share one annex key: count its bytes once.
    contents: dict[str, Path] = {}
    for p in files:
        try:
            key = Path(os.readlink(p)).name
        except OSError:  # an unlocked file: its own content
            key = str(p)
        contents.setdefault(key, p)
    return int(sum(p.stat().st_size for p in contents.values()))


@quiet()
def get_files(
    dataset: str | os.PathLike, paths: Iterable[str | os.PathLike], *, jobs: int = 4
) -> dict[str, Any]:
    """Get the annexed content of ``paths`` in ``dataset`` (in parallel) and say what moved.

    Parameters
    ----------
    dataset : path
        An installed DataLad dataset (or git-annex repository).
    paths : iterable of path
        Files in it, absolute or relative to ``dataset``; files already present cost nothing.
    jobs : int
        Parallel transfers.

    Returns
    -------
    dict
        ``n_files`` made available and ``bytes`` fetched (content shared by several files
        counted once), ``n_present`` (already there), ``n_requested``,
        ``seconds``, and ``files`` (absolute local paths, in the order given).

    Raises
    ------
    MissingInputError
        A path that does not exist, or whose content no remote can provide (the message names
        the first such file and how many more there are).
    """
    root = Path(dataset).absolute()
    files = [p if Path(p).is_absolute() else root / p for p in map(Path, paths)]
    files = [Path(os.path.abspath(p)) for p in files]
    summary: dict[str, Any] = {
        "n_files": 0,
        "bytes": 0,
        "n_present": 0,
        "n_requested": len(files),
        "seconds": 0.0,
        "files": [str(p) for p in files],
    }
    missing = [p for p in files if not os.path.lexists(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingInputError(f"{missing[0]}: file not found in dataset {root}{more}")
    absent = [p for p in files if not p.is_file()]
    summary["n_present"] = len(files) - len(absent)
    if not absent:
        return summary
    dl = datalad_api()
    expected = sum(_key_size(p) or 0 for p in absent)
    LOGGER.info(
        "getting %d file(s) (%.1f MB) from %s with %d job(s)",
        len(absent),
        expected / MB,
        root,
        jobs,
    )
    started = time.monotonic()
    try:
        results = dl.Dataset(str(root)).get(
            path=[str(p) for p in absent],
            jobs=max(int(jobs), 1),
            on_failure="ignore",
            result_renderer="disabled",
            return_type="list",
        )
    except Exception as exc:  # DataLad raises several types for failed transfers
        raise MissingInputError(
            f"{absent[0]}: cannot get its content ({short_error(exc)})"
        ) from exc
    summary["seconds"] = round(time.monotonic() - started, 3)
    _check_fetched(absent, results)
    summary["n_files"] = len(absent)
    summary["bytes"] = _distinct_bytes(absent)
    LOGGER.info(
        "got %d file(s) (%.1f MB) in %.1f s",
        summary["n_files"],
        summary["bytes"] / MB,
        summary["seconds"],
    )
    return summary
