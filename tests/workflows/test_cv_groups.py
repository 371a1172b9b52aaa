"""The decoders' alpha choice holds out whole runs (or sessions) where the runs are known.

FitDecoder reads the training rows' runs from SplitTrials' ``train_groups_file``; its folds are
checked against scikit-learn's splitters on the same run labels, ``cv_groups="none"`` against the
old contiguous folds, and trials sorted by class show why run folds are the default.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from nipype_brainrecon.errors import DataError
from nipype_brainrecon.interfaces.decoding import FitDecoder, SplitTrials
from nipype_brainrecon.ridge import fit_ridge_cv, load_decoder
from nipype_brainrecon.ridge.cv import group_folds
from nipype_brainrecon.workflows.decoding import init_decoding_wf


def _class_sorted(n_runs=6, n_classes=4, per_run=5, p=40, seed=0):
    """Trials sorted by class (as an events table sorted by condition); class means dominate
    the targets. Each trial shows its own stimulus."""
    rng = np.random.default_rng(seed)
    classes = np.tile(np.repeat(np.arange(n_classes), per_run), n_runs)
    runs = np.repeat(np.arange(1, n_runs + 1), n_classes * per_run)
    order = np.argsort(classes, kind="stable")
    classes, runs = classes[order], runs[order]
    patterns = 3.0 * rng.standard_normal((n_classes, p))
    values = 5.0 * rng.standard_normal((n_classes, 3))
    X = (patterns[classes] + rng.standard_normal((classes.size, p))).astype(np.float32)
    Y = (values[classes] + 0.3 * rng.standard_normal((classes.size, 3))).astype(np.float32)
    return X, Y, runs, classes


def _write_training(tmp_path, X, Y, groups: dict | None):
    """FitDecoder's input files: training rows, their stimuli (and groups), the features."""
    ids = [f"s{i:03d}" for i in range(len(X))]
    np.save(tmp_path / "train.npy", X)
    pd.DataFrame({"stim_id": ids}).to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    np.save(tmp_path / "features.npy", Y)
    pd.DataFrame({"stim_id": ids}).to_csv(tmp_path / "stimuli.tsv", sep="\t", index=False)
    files = {
        "train_data_file": str(tmp_path / "train.npy"),
        "train_stimuli_file": str(tmp_path / "train.tsv"),
        "features_file": str(tmp_path / "features.npy"),
        "features_stimuli_file": str(tmp_path / "stimuli.tsv"),
    }
    if groups is not None:
        pd.DataFrame(groups).to_csv(tmp_path / "groups.tsv", sep="\t", index=False)
        files["train_groups_file"] = str(tmp_path / "groups.tsv")
    return files


def _fit(tmp_path, files, name, **settings):
    work = tmp_path / name
    work.mkdir()
    node = FitDecoder(target_label="z", roi_label="early", backend="numpy", **files, **settings)
    result = node.run(cwd=str(work))
    sidecar = json.loads(open(result.outputs.sidecar_file).read())
    return load_decoder(result.outputs.decoder_file), result.outputs, sidecar


def _same(a, b):
    return all(
        np.array_equal(getattr(a, name), getattr(b, name))
        for name in ("coef", "intercept", "alphas", "cv_scores")
    )


@pytest.mark.parametrize(("n_runs", "splitter"), [(6, GroupKFold(5)), (4, LeaveOneGroupOut())])
def test_folds_hold_whole_runs(tmp_path, n_runs, splitter):
    X, Y, runs, _ = _class_sorted(n_runs=n_runs)
    files = _write_training(tmp_path, X, Y, {"source": 1, "run": runs})
    decoder, outputs, sidecar = _fit(tmp_path, files, "fit")
    n_folds = min(5, n_runs)
    assert outputs.cv_folds == f"leave-runs-out: {n_folds} folds of {n_runs} runs"
    assert sidecar["Metadata"]["CVFolds"] == outputs.cv_folds and sidecar["NFolds"] == n_folds
    # The reference: scikit-learn's splitter on the run labels, through the same solver.
    reference = fit_ridge_cv(X, Y, folds=list(splitter.split(X, groups=runs)), backend="numpy")
    assert _same(decoder, reference)
    folds = group_folds(runs, 5)
    held_out = [set(runs[test]) for _, test in folds]
    assert sorted(r for s in held_out for r in s) == list(range(1, n_runs + 1))  # once each
    assert all(set(runs[train]).isdisjoint(runs[test]) for train, test in folds)


def test_none_and_unknown_runs_reproduce_contiguous_folds_bit_for_bit(tmp_path):
    X, Y, runs, _ = _class_sorted()
    old = fit_ridge_cv(X, Y, n_folds=5, backend="numpy")  # the call FitDecoder made before
    files = _write_training(tmp_path, X, Y, {"source": 1, "run": runs})
    none, outputs, _ = _fit(tmp_path, files, "none", cv_groups="none")
    assert _same(none, old) and outputs.cv_folds == "contiguous: 5 folds"
    one_run = _write_training(tmp_path, X, Y, {"source": 1, "run": np.ones_like(runs)})
    single, outputs, _ = _fit(tmp_path, one_run, "single")
    assert _same(single, old)
    assert outputs.cv_folds == "contiguous: 5 folds (fewer than 2 runs known)"
    files.pop("train_groups_file")
    unlabelled, outputs, _ = _fit(tmp_path, files, "unlabelled")
    assert _same(unlabelled, old) and "fewer than 2 runs" in outputs.cv_folds


def test_class_sorted_trials_degenerate_under_contiguous_folds_only(tmp_path):
    """Contiguous folds hold out whole classes (never seen in training): their CV error is
    worse than predicting the mean; run folds hold every class and choose well."""
    X, Y, runs, classes = _class_sorted()
    files = _write_training(tmp_path, X, Y, {"source": 1, "run": runs})
    contiguous, _, _ = _fit(tmp_path, files, "contiguous", cv_groups="none", n_folds=4)
    by_run, _, _ = _fit(tmp_path, files, "by_run", n_folds=4)
    variance = Y.var(0).mean()
    mse_contiguous, mse_by_run = -contiguous.cv_scores.mean(), -by_run.cv_scores.mean()
    print(
        f"variance {variance:.2f}, CV MSE contiguous {mse_contiguous:.2f}, by run {mse_by_run:.2f}"
    )
    assert mse_contiguous > variance
    assert mse_by_run < 0.05 * variance
    assert by_run.alphas.max() < contiguous.alphas.max()  # contiguous folds push alpha up


def test_sessions_and_files_as_groups(tmp_path):
    X, Y, runs, _ = _class_sorted(n_runs=6)
    sessions = (runs + 1) // 2  # 3 sessions of 2 runs, runs numbered 1, 2 in each
    files = _write_training(tmp_path, X, Y, {"source": 1, "session": sessions, "run": 2 - runs % 2})
    by_session, outputs, _ = _fit(tmp_path, files, "session", cv_groups="session")
    assert outputs.cv_folds == "leave-sessions-out: 3 folds of 3 sessions"
    reference = fit_ridge_cv(X, Y, folds=list(LeaveOneGroupOut().split(X, groups=sessions)))
    assert _same(by_session, reference)
    # Run labels repeat across sessions: a run is its (session, run) pair, 6 of them.
    _, outputs, _ = _fit(tmp_path, files, "run")
    assert outputs.cv_folds == "leave-runs-out: 5 folds of 6 runs"


def test_split_trials_labels_training_rows_by_file_and_run(tmp_path):
    """Three per-run tables without a run column: the file is the run; test trials drop out."""
    tables = []
    for r in range(3):
        table = pd.DataFrame({"stim_file": [f"r{r}_{i}.png" for i in range(4)] + ["t.png"]})
        table.to_csv(tmp_path / f"trials{r}.tsv", sep="\t", index=False)
        tables.append(table)
    pd.concat(tables).to_csv(tmp_path / "all.tsv", sep="\t", index=False)
    np.save(tmp_path / "data.npy", np.arange(30, dtype=np.float32).reshape(15, 2))
    split = SplitTrials(
        data_file=str(tmp_path / "data.npy"),
        trials_file=str(tmp_path / "all.tsv"),
        source_trials_files=[str(tmp_path / f"trials{r}.tsv") for r in range(3)],
    ).run(cwd=str(tmp_path))
    groups = pd.read_csv(split.outputs.train_groups_file, sep="\t")
    assert groups["source"].tolist() == [1] * 4 + [2] * 4 + [3] * 4
    assert list(groups.columns) == ["source"]
    wrong = SplitTrials(
        data_file=str(tmp_path / "data.npy"),
        trials_file=str(tmp_path / "all.tsv"),
        source_trials_files=[str(tmp_path / "trials0.tsv"), str(tmp_path / "trials1.tsv")],
    )
    with pytest.raises(DataError, match=r"all\.tsv: 15 trials but its source tables hold 10"):
        wrong.run(cwd=str(tmp_path))


def test_groups_file_of_other_rows_refused(tmp_path):
    X, Y, runs, _ = _class_sorted()
    files = _write_training(tmp_path, X, Y, {"source": 1, "run": runs[:-1]})
    with pytest.raises(DataError, match=r"groups\.tsv: 119 rows for 120 training trials"):
        _fit(tmp_path, files, "bad")


def test_workflow_passes_runs_to_the_decoders():
    wf = init_decoding_wf(precomputed_betas=True, cv_groups="session", targets=("z",))
    assert wf.get_node("fit_z").inputs.cv_groups == "session"
    edges = {(u.name, v.name): data["connect"] for u, v, data in wf._graph.edges(data=True)}
    assert ("train_groups_file", "train_groups_file") in edges[("split_z", "fit_z")]
    assert ("trials_files", "source_trials_files") in edges[("betas_out", "split_z")]
    assert init_decoding_wf(name="d").get_node("fit_c").inputs.cv_groups == "run"
