"""The output dataset: create it, save into it, and what a participant run writes there."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import OutputError
from .repo import datalad_api, dataset_root, is_dataset, quiet, result_message, short_error

#: Files the BIDS App writes at the root of the derivatives for every participant.
SHARED_OUTPUTS = (
    "dataset_description.json",
    "README.md",
    ".bidsignore",
    "logs/CITATION.md",
    "logs/settings.toml",
)


@quiet()
def ensure_output_dataset(output_dir: str | os.PathLike) -> Path:
    """Make ``output_dir`` a DataLad dataset (text in git, binary files annexed).

    An existing dataset is used as it is. A new one is registered as a subdataset when
    ``output_dir`` lies inside another dataset (YODA). Files already in the folder are saved
    in a first commit, so that each participant's run record holds only its own outputs.

    Raises
    ------
    OutputError
        The dataset cannot be created or saved.
    """
    out = Path(output_dir).absolute()
    if is_dataset(out):
        return out
    dl = datalad_api()
    parent = dataset_root(out.parent)
    kwargs: dict[str, Any] = {"dataset": str(parent)} if parent is not None else {}
    try:
        ds = dl.create(
            path=str(out),
            force=True,
            cfg_proc="text2git",
            result_renderer="disabled",
            **kwargs,
        )
        if ds.repo.dirty:
            ds.save(
                message="brainrecon: outputs present before DataLad tracking",
                result_renderer="disabled",
            )
    except Exception as exc:  # DataLad raises several types for failed creation
        raise OutputError(f"{out}: cannot make it a DataLad dataset ({short_error(exc)})") from exc
    return out


@quiet()
def save_outputs(
    dataset: str | os.PathLike,
    paths: Iterable[str | os.PathLike] | None,
    message: str,
) -> str:
    """Save ``paths`` (default: every change) in ``dataset`` with ``message``; return the commit.

    Raises
    ------
    OutputError
        A path outside the dataset, or the save failed.
    """
    root = Path(dataset).absolute()
    if not is_dataset(root):
        raise OutputError(f"{root}: not a DataLad dataset; create it first (datalad create)")
    items = None
    if paths is not None:
        items = []
        for p in paths:
            full = Path(os.path.abspath(p if Path(p).is_absolute() else root / p))
            if full != root and root not in full.parents:
                raise OutputError(f"{full}: outside the dataset {root}; save files inside it")
            items.append(str(full))
    dl = datalad_api()
    ds = dl.Dataset(str(root))
    try:
        results = ds.save(
            path=items,
            message=message,
            result_renderer="disabled",
            on_failure="ignore",
            return_type="list",
        )
    except Exception as exc:  # DataLad raises several types for failed saves
        raise OutputError(f"{root}: cannot save ({short_error(exc)})") from exc
    failed = [r for r in results if r.get("status") in ("error", "impossible")]
    if failed:
        raise OutputError(
            f"{failed[0].get('path', root)}: cannot save ({result_message(failed[0])})"
        )
    return ds.repo.get_hexsha()


def participant_outputs(label: str) -> list[str]:
    """What the BIDS App writes for one participant, relative to the derivatives root."""
    from ..bids import normalize_participant_label

    label = normalize_participant_label(label)
    return [f"sub-{label}", f"sub-{label}.html", f"logs/sub-{label}_summary.json", *SHARED_OUTPUTS]
