"""The raw dataset's tables: events of a run and the captions of the stimuli."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .events import STIM_COLUMN, EventsSpec, map_events
from .stimuli import resolve_stim_file
from .tsv import read_tsv

#: Events columns every run must have.
EVENTS_COLUMNS = ("onset", "duration", "stim_file")


def read_events(
    path: str | Path,
    stimuli_dir: str | Path,
    *,
    dataset_dir: str | Path,
    spec: EventsSpec | None = None,
) -> Any:
    """Read an events TSV and resolve each trial's image under ``stimuli_dir``.

    Parameters
    ----------
    path : path
        The ``*_events.tsv`` file.
    stimuli_dir : path
        The dataset's ``stimuli/`` folder.
    dataset_dir : path
        The dataset root (links into it are accepted).
    spec : EventsSpec, optional
        The stimulus column, how its values name images and which rows are trials (default:
        ``stim_file`` as written, every row with one a trial); see :mod:`.events`.

    Returns
    -------
    pandas.DataFrame
        ``onset`` and ``duration`` as floats, ``stim_file`` as absolute paths of each trial's
        image (``None`` for rows that are not trials: ``n/a`` or not chosen by the filter);
        other columns as read.

    Raises
    ------
    DataError
        A required column is missing, empty or non-numeric, a ``stim_file`` leaves ``stimuli/``,
        no row is a trial, a value is absent from the stimulus map.
    MissingInputError
        The table or one of its stimuli is absent.
    """
    import pandas as pd

    path = Path(path)
    spec = spec or EventsSpec()
    text_columns = dict.fromkeys(("stim_file", "trial_type", spec.stim_column), str)
    table = read_tsv(path, "events table", dtype=text_columns)
    required = EVENTS_COLUMNS if spec.stim_column == STIM_COLUMN else EVENTS_COLUMNS[:2]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: events table lacks column(s) {', '.join(missing)}; "
            f"it needs {', '.join(EVENTS_COLUMNS)}"
        )
    if table.empty:
        raise DataError(f"{path}: events table has no rows")
    for column in ("onset", "duration"):
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"{path}: row {row + 1} has a non-numeric {column}; write seconds")
        table[column] = values.astype(float)
    if not np.isfinite(table[["onset", "duration"]].to_numpy()).all():
        row = int(np.flatnonzero(~np.isfinite(table[["onset", "duration"]].to_numpy()))[0] // 2)
        raise DataError(f"{path}: row {row + 1} has an infinite onset or duration; write seconds")
    for column in ("onset", "duration"):
        if (table[column] < 0).any():
            row = int(np.flatnonzero(table[column].to_numpy() < 0)[0])
            raise DataError(
                f"{path}: row {row + 1} has a negative {column}; onsets are seconds from the "
                "first volume and durations are >= 0"
            )
    if spec.is_default and not table["stim_file"].notna().any():
        raise DataError(f"{path}: every stim_file is n/a; name the image each event shows")
    if not spec.is_default:
        table = map_events(table, spec, path)
    shown = table[table["stim_file"].notna()].sort_values("onset", kind="stable")
    starts, ends = shown["onset"].to_numpy(), (shown["onset"] + shown["duration"]).to_numpy()
    overlap = np.flatnonzero(starts[1:] < ends[:-1] - 1e-3)
    if overlap.size:
        first, second = shown.index[overlap[0]], shown.index[overlap[0] + 1]
        raise DataError(
            f"{path}: image events in rows {first + 1} and {second + 1} overlap (onset "
            f"{starts[overlap[0] + 1]:g} s before the previous image ends at "
            f"{ends[overlap[0]]:g} s); one image at a time, fix the onsets or durations"
        )
    stimuli_dir = Path(stimuli_dir)
    named_in = spec.stim_map if spec.stim_map is not None else path
    resolved: dict[str, Path] = {}
    column = []
    for value in table["stim_file"]:
        if pd.isna(value):
            column.append(None)
            continue
        if value not in resolved:
            resolved[value] = resolve_stim_file(
                value, stimuli_dir, dataset_dir=Path(dataset_dir), source=named_in
            )
        column.append(resolved[value])
    table["stim_file"] = pd.Series(column, index=table.index, dtype=object)
    return table


def read_captions(
    path: str | Path, stimuli_dir: str | Path, *, dataset_dir: str | Path
) -> dict[Path, list[str]]:
    """Read a long-format captions table (``stim_file``, ``caption``; several rows per image).

    Returns
    -------
    dict
        Absolute stimulus path -> its captions in file order. Rows whose caption is ``n/a`` or
        empty are skipped; images need not exist (only those the runs show are checked).
    """
    import pandas as pd

    path = Path(path)
    table = read_tsv(path, "captions table")
    missing = [c for c in ("stim_file", "caption") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: captions table lacks column(s) {', '.join(missing)}")
    captions: dict[Path, list[str]] = {}
    resolved: dict[str, Path] = {}
    for stim, caption in zip(table["stim_file"], table["caption"], strict=True):
        if pd.isna(stim):
            raise DataError(f"{path}: a row has no stim_file; every caption must name its image")
        if stim not in resolved:
            resolved[stim] = resolve_stim_file(
                stim,
                Path(stimuli_dir),
                dataset_dir=Path(dataset_dir),
                source=path,
                must_exist=False,
            )
        if pd.isna(caption) or not str(caption).strip():
            continue
        captions.setdefault(resolved[stim], []).append(str(caption).strip())
    return captions
