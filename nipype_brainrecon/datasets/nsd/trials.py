"""NSD's experimental design and behaviour turned into one trials table per session.

* ``nsd_expdesign.mat``: ``masterordering`` (the 10k-ID shown at each trial, 1-based, the same
  sequence for every subject), ``subjectim`` (subjects x 10k-IDs: each subject's 73k-IDs, 1-based),
  ``sharedix`` (the 73k-IDs of the shared 1,000 images, 1-based).
* ``responses.tsv``: one row per trial the subject performed, sessions and runs concatenated, in
  the order of the volumes of the betas files (``SESSION``, ``RUN``, ``TRIAL``, ``73KID`` ...).
* ``nsd_stim_info_merged.csv``: one row per 73k image (``nsdId`` 0-based, ``cocoId``,
  ``cocoSplit``, ``shared1000`` ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError

#: Columns of responses.tsv the conversion reads.
RESPONSES_COLUMNS = ("SESSION", "RUN", "TRIAL", "73KID")
#: Columns of nsd_stim_info_merged.csv the conversion reads.
STIM_INFO_COLUMNS = ("nsdId", "cocoId", "cocoSplit", "shared1000")


def stim_file(nsd_id: int) -> str:
    """The exported image of a 73k-ID (1-based), relative to ``stimuli/``.

    >>> stim_file(1), stim_file(73000)
    ('nsd00001.png', 'nsd73000.png')
    """
    return f"nsd{int(nsd_id):05d}.png"


def read_expdesign(path: Path) -> dict[str, np.ndarray]:
    """``masterordering`` (n_trials,), ``subjectim`` (n_subjects, n_10k) and ``sharedix``
    (n_shared,) of ``nsd_expdesign.mat``, as int64 and still 1-based."""
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for damaged files
        raise DataError(
            f"{path}: cannot be read as a MATLAB file ({exc}); fetch a fresh copy"
        ) from exc
    out = {}
    for name in ("masterordering", "subjectim", "sharedix"):
        if name not in contents:
            raise DataError(f"{path}: variable {name!r} not found; is this nsd_expdesign.mat?")
        values = np.asarray(contents[name], dtype=np.float64)
        if (
            values.size == 0
            or not np.all(np.isfinite(values))
            or np.any(values != np.round(values))
        ):
            raise DataError(f"{path}: {name} must hold whole numbers (1-based indices)")
        out[name] = values.astype(np.int64)
    out["masterordering"] = out["masterordering"].ravel()
    out["sharedix"] = out["sharedix"].ravel()
    if out["subjectim"].ndim != 2:
        raise DataError(f"{path}: subjectim has shape {out['subjectim'].shape}, expected 2-D")
    n_10k = out["subjectim"].shape[1]
    if out["masterordering"].min() < 1 or out["masterordering"].max() > n_10k:
        raise DataError(f"{path}: masterordering holds 10k-IDs outside 1..{n_10k}")
    return out


def read_responses(path: Path) -> pd.DataFrame:
    """The subject's ``responses.tsv`` with its integer columns checked (rows kept in order)."""
    try:
        table = pd.read_csv(path, sep="\t")
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as a tab-separated table ({exc})") from exc
    missing = [c for c in RESPONSES_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: column(s) {', '.join(missing)} missing; is this responses.tsv?")
    for column in RESPONSES_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any() or (values != values.round()).any() or (values < 1).any():
            raise DataError(f"{path}: column {column} must hold positive whole numbers")
        table[column] = values.astype(np.int64)
    return table


def read_stim_info(path: Path) -> pd.DataFrame:
    """``nsd_stim_info_merged.csv`` indexed by the 73k-ID (1-based)."""
    try:
        table = pd.read_csv(path, index_col=0)
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as a CSV table ({exc})") from exc
    missing = [c for c in STIM_INFO_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: column(s) {', '.join(missing)} missing; is this the merged file?")
    table.index = pd.Index(table["nsdId"].astype(np.int64) + 1, name="73KID")
    table["shared1000"] = table["shared1000"].map(_as_bool)
    return table


def _as_bool(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def build_trials(
    design: dict[str, np.ndarray],
    responses: pd.DataFrame,
    stim_info: pd.DataFrame,
    subject: int,
    names: dict[str, Path],
) -> pd.DataFrame:
    """Every trial the subject performed, checked against the design, with its repetition.

    The ``k``-th row of ``responses`` (all sessions, in order) is the ``k``-th trial of the design:
    its 73k-ID must be ``subjectim[subject-1, masterordering[k]-1]``. ``repetition`` counts the
    earlier showings of the image to this subject (0 for the first), over all sessions, so it is
    the same whichever sessions are converted. ``names`` maps ``expdesign``, ``responses`` and
    ``stim_info`` to their files, for messages.
    """
    order, subjectim = design["masterordering"], design["subjectim"]
    n = len(responses)
    if subject > subjectim.shape[0]:
        raise DataError(f"{names['expdesign']}: subjectim has no row for subject {subject}")
    if n > len(order):
        raise DataError(
            f"{names['responses']}: {n} trials but masterordering of {names['expdesign']} "
            f"lists {len(order)}; are they from the same release?"
        )
    expected = subjectim[subject - 1, order[:n] - 1]
    seen = responses["73KID"].to_numpy()
    bad = np.flatnonzero(seen != expected)
    if bad.size:
        k = int(bad[0])
        raise DataError(
            f"{names['responses']}: trial {k + 1} (SESSION {responses['SESSION'].iloc[k]}) shows "
            f"73KID {seen[k]} but {names['expdesign']} says {expected[k]}; "
            "the files disagree (different releases or subjects?)"
        )
    shared = np.isin(seen, design["sharedix"])
    _check_stim_info(stim_info, seen, shared, names["stim_info"])
    trials = pd.DataFrame(
        {
            "session": responses["SESSION"].to_numpy(),
            "run": responses["RUN"].to_numpy(),
            "trial": responses["TRIAL"].to_numpy(),
            "stim_id": seen,
            "stim_file": [stim_file(i) for i in seen],
            "coco_id": stim_info.loc[seen, "cocoId"].astype(np.int64).to_numpy(),
            "repetition": pd.Series(seen).groupby(seen).cumcount().to_numpy(),
            "shared1000": shared,
            "split": np.where(shared, "test", "train"),
            "trial_type": np.where(shared, "shared", "unique"),
        }
    )
    return trials


def _check_stim_info(
    stim_info: pd.DataFrame, seen: np.ndarray, shared: np.ndarray, name: Path
) -> None:
    """Every seen image has a row, and its ``shared1000`` agrees with ``sharedix``."""
    absent = np.setdiff1d(np.unique(seen), stim_info.index.to_numpy())
    if absent.size:
        raise DataError(f"{name}: no row for 73k-ID(s) {absent[:5].tolist()} (nsdId = 73k-ID - 1)")
    flags = stim_info.loc[seen, "shared1000"].to_numpy(dtype=bool)
    if np.any(flags != shared):
        k = int(np.flatnonzero(flags != shared)[0])
        raise DataError(
            f"{name}: shared1000 of 73k-ID {seen[k]} is {flags[k]} but sharedix of "
            "nsd_expdesign.mat says otherwise; are they from the same release?"
        )


def session_trials(trials: pd.DataFrame, session: int) -> pd.DataFrame:
    """One session's rows, in volume order, with a fresh index."""
    return trials[trials["session"] == session].reset_index(drop=True)
