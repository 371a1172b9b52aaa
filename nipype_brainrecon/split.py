"""Split trials into training (single trials) and test (mean over repeats) sets, as in the paper."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, MissingInputError, UsageError


@dataclass
class TrainTestSplit:
    """Brain data arranged for decoding.

    Attributes
    ----------
    train_data : ndarray (n_train_trials, n_voxels)
        Single trials of the training stimuli.
    train_stimuli : list of str
        Stimulus id of each training trial.
    test_data : ndarray (n_test_stimuli, n_voxels)
        Mean over each test stimulus's repeats.
    test_stimuli : list of str
        Test stimulus ids, sorted.
    test_repeats : ndarray of int
        How many trials were averaged for each test stimulus.
    rule : str
        How the test set was chosen (``"repeats"``, ``"column:<name>"`` or ``"list:<file>"``).
    """

    train_data: np.ndarray
    train_stimuli: list[str]
    test_data: np.ndarray
    test_stimuli: list[str]
    test_repeats: np.ndarray
    rule: str
    stim_files: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready description of the split (recorded in sidecars and reports)."""
        return {
            "TestSetRule": self.rule,
            "NumberOfTrainingTrials": len(self.train_stimuli),
            "NumberOfTrainingStimuli": len(set(self.train_stimuli)),
            "NumberOfTestStimuli": len(self.test_stimuli),
            "TestRepeatsMin": int(self.test_repeats.min()) if len(self.test_repeats) else 0,
            "TestRepeatsMax": int(self.test_repeats.max()) if len(self.test_repeats) else 0,
        }


def read_stimulus_list(path: str | os.PathLike) -> list[str]:
    """Read a test-stimulus list: one stimulus id or file name per line (``#`` comments)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: test-stimulus list not found")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            items.append(Path(line).stem if "." in Path(line).name else line)
    if not items:
        raise DataError(f"{path}: the test-stimulus list is empty")
    return items


def choose_test_stimuli(
    trials: pd.DataFrame,
    *,
    test: str | Sequence[str] | os.PathLike = "repeats",
    source: str = "trials table",
) -> tuple[set[str], str]:
    """Decide which stimuli form the test set.

    Parameters
    ----------
    trials : DataFrame
        One row per trial with at least a ``stim_id`` column.
    test : str, path or sequence of str
        ``"repeats"`` (default: the stimuli shown more than once), ``"column:<name>"`` (trials
        whose column ``<name>`` equals ``"test"``), a path to a list file, or the ids themselves.
    source : str
        Name of the table, for error messages.

    Returns
    -------
    set of str, str
        The test stimulus ids and the rule, as recorded in the outputs.
    """
    if "stim_id" not in trials.columns:
        raise DataError(f"{source}: no 'stim_id' column")
    shown = set(trials["stim_id"].astype(str))
    if isinstance(test, str) and test == "repeats":
        counts = trials["stim_id"].astype(str).value_counts()
        ids = set(counts.index[counts > 1])
        if not ids:
            raise DataError(
                f"{source}: no stimulus is shown more than once, so the default test set is "
                "empty; give a test list or a column marking test trials"
            )
        if ids == shown:
            raise DataError(
                f"{source}: every stimulus is repeated, so no training trials remain; "
                "give a test list or a column marking test trials"
            )
        return ids, "repeats"
    if isinstance(test, str) and test.startswith("column:"):
        column = test.split(":", 1)[1]
        if column not in trials.columns:
            raise DataError(f"{source}: no column {column!r} to mark test trials")
        values = trials[column].astype(str).str.lower()
        ids = set(trials.loc[values == "test", "stim_id"].astype(str))
        if not ids:
            raise DataError(f"{source}: column {column!r} marks no trial as 'test'")
        return ids, test
    if isinstance(test, os.PathLike) or (
        isinstance(test, str) and (Path(test).suffix in {".txt", ".tsv"} or Path(test).exists())
    ):
        ids = set(read_stimulus_list(test))
        rule = f"list:{Path(test).name}"
    elif isinstance(test, str):
        raise UsageError(f"test set {test!r}: use 'repeats', 'column:<name>' or a list file")
    else:
        ids = {str(x) for x in test}
        rule = "list"
    never = sorted(ids - shown)
    if never:
        raise DataError(
            f"{source}: test stimulus/stimuli {never[:5]} never shown in any run; check the test list"
        )
    return ids, rule


def split_trials(
    trials: pd.DataFrame,
    data: np.ndarray,
    *,
    test: str | Sequence[str] | os.PathLike = "repeats",
    source: str = "trials table",
) -> TrainTestSplit:
    """Training set = single trials of training stimuli; test set = mean over repeats.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> trials = pd.DataFrame({"stim_id": ["a", "b", "t", "t"]})
    >>> s = split_trials(trials, np.array([[1.0], [2.0], [3.0], [5.0]]))
    >>> s.train_stimuli, s.test_stimuli, s.test_data.ravel().tolist()
    (['a', 'b'], ['t'], [4.0])
    """
    if len(trials) != data.shape[0]:
        raise DataError(
            f"{source}: {len(trials)} trials in the table but {data.shape[0]} rows of brain data"
        )
    test_ids, rule = choose_test_stimuli(trials, test=test, source=source)
    stim = trials["stim_id"].astype(str).to_numpy()
    is_test = np.isin(stim, sorted(test_ids))
    if not (~is_test).any():
        raise DataError(f"{source}: no training trial is left after taking the test set out")
    order = sorted(test_ids)
    test_rows = [np.flatnonzero(stim == sid) for sid in order]
    test_data = np.stack([data[rows].mean(axis=0) for rows in test_rows]).astype(data.dtype)
    files = {}
    if "stim_file" in trials.columns:
        files = dict(zip(stim, trials["stim_file"].astype(str), strict=True))
    return TrainTestSplit(
        train_data=np.ascontiguousarray(data[~is_test]),
        train_stimuli=stim[~is_test].tolist(),
        test_data=test_data,
        test_stimuli=order,
        test_repeats=np.array([len(r) for r in test_rows]),
        rule=rule,
        stim_files=files,
    )
