"""Confound regressors picked from an fMRIPrep confounds table (named presets or columns)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError
from .inputs import PathOrFrame, read_table

_MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]

#: Named confound selections (fMRIPrep column names).
CONFOUND_PRESETS: dict[str, list[str]] = {
    "none": [],
    "motion": list(_MOTION),
    "motion+derivatives": _MOTION + [f"{c}_derivative1" for c in _MOTION],
    "24p": _MOTION
    + [f"{c}_derivative1" for c in _MOTION]
    + [f"{c}_power2" for c in _MOTION]
    + [f"{c}_derivative1_power2" for c in _MOTION],
}


def select_confounds(
    confounds_df: PathOrFrame | None,
    confounds: str | Sequence[str] | None = "motion+derivatives",
    *,
    n_volumes: int | None = None,
) -> pd.DataFrame:
    """Pick the confound regressors of a run (fMRIPrep ``*_desc-confounds_timeseries.tsv``).

    Parameters
    ----------
    confounds_df : path, pandas.DataFrame or None
        The confounds table, one row per volume.
    confounds : str, list of str or None
        A preset of :data:`CONFOUND_PRESETS` (``"motion+derivatives"``: the 6 motion parameters and
        their first derivatives; ``"motion"``; ``"24p"``; ``"none"``) or a list of column names.
        ``None`` means no confounds. A ``<name>_derivative1`` column absent from the table is computed
        as the backward difference of ``<name>`` (first row 0), as fMRIPrep does.
    n_volumes : int, optional
        Expected number of rows.

    Returns
    -------
    pandas.DataFrame
        The selected columns, float64, NaNs of the first row (derivatives) set to 0.

    Raises
    ------
    UsageError
        Unknown preset, or a selection given without a table.
    DataError
        Missing columns, wrong row count, NaNs past the first row, non-numeric values.

    Examples
    --------
    >>> import pandas as pd
    >>> tab = pd.DataFrame({"trans_x": [0.0, 0.5, 0.25], "csf": [1.0, 2.0, 3.0]})
    >>> select_confounds(tab, ["trans_x", "trans_x_derivative1"])["trans_x_derivative1"].tolist()
    [0.0, 0.5, -0.25]
    """
    if confounds is None:
        columns: list[str] = []
    elif isinstance(confounds, str):
        if confounds not in CONFOUND_PRESETS:
            raise UsageError(
                f"confounds={confounds!r}: unknown preset; use one of {sorted(CONFOUND_PRESETS)} "
                "or a list of column names"
            )
        columns = list(CONFOUND_PRESETS[confounds])
    else:
        columns = [str(c) for c in confounds]
    if not columns:
        return pd.DataFrame(index=pd.RangeIndex(n_volumes or 0))
    if confounds_df is None:
        raise UsageError(
            f"confounds={confounds!r} asks for {len(columns)} confound column(s) but no confounds "
            "table was given; pass the run's confounds TSV or confounds=None"
        )
    table, name = read_table(confounds_df, "confounds table")
    out = {}
    for col in columns:
        if col in table.columns:
            coerced = pd.to_numeric(table[col], errors="coerce")
            if (coerced.isna() & table[col].notna()).any():
                raise DataError(f"{name}: column {col} holds non-numeric values; fix the table")
            values = coerced.to_numpy(float)
        elif col.endswith("_derivative1") and col[: -len("_derivative1")] in table.columns:
            base = pd.to_numeric(table[col[: -len("_derivative1")]], errors="coerce").to_numpy(
                float
            )
            values = np.concatenate([[np.nan], np.diff(base)])
        else:
            raise DataError(
                f"{name}: confound column {col!r} not found; "
                "choose columns present in the table (confounds=[...]) or another preset"
            )
        if np.isnan(values[0]):
            values = values.copy()
            values[0] = 0.0  # fMRIPrep leaves derivatives undefined at the first volume
        if np.isnan(values).any():
            rows = (np.flatnonzero(np.isnan(values)) + 1).tolist()[:5]
            raise DataError(
                f"{name}: confound {col} has missing values in row(s) {rows}; "
                "fill them or drop the column from the selection"
            )
        out[col] = values
    selected = pd.DataFrame(out)
    if n_volumes is not None and len(selected) != n_volumes:
        raise DataError(
            f"{name}: {len(selected)} rows but the BOLD run has {n_volumes} volumes; "
            "use the confounds file of the same run"
        )
    return selected
