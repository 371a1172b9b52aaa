"""One functional run: its raw and derivative files, repetition time, image headers and events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, InvalidDatasetError
from .events import EventsSpec
from .inputs import RunInputs
from .layout import NIFTI_EXTENSIONS, entities_from_name, func_dir, one_file, query_entities
from .tables import read_events


def repetition_time(raw_meta: dict, preproc_meta: dict, raw: Path, preproc: Path) -> float:
    """RepetitionTime from the preprocessed and raw sidecars (they must agree, > 0)."""
    values = {}
    for meta, path in ((preproc_meta, preproc), (raw_meta, raw)):
        if "RepetitionTime" in meta:
            try:
                values[path] = float(meta["RepetitionTime"])
            except (TypeError, ValueError) as exc:
                raise DataError(
                    f"{path}: RepetitionTime {meta['RepetitionTime']!r} in its sidecar is not "
                    "a number"
                ) from exc
    if not values:
        raise InvalidDatasetError(
            f"{raw}: no RepetitionTime in its JSON sidecar (nor in {preproc.name}'s); add it"
        )
    tr_values = list(values.values())
    if max(tr_values) - min(tr_values) > 1e-4:
        raise DataError(
            f"{preproc}: RepetitionTime {tr_values[0]} disagrees with the raw run's {tr_values[-1]}"
        )
    if not tr_values[0] > 0:
        raise DataError(f"{preproc}: RepetitionTime {tr_values[0]} must be positive")
    return tr_values[0]


def check_images(bold: Path, mask: Path, confounds: Path) -> int:
    """Headers only: 4-D BOLD, a 3-D mask on its grid, one confounds row per volume."""
    import nibabel as nib

    try:
        image = nib.load(bold)
        mask_image = nib.load(mask)
    except Exception as exc:  # nibabel raises several types for unreadable images
        raise DataError(f"{bold.parent}: cannot read the BOLD or mask image ({exc})") from exc
    if image.ndim != 4:
        raise DataError(f"{bold}: preprocessed BOLD has {image.ndim} dimensions, expected 4")
    shape = tuple(mask_image.shape)
    if shape[3:] and set(shape[3:]) != {1}:
        raise DataError(f"{mask}: brain mask is not 3-D ({shape})")
    if shape[:3] != tuple(image.shape[:3]) or not np.allclose(
        mask_image.affine, image.affine, atol=1e-3
    ):
        raise DataError(f"{mask}: brain mask is not on the grid of {bold.name}")
    n_volumes = int(image.shape[3])
    with open(confounds, "rb") as handle:
        rows = sum(1 for line in handle if line.strip()) - 1
    if rows != n_volumes:
        raise DataError(
            f"{confounds}: {rows} rows of confounds for {n_volumes} volumes in {bold.name}; "
            "it needs one row per volume"
        )
    return n_volumes


def collect_run(
    bold: Any,
    raw: Any,
    deriv: Any,
    derivatives: Path,
    space: str,
    stimuli_dir: Path,
    bids_dir: Path,
    spec: EventsSpec | None = None,
) -> RunInputs:
    """One run's inputs, from its raw BOLD file (a pybids file of the ``raw`` layout); ``spec``
    says which events are trials and which images they show (default: ``stim_file``)."""
    raw_bold = Path(bold.path)
    entities = entities_from_name(raw_bold)
    prefix = raw_bold.name.split(".")[0].removesuffix("_bold")
    run_name = prefix
    query = query_entities(bold)
    events_file = one_file(
        raw.get(**query, suffix="events", extension=".tsv"),
        raw_bold.with_name(prefix + "_events.tsv"),
        "events",
        run_name,
    )
    preproc, mask, confounds = _derivative_files(
        deriv, query, func_dir(derivatives, entities), prefix, space
    )
    tr = repetition_time(
        raw.get_metadata(str(raw_bold)), deriv.get_metadata(str(preproc)), raw_bold, preproc
    )
    n_volumes = check_images(preproc, mask, confounds)
    events = read_events(events_file, stimuli_dir, dataset_dir=bids_dir, spec=spec)
    _check_events_in_run(events, events_file, n_volumes, tr)
    return RunInputs(
        entities=entities,
        raw_bold=raw_bold,
        bold=preproc,
        mask=mask,
        confounds=confounds,
        events_file=events_file,
        events=events,
        repetition_time=tr,
        n_volumes=n_volumes,
    )


def _derivative_files(
    deriv: Any, query: dict[str, Any], out_dir: Path, prefix: str, space: str
) -> tuple[Path, Path, Path]:
    """The run's preprocessed BOLD, brain mask and confounds table in the derivatives."""
    run_name = prefix
    preproc = one_file(
        deriv.get(**query, space=space, desc="preproc", suffix="bold", extension=NIFTI_EXTENSIONS),
        out_dir / f"{prefix}_space-{space}_desc-preproc_bold.nii.gz",
        "preprocessed BOLD",
        run_name,
    )
    mask = one_file(
        deriv.get(**query, space=space, desc="brain", suffix="mask", extension=NIFTI_EXTENSIONS),
        out_dir / f"{prefix}_space-{space}_desc-brain_mask.nii.gz",
        "brain mask",
        run_name,
    )
    confounds = one_file(
        deriv.get(**query, desc="confounds", suffix=["timeseries", "regressors"], extension=".tsv"),
        out_dir / f"{prefix}_desc-confounds_timeseries.tsv",
        "confounds",
        run_name,
    )
    return preproc, mask, confounds


def _check_events_in_run(events: Any, events_file: Path, n_volumes: int, tr: float) -> None:
    """No event starts after the last volume (a sign of another run's events file)."""
    late = events["onset"] >= n_volumes * tr
    if late.any():
        row = int(np.flatnonzero(late.to_numpy())[0])
        raise DataError(
            f"{events_file}: row {row + 1} starts at {events['onset'].iloc[row]:g} s, after "
            f"the end of the run ({n_volumes} volumes x {tr:g} s = {n_volumes * tr:g} s); "
            "is the events file of another run?"
        )
