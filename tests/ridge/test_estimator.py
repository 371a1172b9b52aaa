"""RidgeDecoderCV, the scikit-learn regressor: equality with himalaya's RidgeCV under any
splitter, pipelines and model selection, scikit-learn's estimator checks, group folds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    LeaveOneGroupOut,
    ShuffleSplit,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from nipype_brainrecon.errors import UsageError
from nipype_brainrecon.ridge import RidgeDecoderCV, fit_ridge_cv, resolve_alphas
from nipype_brainrecon.ridge.cv import partition_folds

himalaya = pytest.importorskip("himalaya")


def make_data(n=120, p=30, t=12, *, n_test=20, seed=0):
    """Voxels with arbitrary offsets and scales; targets whose signal-to-noise spans decades
    (so that targets choose different alphas) with an offset."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n + n_test, p))
    W = rng.standard_normal((p, t)) / np.sqrt(p)
    Y = (Z @ W) * np.logspace(-2, 1.5, t) + rng.standard_normal((n + n_test, t)) + 3.0
    X = Z * rng.uniform(0.5, 20, p) + rng.uniform(-50, 50, p)
    return X[:n], Y[:n], X[n:], Y[n:]


def himalaya_ridge_cv(alphas, cv, fit_intercept=True):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    set_backend("numpy", on_error="raise")
    return RidgeCV(alphas=resolve_alphas(alphas), cv=cv, fit_intercept=fit_intercept)


def himalaya_fit(X, Y, X_test, splits, fit_intercept):
    """StandardScaler on the training voxels, then himalaya's RidgeCV on the given splits."""
    scaler = StandardScaler().fit(X)
    model = himalaya_ridge_cv("default", splits, fit_intercept)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(scaler.transform(X), Y)
    return model, np.asarray(model.predict(scaler.transform(X_test)))


RUNS = np.repeat(np.arange(6), 20)[np.random.default_rng(1).permutation(120)]
SPLITTERS = {
    "kfold": KFold(5),
    "group_kfold": GroupKFold(4),
    "leave_one_run_out": LeaveOneGroupOut(),
    "shuffle_split": ShuffleSplit(5, test_size=0.2, random_state=0),  # not a partition
}


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("name", list(SPLITTERS))
def test_equals_himalaya_under_any_splitter(name, fit_intercept):
    """Same alpha for every target, predictions within 1e-4 (observed ~3e-15 relative), CV
    scores equal but for himalaya's 1e-10 log(alpha) tie-break slope."""
    X, Y, X_test, _ = make_data()
    splitter = SPLITTERS[name]
    groups = RUNS if "run" in name or "group" in name else None
    splits = list(splitter.split(X, Y, groups))
    ref, ref_pred = himalaya_fit(X, Y, X_test, splits, fit_intercept)
    model = RidgeDecoderCV(cv=splitter, fit_intercept=fit_intercept).fit(X, Y, groups=groups)
    np.testing.assert_allclose(model.alphas_, ref.best_alphas_, rtol=1e-12)
    assert len(set(model.alphas_)) >= 3  # the targets choose different alphas
    pred = model.predict(X_test)
    assert pred.shape == ref_pred.shape
    assert np.abs(pred - ref_pred).max() <= 1e-4 * np.abs(ref_pred).max()
    np.testing.assert_allclose(model.cv_scores_, ref.cv_scores_, rtol=1e-6, atol=1e-7)
    # coef_ and intercept_ are on the raw features.
    np.testing.assert_allclose(X_test @ model.coef_.T + model.intercept_, pred, rtol=1e-9)


def test_integer_cv_and_kfold_folds_are_the_solver_bit_for_bit():
    X, Y, X_test, _ = make_data(101, 40, 7)
    ref = fit_ridge_cv(X, Y, n_folds=5, dtype=np.float64)
    by_int = RidgeDecoderCV(cv=5).fit(X, Y)
    by_kfold = RidgeDecoderCV(cv=KFold(5)).fit(X, Y)
    by_folds = fit_ridge_cv(X, Y, dtype=np.float64, folds=list(KFold(5).split(X)))
    for decoder in (by_int.decoder_, by_kfold.decoder_, by_folds):
        np.testing.assert_array_equal(decoder.coef, ref.coef)
        np.testing.assert_array_equal(decoder.alphas, ref.alphas)
        np.testing.assert_array_equal(decoder.cv_scores, ref.cv_scores)
    # float32 voxels are fitted in float32, as fit_ridge_cv's default.
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(
        RidgeDecoderCV().fit(X32, Y).decoder_.coef, fit_ridge_cv(X32, Y).coef
    )


def test_one_target_keeps_sklearn_shapes():
    X, Y, X_test, Y_test = make_data(t=1)
    flat = RidgeDecoderCV().fit(X, Y[:, 0])
    column = RidgeDecoderCV().fit(X, Y)
    assert flat.predict(X_test).shape == (20,) and flat.coef_.shape == (30,)
    assert column.predict(X_test).shape == (20, 1) and column.coef_.shape == (1, 30)
    assert isinstance(flat.intercept_, float)
    np.testing.assert_allclose(flat.predict(X_test), column.predict(X_test)[:, 0])
    from sklearn.metrics import r2_score

    assert flat.score(X_test, Y_test[:, 0]) == pytest.approx(
        r2_score(Y_test[:, 0], flat.predict(X_test))
    )


def test_folds_that_are_not_a_partition_are_refused_by_the_solver():
    X, Y, _, _ = make_data()
    with pytest.raises(UsageError, match="partition"):
        fit_ridge_cv(X, Y, folds=list(ShuffleSplit(3, random_state=0).split(X)))
    order, slices = partition_folds(list(LeaveOneGroupOut().split(X, Y, RUNS)), 120)
    np.testing.assert_array_equal(RUNS[order], np.sort(RUNS))  # each run made contiguous
    assert [s.stop - s.start for s in slices] == [20] * 6


def test_pipeline_cross_val_score_equals_himalaya():
    X, Y, _, _ = make_data(t=6)
    outer = KFold(4, shuffle=True, random_state=0)
    ours = cross_val_score(make_pipeline(StandardScaler(), RidgeDecoderCV()), X, Y, cv=outer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_model = make_pipeline(StandardScaler(), himalaya_ridge_cv("default", 5))
        # himalaya's score is one R^2 per target; "r2" is scikit-learn's uniform average.
        ref = cross_val_score(ref_model, X, Y, cv=outer, scoring="r2")
    print("outer R^2:", np.round(ours, 4))
    np.testing.assert_allclose(ours, ref, rtol=1e-8)
    assert np.all(ours > 0.1)  # the targets carry signal


def test_groups_reach_the_inner_splitter_through_a_pipeline():
    """cross_val_score(..., params=) hands the runs to fit: every inner fold is then a run."""
    X, Y, _, _ = make_data(t=6)
    pipe = make_pipeline(StandardScaler(), RidgeDecoderCV(cv=LeaveOneGroupOut()))
    outer = GroupKFold(3)
    params = {"ridgedecodercv__groups": RUNS}
    ours = cross_val_score(pipe, X, Y, groups=RUNS, cv=outer, params=params)
    ref = []
    for train, test in outer.split(X, Y, RUNS):
        inner = list(LeaveOneGroupOut().split(X[train], Y[train], RUNS[train]))
        scaler = StandardScaler().fit(X[train])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = himalaya_ridge_cv("default", inner).fit(scaler.transform(X[train]), Y[train])
        ref.append(model.score(scaler.transform(X[test]), Y[test]).mean())
    np.testing.assert_allclose(ours, ref, rtol=1e-8)


def test_grid_search_over_alphas():
    X, Y, _, _ = make_data(t=6)
    candidates = [[1e-2], [1e2], [1e4], "default"]
    search = GridSearchCV(
        make_pipeline(StandardScaler(), RidgeDecoderCV()),
        {"ridgedecodercv__alphas": candidates},
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(X, Y)
    means = [
        cross_val_score(
            make_pipeline(StandardScaler(), RidgeDecoderCV(alphas=alphas)),
            X,
            Y,
            cv=KFold(3, shuffle=True, random_state=0),
        ).mean()
        for alphas in candidates
    ]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], means, rtol=1e-12)
    assert search.best_params_["ridgedecodercv__alphas"] == candidates[int(np.argmax(means))]
    # A single tiny alpha overfits 30 voxels from 80 trials less well than the CV grid.
    assert means[3] > means[0]
    assert search.best_estimator_[-1].alphas_.shape == (6,)


def test_class_sorted_trials_need_group_folds():
    """Trials sorted by class: contiguous folds hold out whole classes (never seen in training),
    so the CV score measures extrapolation to a new class; run folds hold every class."""
    rng = np.random.default_rng(0)
    n_classes, n_runs, per_run, p = 4, 6, 5, 40
    classes = np.tile(np.repeat(np.arange(n_classes), per_run), n_runs)
    runs = np.repeat(np.arange(n_runs), n_classes * per_run)
    order = np.argsort(classes, kind="stable")  # as an events table sorted by condition
    classes, runs = classes[order], runs[order]
    patterns = 3.0 * rng.standard_normal((n_classes, p))
    values = rng.standard_normal((n_classes, 3)) * 5.0  # class means dominate the targets
    X = patterns[classes] + rng.standard_normal((classes.size, p))
    Y = values[classes] + 0.3 * rng.standard_normal((classes.size, 3))

    contiguous = RidgeDecoderCV(cv=n_classes).fit(X, Y)
    by_run = RidgeDecoderCV(cv=LeaveOneGroupOut()).fit(X, Y, groups=runs)
    contiguous_folds = list(KFold(n_classes).split(X))
    run_folds = list(LeaveOneGroupOut().split(X, Y, runs))
    assert all(len(set(classes[test])) == 1 for _, test in contiguous_folds)
    assert all(len(set(classes[test])) == n_classes for _, test in run_folds)
    mse_contiguous, mse_by_run = -contiguous.cv_scores_.mean(), -by_run.cv_scores_.mean()
    print(f"CV MSE: contiguous {mse_contiguous:.3f}, by run {mse_by_run:.3f}")
    variance = Y.var(0).mean()  # the MSE of predicting the mean target (observed 20.6)
    assert mse_by_run < 0.05 * variance  # observed 0.45
    assert mse_contiguous > variance  # worse than the mean: a new class each fold (34.0)
    assert mse_contiguous > 20 * mse_by_run
    assert by_run.score(X, Y) > 0.97  # training R^2 (observed 0.983)


@parametrize_with_checks([RidgeDecoderCV()])
def test_sklearn_estimator_checks(estimator, check):
    """scikit-learn's estimator checks: all pass (none expected to fail)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant test features are dropped
        check(estimator)
