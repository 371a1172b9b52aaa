"""Make input datasets available: clone a source or install a registered subdataset.

Only the datasets are installed here; no annexed content is fetched (see :mod:`.get`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import MissingInputError, UsageError
from .outputs import ensure_output_dataset
from .repo import datalad_api, dataset_root, is_dataset, is_url, quiet, result_message, short_error

LOGGER = logging.getLogger(__name__)


@quiet()
def ensure_dataset(
    source: str | os.PathLike,
    path: str | os.PathLike | None = None,
    *,
    superdataset: str | os.PathLike | None = None,
) -> Path:
    """Make a dataset available locally and return its local path; content is not fetched.

    Parameters
    ----------
    source : str or path
        A local folder (a dataset, a plain folder, or a subdataset that is not installed yet),
        or anything ``datalad clone`` accepts (URL, ``///`` shortcut, ``ria+`` URL).
    path : path, optional
        Where to clone a source that is not a local folder. Required in that case.
    superdataset : path, optional
        Register the clone as a subdataset of this dataset (YODA: inputs are subdatasets);
        made a dataset first (:func:`ensure_output_dataset`) if it is not one yet.

    Returns
    -------
    pathlib.Path
        The absolute local path. A plain (non-DataLad) folder is returned as it is.

    Raises
    ------
    MissingInputError
        A local folder that does not exist and is no subdataset; a clone that failed.
    UsageError
        A remote source without ``path``.
    """
    text = os.fspath(source)
    local = Path(text).absolute()
    if not is_url(text):
        if local.is_dir() and (is_dataset(local) or any(local.iterdir())):
            return local
        return _install_subdataset(local)
    if path is None:
        raise UsageError(f"{text}: a remote dataset needs a local path to clone into")
    target = Path(path).absolute()
    if is_dataset(target):
        return target  # cloned by an earlier run
    dl = datalad_api()
    kwargs: dict[str, Any] = {}
    if superdataset is not None:
        # Created only now that a clone needs it, so failures before leave nothing behind.
        kwargs["dataset"] = str(ensure_output_dataset(superdataset))
    try:
        results = dl.clone(
            source=text,
            path=str(target),
            result_renderer="disabled",
            result_xfm=None,
            on_failure="ignore",
            return_type="list",
            **kwargs,
        )
    except Exception as exc:  # DataLad raises several types for failed clones
        raise MissingInputError(f"{text}: cannot clone this dataset ({short_error(exc)})") from exc
    failed = [r for r in results if r.get("status") in ("error", "impossible")]
    if failed or not is_dataset(target):
        reason = result_message(failed[0]) if failed else "no dataset was installed"
        raise MissingInputError(f"{text}: cannot clone this dataset into {target} ({reason})")
    LOGGER.info("cloned %s into %s", text, target)
    return target


@quiet()
def _install_subdataset(local: Path) -> Path:
    """Install a registered but absent subdataset at ``local`` (an empty or missing folder)."""
    existing = next((p for p in [local, *local.parents] if p.exists()), None)
    root = dataset_root(existing) if existing is not None else None
    if root is None or root == local and not is_dataset(local):
        if local.is_dir():
            return local  # an empty plain folder: let the caller report what is missing
        raise MissingInputError(f"{local}: dataset folder not found")
    dl = datalad_api()
    try:
        results = dl.get(
            path=str(local),
            dataset=str(root),
            get_data=False,
            result_renderer="disabled",
            on_failure="ignore",
            return_type="list",
        )
    except Exception as exc:  # DataLad raises several types here
        raise MissingInputError(
            f"{local}: cannot install this subdataset ({short_error(exc)})"
        ) from exc
    if not is_dataset(local):
        failed = [r for r in results if r.get("status") in ("error", "impossible")]
        if local.is_dir():
            return local  # not a subdataset, just an empty folder
        reason = result_message(failed[0]) if failed else f"not a subdataset of {root}"
        raise MissingInputError(f"{local}: dataset folder not found ({reason})")
    LOGGER.info("installed subdataset %s", local)
    return local
