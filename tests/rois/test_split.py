"""Train/test split: single training trials, test = mean over repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nipype_brainrecon.errors import DataError, UsageError
from nipype_brainrecon.split import choose_test_stimuli, split_trials


@pytest.fixture
def trials():
    stim = ["a", "b", "t1", "c", "t2", "t1", "t2", "t1"]
    return pd.DataFrame(
        {
            "stim_id": stim,
            "stim_file": [f"{s}.png" for s in stim],
            "split": ["train", "train", "test", "train", "test", "test", "test", "test"],
        }
    )


def test_default_rule_takes_repeated_stimuli(trials):
    data = np.arange(16, dtype=np.float64).reshape(8, 2)
    split = split_trials(trials, data)
    assert split.rule == "repeats"
    assert split.test_stimuli == ["t1", "t2"]
    assert split.train_stimuli == ["a", "b", "c"]
    np.testing.assert_array_equal(split.train_data, data[[0, 1, 3]])
    np.testing.assert_allclose(split.test_data[0], data[[2, 5, 7]].mean(axis=0))
    np.testing.assert_allclose(split.test_data[1], data[[4, 6]].mean(axis=0))
    assert split.test_repeats.tolist() == [3, 2]
    assert split.summary()["NumberOfTestStimuli"] == 2
    assert split.stim_files["t1"] == "t1.png"


def test_column_and_list_rules(trials, tmp_path):
    ids, rule = choose_test_stimuli(trials, test="column:split")
    assert ids == {"t1", "t2"} and rule == "column:split"
    listing = tmp_path / "test.txt"
    listing.write_text("# test images\nt2.png\n")
    ids, rule = choose_test_stimuli(trials, test=str(listing))
    assert ids == {"t2"} and rule == "list:test.txt"
    split = split_trials(trials, np.zeros((8, 1)), test=["t2"])
    assert split.test_stimuli == ["t2"] and len(split.train_stimuli) == 6


def test_split_errors(trials, tmp_path):
    once = pd.DataFrame({"stim_id": ["a", "b", "c"]})
    with pytest.raises(DataError, match="no stimulus is shown more than once"):
        split_trials(once, np.zeros((3, 2)))
    with pytest.raises(DataError, match="never shown"):
        split_trials(trials, np.zeros((8, 2)), test=["zz"])
    with pytest.raises(DataError, match="8 trials in the table but 7 rows"):
        split_trials(trials, np.zeros((7, 2)))
    with pytest.raises(DataError, match="no column 'fold'"):
        split_trials(trials, np.zeros((8, 2)), test="column:fold")
    with pytest.raises(UsageError, match="use 'repeats'"):
        split_trials(trials, np.zeros((8, 2)), test="everything")
    all_rep = pd.DataFrame({"stim_id": ["a", "a", "b", "b"]})
    with pytest.raises(DataError, match="no training trials"):
        split_trials(all_rep, np.zeros((4, 1)))
