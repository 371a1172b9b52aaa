"""The events table of a run: which rows are trials, and the checks on onsets and durations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..bids.events import EventsSpec, map_events
from ..errors import DataError
from .inputs import PathOrFrame, read_table


def is_trial(stim_file: pd.Series) -> np.ndarray:
    """Rows naming a stimulus (not empty, not BIDS ``n/a``)."""
    text = stim_file.astype(str).str.strip()
    return (stim_file.notna() & (text != "") & (text != "n/a")).to_numpy()


def stim_id(stim_file: str) -> str:
    """The stimulus id of a ``stim_file`` entry: its file name stem."""
    return Path(stim_file.replace("\\", "/")).stem


def load_events(events: PathOrFrame, spec: EventsSpec | None = None) -> pd.DataFrame:
    """Read and check an events table (BIDS ``*_events.tsv`` or a DataFrame).

    Parameters
    ----------
    events : path or pandas.DataFrame
        Needs ``onset``, ``duration`` (seconds) and ``stim_file`` columns. Rows whose ``stim_file``
        is empty (``n/a``) are not trials; they are modelled as nuisance events grouped by
        ``trial_type``.
    spec : nipype_brainrecon.bids.EventsSpec, optional
        Another stimulus column, its mapping to image files and a trial filter: the returned
        ``stim_file`` names each trial's image (relative to ``stimuli/``) and is empty for the
        rows that are not trials (unselected, or ``n/a``), which stay as nuisance events. The same
        function maps the events when the BIDS dataset is read, so both agree on the trials.

    Returns
    -------
    pandas.DataFrame
        The table with numeric ``onset``/``duration`` and ``attrs["source"]`` naming its origin.

    Raises
    ------
    DataError
        Missing columns, non-numeric or missing onsets/durations, negative values, no trial; with
        ``spec``: the stimulus column absent, a value absent from the stimulus map.
    """
    df, name = read_table(events, "events table")
    if spec is not None and not spec.is_default:
        df = map_events(df, spec, name)
    missing = [c for c in ("onset", "duration", "stim_file") if c not in df.columns]
    if missing:
        raise DataError(
            f"{name}: events table lacks column(s) {missing}; "
            "it needs onset, duration and stim_file (path of the image shown)"
        )
    for col in ("onset", "duration"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if bad.size:
            raise DataError(
                f"{name}: {col} missing or not a number in row(s) {(bad + 1).tolist()[:5]}; "
                "give every event a numeric onset and duration in seconds"
            )
        df[col] = values.astype(float)
    if (df["onset"] < 0).any():
        rows = (np.flatnonzero(df["onset"].to_numpy() < 0) + 1).tolist()[:5]
        raise DataError(
            f"{name}: negative onset in row(s) {rows}; onsets are seconds from the first volume"
        )
    if (df["duration"] < 0).any():
        rows = (np.flatnonzero(df["duration"].to_numpy() < 0) + 1).tolist()[:5]
        raise DataError(f"{name}: negative duration in row(s) {rows}; fix the events table")
    if not is_trial(df["stim_file"]).any():
        raise DataError(f"{name}: no event has a stim_file; nothing to estimate betas for")
    df.attrs["source"] = name
    return df.reset_index(drop=True)
