"""Ridge decoders: equality with himalaya's RidgeCV, backends, chunking, ground truth, I/O."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from nipype_brainrecon.errors import DataError, MissingInputError, UsageError
from nipype_brainrecon.evaluation.metrics import per_target_correlation as correlation_per_target
from nipype_brainrecon.ridge import (
    DEFAULT_ALPHAS,
    PAPER_ALPHAS,
    RidgeDecoder,
    SolverOptions,
    alpha_histogram,
    fit_ridge_cv,
    kfold_slices,
    load_decoder,
    resolve_alphas,
    save_decoder,
)

# Shapes: more samples than voxels (primal form), fewer (kernel form), uneven folds.
SHAPES = [(120, 30, 24), (50, 80, 20), (101, 40, 17)]


def make_data(n, p, t, *, seed=0, n_test=15, dtype=np.float64):
    """Voxels with arbitrary offsets/scales; targets whose signal-to-noise spans four decades,
    so that cross-validation picks different alphas for different targets."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-50, 50, p)
    scales = rng.uniform(0.5, 20, p)
    Z = rng.standard_normal((n + n_test, p))
    weights = rng.standard_normal((p, t)) / np.sqrt(p)
    snr = np.logspace(-2, 1.5, t)
    Y = (Z @ weights) * snr + rng.standard_normal((n + n_test, t)) + rng.normal(0, 3, t)
    X = Z * scales + offsets
    X, Y = X.astype(dtype), Y.astype(dtype)
    return X[:n], Y[:n], X[n:], Y[n:]


def himalaya_fit(X, Y, X_test, alphas, fit_intercept):
    """The paper's pipeline: StandardScaler on training voxels, then himalaya RidgeCV(cv=5)."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from sklearn.preprocessing import StandardScaler

    set_backend("numpy", on_error="raise")
    scaler = StandardScaler().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # himalaya warns when n_samples < n_features
        model = RidgeCV(alphas=alphas, cv=5, fit_intercept=fit_intercept)
        model.fit(scaler.transform(X).astype(X.dtype), Y)
    pred = model.predict(scaler.transform(X_test).astype(X.dtype))
    return np.asarray(model.best_alphas_, np.float64), np.asarray(pred), model


def relative_difference(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def grid_index(alphas, grid):
    return np.abs(np.log(alphas)[:, None] - np.log(grid)[None, :]).argmin(1)


# --------------------------------------------------------------------------------------------
# Equality with himalaya
# --------------------------------------------------------------------------------------------


def test_kfold_slices_match_sklearn():
    from sklearn.model_selection import KFold

    for n, k in [(10, 5), (11, 5), (101, 5), (7, 3), (5, 5)]:
        ours = [np.arange(n)[s] for s in kfold_slices(n, k)]
        ref = [test for _, test in KFold(k).split(np.zeros(n))]
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("grid", ["paper", "default"])
@pytest.mark.parametrize("shape", SHAPES)
def test_equals_himalaya_float64(shape, grid, fit_intercept):
    """In float64 the choice is free of rounding ties: same alpha for every target."""
    X, Y, X_test, _ = make_data(*shape)
    alphas = resolve_alphas(grid)
    ref_alphas, ref_pred, ref = himalaya_fit(X, Y, X_test, alphas, fit_intercept)
    dec = fit_ridge_cv(X, Y, alphas=grid, dtype=np.float64, fit_intercept=fit_intercept)
    np.testing.assert_array_equal(grid_index(dec.alphas, alphas), grid_index(ref_alphas, alphas))
    diff = relative_difference(dec.predict(X_test), ref_pred)
    print(f"{shape} {grid} intercept={fit_intercept}: float64 rel. prediction diff {diff:.1e}")
    # With fewer samples than voxels and alpha ~ 1e-6 the fit nearly interpolates: the kernel's
    # condition number (squared by forming X X^T) bounds the agreement.
    assert diff < (1e-9 if shape[0] > shape[1] else 1e-6)
    # himalaya's scores carry its 1e-10 log(alpha) tie-break slope.
    np.testing.assert_allclose(dec.cv_scores, ref.cv_scores_, rtol=1e-8, atol=1e-8)
    if grid == "default":
        assert len(set(dec.alphas)) >= 3  # the data make targets choose different alphas


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("grid", ["paper", "default"])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[2]])
def test_equals_himalaya_float32(shape, grid, fit_intercept):
    """In float32 predictions agree within 1e-4; a different alpha is only allowed where the two
    alphas' CV scores tie within float32 rounding."""
    X, Y, X_test, _ = make_data(*shape, dtype=np.float32)
    alphas = resolve_alphas(grid)
    ref_alphas, ref_pred, _ = himalaya_fit(X, Y, X_test, alphas, fit_intercept)
    dec = fit_ridge_cv(X, Y, alphas=grid, fit_intercept=fit_intercept)
    assert dec.coef.dtype == np.float32
    diff = relative_difference(dec.predict(X_test), ref_pred)
    ours, theirs = grid_index(dec.alphas, alphas), grid_index(ref_alphas, alphas)
    same = float(np.mean(ours == theirs))
    print(
        f"{shape} {grid} intercept={fit_intercept}: float32 same alphas {same:.3f}, diff {diff:.1e}"
    )
    assert diff < 1e-4
    cols = np.flatnonzero(ours != theirs)
    scores = dec.cv_mean_scores
    gap = np.abs(scores[ours[cols], cols] - scores[theirs[cols], cols])
    assert np.all(gap <= 1e-5 * np.abs(scores[ours[cols], cols]))


def test_paper_setting_reproduces_takagi_pipeline():
    """fit_intercept=False + paper grid = StandardScaler + himalaya RidgeCV(alphas) defaults."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    set_backend("numpy", on_error="raise")
    X, Y, X_test, _ = make_data(150, 25, 12)
    pipe = make_pipeline(StandardScaler(), RidgeCV(alphas=list(PAPER_ALPHAS))).fit(X, Y)
    dec = fit_ridge_cv(X, Y, alphas="paper", fit_intercept=False, dtype=np.float64)
    np.testing.assert_allclose(dec.predict(X_test), pipe.predict(X_test), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dec.intercept, 0.0)


# --------------------------------------------------------------------------------------------
# Backends and chunking
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[1]])
def test_torch_cpu_equals_numpy(shape, fit_intercept):
    pytest.importorskip("torch")
    X, Y, X_test, _ = make_data(*shape, dtype=np.float32)
    a = fit_ridge_cv(X, Y, backend="numpy", fit_intercept=fit_intercept)
    b = fit_ridge_cv(X, Y, backend="torch", device="cpu", fit_intercept=fit_intercept)
    np.testing.assert_array_equal(a.alphas, b.alphas)
    assert b.coef.dtype == np.float32 and isinstance(b.coef, np.ndarray)
    assert relative_difference(b.coef, a.coef) < 1e-5
    assert relative_difference(b.predict(X_test), a.predict(X_test)) < 1e-5
    np.testing.assert_allclose(b.cv_scores, a.cv_scores, rtol=1e-5)


def test_auto_backend_runs_on_this_machine():
    X, Y, X_test, _ = make_data(60, 10, 4, dtype=np.float32)
    a = fit_ridge_cv(X, Y, backend="auto")
    b = fit_ridge_cv(X, Y, backend="numpy")
    np.testing.assert_array_equal(a.alphas, b.alphas)
    assert relative_difference(a.predict(X_test), b.predict(X_test)) < 1e-5


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[1]])
def test_chunked_equals_unchunked(shape, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    X, Y, X_test, _ = make_data(*shape, dtype=np.float64)
    whole = fit_ridge_cv(X, Y, dtype=np.float64, backend=backend)
    # 1,000 bytes: too little for all standardised voxels at once, so Xs^T Y is formed from
    # row blocks (the voxel form's other first pass).
    budgets = ({"memory_budget": 20_000}, {"memory_budget": 1_000})
    for kwargs in ({"chunk_size": 7}, {"chunk_size": 1}, *budgets):
        part = fit_ridge_cv(X, Y, dtype=np.float64, backend=backend, **kwargs)
        np.testing.assert_array_equal(part.alphas, whole.alphas)
        np.testing.assert_allclose(part.coef, whole.coef, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(part.intercept, whole.intercept, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[1]])
def test_low_rank_alpha_products_equal_one_product_per_alpha(shape, backend, caplog):
    """The paper's alphas are tiny next to the eigenvalues: in float32 the fold weights have low
    rank and the CV uses a few products instead of one per alpha, with the same scores.
    (float64 weights are never compressed: the factorisation cannot match them to 1e-16.)"""
    if backend == "torch":
        pytest.importorskip("torch")
    dtype = np.float32
    X, Y, X_test, _ = make_data(*shape, dtype=dtype)
    # series_folds=False: the eigen-basis path's factorisation.
    options = SolverOptions(series_folds=False, low_rank_alphas=True)
    with caplog.at_level("DEBUG", logger="nipype_brainrecon.ridge"):
        fast = fit_ridge_cv(
            X, Y, alphas="paper", dtype=dtype, backend=backend, chunk_size=7,
            solver_options=options,
        )  # fmt: skip
    assert "fold weights have rank" in caplog.text
    assert max(fast.fit_info["products_per_fold"]) < 7
    assert fast.fit_info["n_chunks"] == -(-shape[2] // 7)
    options = SolverOptions(series_folds=False, low_rank_alphas=False)
    slow = fit_ridge_cv(X, Y, alphas="paper", dtype=dtype, backend=backend, solver_options=options)
    assert slow.fit_info["products_per_fold"] == [7] * 5
    np.testing.assert_allclose(fast.cv_mean_scores, slow.cv_mean_scores, rtol=1e-5)
    same = fast.alphas == slow.alphas
    assert same.mean() >= 0.9  # others tie within float32 rounding
    assert relative_difference(fast.coef[:, same], slow.coef[:, same]) < 1e-5


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_cholesky_refit_equals_eigen_basis_refit(backend, fit_intercept, monkeypatch):
    """Full-rank voxels: the refit solves one Cholesky system per chosen alpha, and gives the
    weights of the full Gram's eigen-basis."""
    from nipype_brainrecon.ridge import primal_refit

    if backend == "torch":
        pytest.importorskip("torch")
    X, Y, _, _ = make_data(*SHAPES[0], dtype=np.float64)
    kwargs = dict(dtype=np.float64, backend=backend, fit_intercept=fit_intercept, chunk_size=5)
    fast = fit_ridge_cv(X, Y, **kwargs)
    assert fast.fit_info["refit"] == "cholesky"
    assert len(set(fast.alphas)) > 1  # several alphas, each its own factorisation
    monkeypatch.setattr(primal_refit, "full_gram_is_regular", lambda *args: False)
    slow = fit_ridge_cv(X, Y, **kwargs)
    assert slow.fit_info["refit"] == "eigh"
    np.testing.assert_array_equal(fast.alphas, slow.alphas)
    assert relative_difference(fast.coef, slow.coef) < 1e-10
    np.testing.assert_allclose(fast.intercept, slow.intercept, rtol=1e-10, atol=1e-12)
    # More distinct alphas than cholesky_max_alphas: one decomposition beats a factorisation each.
    monkeypatch.undo()
    options = SolverOptions(cholesky_max_alphas=1)
    assert fit_ridge_cv(X, Y, **kwargs, solver_options=options).fit_info["refit"] == "eigh"


def test_rank_deficient_voxels_refit_through_the_eigen_basis():
    """A duplicated voxel makes every Gram singular: the refit keeps the eigen-basis, which
    zeroes the null space, and the two copies share the weight equally."""
    X, Y, _, _ = make_data(*SHAPES[0], dtype=np.float64)
    X = np.concatenate([X, X[:, :1]], axis=1)
    decoder = fit_ridge_cv(X, Y, alphas="paper", dtype=np.float64, backend="numpy")
    assert decoder.fit_info["refit"] == "eigh"
    assert decoder.fit_info["series_folds"] == [False] * 5  # no Cholesky of a singular Gram
    assert np.all(np.isfinite(decoder.coef))
    np.testing.assert_allclose(decoder.coef[0], decoder.coef[-1], rtol=1e-6)


def assert_same_fit(a, b, dtype):
    """Two solver paths agree: CV scores to the dtype's rounding (1e-10 in float64), the same
    alphas (float32: but for rounding ties) and the same coefficients where the alphas agree."""
    tol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(a.cv_mean_scores, b.cv_mean_scores, rtol=tol)
    same = a.alphas == b.alphas
    assert same.mean() >= (1.0 if dtype == np.float64 else 0.9)  # float32: rounding ties
    assert relative_difference(a.coef[:, same], b.coef[:, same]) < tol


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dtype, grid", [(np.float64, [1e-2, 1e1, 1e4]), (np.float32, "paper")])
def test_held_out_operators_give_the_eigen_basis_scores(backend, fit_intercept, dtype, grid):
    """Scoring a fold through its held-out operators H_j = A_f diag(w_j) B^T (voxel-space
    cross-products) equals scoring in the fold's eigen-basis."""
    if backend == "torch":
        pytest.importorskip("torch")
    X, Y, _, _ = make_data(*SHAPES[2], dtype=dtype)
    kwargs = dict(
        alphas=grid, dtype=dtype, backend=backend, fit_intercept=fit_intercept, chunk_size=6
    )
    options = SolverOptions(
        series_folds=False,  # the eigen-basis path's operators
        low_rank_alphas=dtype == np.float32,  # float32: 2-3 factors
        held_out_operators=True,
    )
    via_held = fit_ridge_cv(X, Y, **kwargs, solver_options=options)
    assert sum(via_held.fit_info["held_out_operators"]) >= 3  # those whose operators fit
    options = dataclasses.replace(options, held_out_operators=False)
    via_basis = fit_ridge_cv(X, Y, **kwargs, solver_options=options)
    assert via_basis.fit_info["held_out_operators"] == [False] * 5
    assert_same_fit(via_held, via_basis, dtype)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_series_folds_give_the_eigen_basis_scores(backend, fit_intercept, dtype):
    """Scoring a fold through the Neumann series sum_k (-alpha)^k G^-(k+1) (one Cholesky
    inverse, no eigendecomposition) equals scoring in the fold's eigen-basis, to the compute
    dtype's rounding."""
    if backend == "torch":
        pytest.importorskip("torch")
    X, Y, _, _ = make_data(*SHAPES[0], dtype=dtype)
    kwargs = dict(
        alphas="paper", dtype=dtype, backend=backend, fit_intercept=fit_intercept, chunk_size=6
    )
    # Tiny folds: allow the many terms float64 needs and operators larger than the targets.
    options = SolverOptions(held_out_operators=True, series_memory=64.0, series_folds=True)
    series = fit_ridge_cv(X, Y, **kwargs, solver_options=options)
    assert series.fit_info["series_folds"] == [True] * 5
    terms = series.fit_info["products_per_fold"]
    assert min(terms) >= (10 if dtype == np.float64 else 4)  # lambda_min ~ 10 x alpha_max
    options = dataclasses.replace(options, series_folds=False)
    basis = fit_ridge_cv(X, Y, **kwargs, solver_options=options)
    assert basis.fit_info["series_folds"] == [False] * 5
    assert_same_fit(series, basis, dtype)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_series_floor_that_fails_its_proof_falls_back_to_the_eigen_basis(backend):
    """A floor above the smallest eigenvalue cannot be proven: the fold rebuilds its Gram and
    takes the eigen-basis, with the same result as a fit that never tried the series."""
    if backend == "torch":
        pytest.importorskip("torch")
    X, Y, _, _ = make_data(*SHAPES[0], dtype=np.float32)
    kwargs = dict(alphas="paper", backend=backend, fit_intercept=True, chunk_size=6)
    options = SolverOptions(
        held_out_operators=True,
        series_memory=64.0,
        series_folds=True,
        series_floor_factor=50.0,  # 50x the estimate of lambda_min
    )
    tried = fit_ridge_cv(X, Y, **kwargs, solver_options=options)
    assert tried.fit_info["series_folds"] == [False] * 5
    options = dataclasses.replace(options, series_folds=False)
    never = fit_ridge_cv(X, Y, **kwargs, solver_options=options)
    np.testing.assert_array_equal(tried.cv_mean_scores, never.cv_mean_scores)
    np.testing.assert_array_equal(tried.coef, never.coef)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_series_scores_from_inner_products_equal_the_residuals(dtype):
    """A series fold's scores from column inner products (base + small corrections) equal the
    scores of each alpha's residual computed directly in float64; other mixes are declined."""
    from nipype_brainrecon.ridge.scoring import series_scores_by_rows

    rng = np.random.default_rng(5)
    n_test, tc, mu = 37, 11, 480.0
    grid = 10.0 ** np.arange(-6, 1)
    powers = (-grid[:, None] / mu) ** np.arange(3)[None, :] / mu
    mix = np.concatenate([powers, -np.ones((grid.size, 1))], axis=1).astype(dtype)
    Y = rng.standard_normal((n_test, 3 * tc)).astype(dtype)
    target = Y[:, tc : 2 * tc]  # a strided chunk, as the fit passes it
    parts = np.empty((3, n_test, tc), dtype)
    parts[0] = mu * (0.4 * target + rng.standard_normal((n_test, tc)))  # mu X_f G^-1 b
    parts[1] = 0.9 * mu * parts[0] + rng.standard_normal((n_test, tc))  # shrinking terms
    parts[2] = 0.9 * mu * parts[1]
    out = np.empty((grid.size, tc), dtype)
    # Small row blocks: the sums run over several of them.
    assert series_scores_by_rows(mix, parts, target, out, cache_bytes=8 * 16 * tc)
    resid = np.einsum("aj,jmc->amc", mix[:, :3].astype(np.float64), parts) - target
    expected = -(resid**2).mean(1)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(out, expected, rtol=tol)
    # A mix whose first column differs between alphas (low-rank eigen-basis factors): declined.
    other = mix.copy()
    other[1, 0] *= 2
    untouched = out.copy()
    assert not series_scores_by_rows(other, parts, target, out)
    np.testing.assert_array_equal(out, untouched)


def test_series_terms_bound_the_truncation_error():
    from nipype_brainrecon.ridge.series import series_terms

    tol = np.finfo(np.float32).eps / 2
    assert series_terms(1e-3, tol) == 3  # 1e-9 <= 6e-8 < 1e-6
    assert series_terms(1e-9, tol) == 1
    assert series_terms(0.1, tol) == 8  # 1e-8 <= 6e-8 < 1e-7
    assert series_terms(1.0, tol) is None and series_terms(2.0, tol) is None
    # The bound is the truncation error: (alpha / lambda)^K relative, in every direction.
    lam = np.array([3.0, 10.0, 1e4])
    for alpha in (0.1, 1.0, 2.0):
        k = series_terms(alpha / lam.min(), 1e-12)
        partial = sum((-alpha) ** j / lam ** (j + 1) for j in range(k))
        assert np.all(np.abs(partial * (lam + alpha) - 1.0) <= 1e-12 * (1 + 1e-9))


def test_series_folds_by_default_on_the_paper_setting_equal_himalaya():
    """Benchmark-like setting (float32, paper grid, standardised voxels, more targets than
    operator rows): every fold takes the series with a few terms, and the result is himalaya's."""
    pytest.importorskip("himalaya")
    rng = np.random.default_rng(5)
    n, p, t = 2000, 600, 2000
    X = rng.standard_normal((n + 50, p), dtype=np.float32) * 2 + 1
    W = rng.standard_normal((p, t), dtype=np.float32) * np.logspace(-3, -1, t, dtype=np.float32)
    Y = X @ W + rng.standard_normal((n + 50, t), dtype=np.float32)
    X, X_test, Y = X[:n], X[n:], Y[:n]
    dec = fit_ridge_cv(X, Y, alphas="paper", fit_intercept=False)
    assert dec.fit_info["series_folds"] == [True] * 5
    assert max(dec.fit_info["products_per_fold"]) <= 4
    ref_alphas, ref_pred, _ = himalaya_fit(X, Y, X_test, PAPER_ALPHAS, False)
    diff = relative_difference(dec.predict(X_test), ref_pred)
    same = float(np.mean(dec.alphas == ref_alphas))
    print(f"series folds vs himalaya: same alphas {same:.3f}, rel. prediction diff {diff:.1e}")
    assert diff < 1e-4
    assert same >= 0.99


def test_held_out_operators_are_used_when_they_save_work():
    from nipype_brainrecon.ridge.primal_folds import use_held_out_operators

    assert use_held_out_operators(2, 1200, 1500, 6400)  # 2,400 operator rows < 6,400 targets
    assert not use_held_out_operators(7, 1200, 1500, 6400)  # 8,400 rows: more work
    assert not use_held_out_operators(10, 5000, 7604, 59136)  # 1.5 GB: over two bases' memory


def test_weight_compression_rank_and_accuracy():
    from nipype_brainrecon.ridge.backends import NumpyOps
    from nipype_brainrecon.ridge.basis import compress_weights

    assert SolverOptions().low_rank_alphas is None  # decided by cost by default
    ops = NumpyOps(np.dtype(np.float32))
    lam = np.linspace(500.0, 20000.0, 1500)
    w = 1.0 / (lam[:, None] + PAPER_ALPHAS[None, :])
    factors, mix = compress_weights(ops, w)
    rank = factors.shape[1]
    assert rank <= 3 and mix.shape == (7, rank + 1) and np.all(mix[:, rank] == -1)
    approx = factors.astype(np.float64) @ mix[:, :rank].T.astype(np.float64)
    assert np.max(np.abs(approx - w) / w) < 5e-7  # float32 factors
    # Eigenvalues spread over the default grid: weights are full rank, one product per alpha.
    lam = np.logspace(-1, 5, 1500)
    assert compress_weights(ops, 1.0 / (lam[:, None] + DEFAULT_ALPHAS[None, :]))[0] is None


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


def test_recovers_known_weights_and_penalises_noise():
    rng = np.random.default_rng(3)
    n, p = 2000, 40
    offsets, scales = rng.uniform(-100, 100, p), rng.uniform(0.1, 10, p)
    Z = rng.standard_normal((n + 500, p))
    X = (Z * scales + offsets).astype(np.float32)
    w_true = rng.standard_normal((p, 6))
    b_true = rng.normal(0, 5, 6)
    signal = Z @ w_true + b_true
    noise_only = rng.standard_normal((n + 500, 6)) * 2
    Y = np.concatenate([signal + 0.1 * rng.standard_normal(signal.shape), noise_only], 1)
    dec = fit_ridge_cv(X[:n], Y[:n].astype(np.float32), alphas="default")
    # Weights on standardised voxels = true weights times the voxel scale / training sd.
    expected = w_true * (X[:n].astype(np.float64).std(0) / scales)[:, None]
    np.testing.assert_allclose(dec.coef[:, :6], expected, atol=0.01)
    pred = dec.predict(X[n:])
    r = correlation_per_target(Y[n:], pred)
    print(f"held-out r, signal targets: {np.round(r[:6], 4)}; noise targets: {np.round(r[6:], 3)}")
    assert np.all(r[:6] > 0.999)
    np.testing.assert_allclose(pred[:, :6], signal[n:], atol=0.1)
    # Pure-noise targets get the strongest penalty; clean ones a weak one.
    assert np.all(dec.alphas[6:] >= 1e3)
    assert np.all(dec.alphas[:6] <= 10)


def test_standardisation_uses_training_statistics_only():
    X, Y, X_test, _ = make_data(120, 30, 8)
    dec = fit_ridge_cv(X, Y, dtype=np.float64)
    np.testing.assert_allclose(dec.mean, X.mean(0), rtol=1e-12)
    np.testing.assert_allclose(dec.scale, X.std(0), rtol=1e-12)
    manual = ((X_test - X.mean(0)) / X.std(0)) @ dec.coef + dec.intercept
    np.testing.assert_allclose(dec.predict(X_test), manual, rtol=1e-10, atol=1e-10)
    # A constant shift of the test voxels is not standardised away (no test statistics used).
    shifted = dec.predict(X_test + 1.0)
    step = np.broadcast_to((1 / X.std(0)) @ dec.coef, shifted.shape)
    np.testing.assert_allclose(shifted - dec.predict(X_test), step, rtol=1e-7, atol=1e-9)
    # The fit is invariant to affine rescaling of each training voxel.
    scale = np.linspace(0.1, 10, X.shape[1])
    other = fit_ridge_cv(X * scale - 3.0, Y, dtype=np.float64)
    np.testing.assert_array_equal(other.alphas, dec.alphas)
    np.testing.assert_allclose(
        other.predict(X_test * scale - 3.0), dec.predict(X_test), rtol=1e-8, atol=1e-8
    )


def test_constant_and_nonfinite_voxels_are_dropped():
    X, Y, X_test, _ = make_data(120, 30, 8)
    bad = X.copy()
    bad[:, 3] = 7.0
    bad[5, 10] = np.nan
    with pytest.warns(RuntimeWarning, match="2 of 30 voxels"):
        dec = fit_ridge_cv(bad, Y, dtype=np.float64)
    assert dec.n_voxels == 30 and dec.n_voxels_dropped == 2 and dec.n_voxels_used == 28
    assert not dec.voxel_mask[3] and not dec.voxel_mask[10]
    keep = dec.voxel_mask
    clean = fit_ridge_cv(X[:, keep], Y, dtype=np.float64)
    np.testing.assert_array_equal(dec.alphas, clean.alphas)
    np.testing.assert_allclose(dec.predict(X_test), clean.predict(X_test[:, keep]), rtol=1e-10)


def test_multidimensional_targets_keep_their_shape():
    X, Y, X_test, _ = make_data(100, 20, 24)
    dec = fit_ridge_cv(X, Y.reshape(100, 4, 3, 2))
    assert dec.target_shape == (4, 3, 2)
    pred = dec.predict(X_test)
    assert pred.shape == (X_test.shape[0], 4, 3, 2)
    flat = fit_ridge_cv(X, Y)
    np.testing.assert_allclose(pred.reshape(len(X_test), -1), flat.predict(X_test), rtol=1e-6)
    single = fit_ridge_cv(X, Y[:, 5])
    assert single.target_shape == () and single.predict(X_test).shape == (X_test.shape[0],)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def test_correlation_and_histogram_helpers():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    r = correlation_per_target(a, b)
    np.testing.assert_allclose(r, [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(3)])
    assert np.isnan(correlation_per_target(a, np.ones_like(a))).all()
    counts = alpha_histogram(np.float32([1e-6, 1, 1, 0.1]), PAPER_ALPHAS)
    assert list(counts) == list(PAPER_ALPHAS)
    assert counts[1.0] == 2 and counts[0.1] == 1 and counts[1e-6] == 1 and sum(counts.values()) == 4
    np.testing.assert_array_equal(resolve_alphas("default"), DEFAULT_ALPHAS)
    assert DEFAULT_ALPHAS.min() == 1e-2 and DEFAULT_ALPHAS.max() == 1e7


def test_alpha_report_is_logged(caplog):
    X, Y, _, _ = make_data(80, 10, 6)
    with caplog.at_level("INFO", logger="nipype_brainrecon.ridge"):
        dec = fit_ridge_cv(X, Y, alphas=[1e-3, 1e9])
    assert "chosen alphas" in caplog.text
    assert sum(dec.alpha_counts().values()) == 6


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    X, Y, X_test, _ = make_data(90, 20, 12, dtype=np.float32)
    X[:, 4] = 1.0
    with pytest.warns(RuntimeWarning):
        dec = fit_ridge_cv(X, Y.reshape(90, 3, 4), metadata={"ROI": "early"})
    paths = save_decoder(dec, tmp_path / "sub-01_desc-z_decoder", {"ModelId": "tiny", "Seed": 3})
    assert [p.name for p in paths] == [
        "sub-01_desc-z_decoder.safetensors",
        "sub-01_desc-z_decoder.json",
    ]
    sidecar = json.loads(paths[1].read_text())
    assert sidecar["NVoxels"] == 20 and sidecar["NVoxelsDropped"] == 1
    assert sidecar["TargetShape"] == [3, 4] and sidecar["NTargets"] == 12
    assert sum(sidecar["AlphaCounts"].values()) == 12
    assert sidecar["Metadata"] == {"ROI": "early", "ModelId": "tiny", "Seed": 3}
    for name in (paths[0], paths[1], tmp_path / "sub-01_desc-z_decoder"):
        back = load_decoder(name)
        assert isinstance(back, RidgeDecoder)
        for field in ("coef", "intercept", "voxel_mask", "mean", "scale", "alphas", "cv_scores"):
            np.testing.assert_array_equal(getattr(back, field), getattr(dec, field))
        assert back.target_shape == (3, 4) and back.metadata["Seed"] == 3
        np.testing.assert_array_equal(back.predict(X_test), dec.predict(X_test))
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_save_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    """The tensors are written by safetensors (from the arrays' memory): its I/O error becomes
    an OutputError naming the file, with the fix, and no file or temporary is left."""
    import safetensors.numpy
    from safetensors import SafetensorError

    from nipype_brainrecon.errors import OutputError

    X, Y, _, _ = make_data(60, 10, 5, dtype=np.float32)
    dec = fit_ridge_cv(X, Y)
    assert dec.coef.flags.f_contiguous  # column order: saved through a row-order copy
    written = []

    def full_disk(tensors, filename, metadata=None):
        written.append(filename)
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    with pytest.raises(OutputError, match="dec.safetensors: cannot write.*free disk space"):
        save_decoder(dec, tmp_path / "dec")
    assert written and not list(tmp_path.iterdir())
    monkeypatch.undo()

    # The tensors are written, the sidecar is not: the tensors go too.
    from nipype_brainrecon.ridge import persistence

    def no_sidecar(path, text):
        raise OutputError(f"{path}: cannot write (No space left on device)")

    monkeypatch.setattr(persistence, "atomic_write_text", no_sidecar)
    with pytest.raises(OutputError, match="dec.json: cannot write"):
        save_decoder(dec, tmp_path / "dec")
    assert not list(tmp_path.iterdir())


def test_load_rejects_bad_files(tmp_path):
    from safetensors.numpy import load_file, save_file

    X, Y, _, _ = make_data(60, 10, 5, dtype=np.float32)
    tensors, sidecar = save_decoder(fit_ridge_cv(X, Y), tmp_path / "dec")
    with pytest.raises(MissingInputError, match="not found"):
        load_decoder(tmp_path / "absent")
    good = json.loads(sidecar.read_text())

    sidecar.write_text(json.dumps({**good, "BrainreconRidgeDecoder": 99}))
    with pytest.raises(DataError, match="format 99"):
        load_decoder(tensors)
    sidecar.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_decoder(tensors)
    sidecar.write_text(json.dumps({**good, "NTargets": 6, "TargetShape": [6]}))
    with pytest.raises(DataError, match="coef has shape"):
        load_decoder(tensors)
    sidecar.write_text(json.dumps(good))
    arrays = load_file(tensors)
    save_file({**arrays, "voxel_mask": arrays["voxel_mask"].astype(np.uint8)}, tensors)
    with pytest.raises(DataError, match="voxel_mask"):
        load_decoder(tensors)
    save_file({**arrays, "intercept": arrays["intercept"][:3]}, tensors)
    with pytest.raises(DataError, match="intercept"):
        load_decoder(tensors)
    save_file({k: v for k, v in arrays.items() if k != "scale"}, tensors)
    with pytest.raises(DataError, match="missing arrays"):
        load_decoder(tensors)
    tensors.write_bytes(b"garbage")
    with pytest.raises(DataError, match="safetensors"):
        load_decoder(tensors)
    with pytest.raises(UsageError, match="JSON"):
        save_decoder(fit_ridge_cv(X, Y), tmp_path / "x", {"bad": object()})


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


def test_bad_inputs():
    X, Y, _, _ = make_data(60, 10, 5)
    with pytest.raises(DataError, match="4 training samples for 5 folds"):
        fit_ridge_cv(X[:4], Y[:4])
    with pytest.raises(DataError, match="60 samples but Y has 59"):
        fit_ridge_cv(X, Y[:59])
    with pytest.raises(DataError, match="n_samples, n_voxels"):
        fit_ridge_cv(X[:, 0], Y)
    bad_y = Y.copy()
    bad_y[3, 2] = np.inf
    with pytest.raises(DataError, match="non-finite values in targets"):
        fit_ridge_cv(X, bad_y)
    with pytest.raises(DataError, match="every voxel"):
        fit_ridge_cv(np.ones_like(X), Y)
    for alphas in ("huge", [], [0.0, 1.0], [1.0, 1.0], [np.nan]):
        with pytest.raises(UsageError, match="alphas"):
            fit_ridge_cv(X, Y, alphas=alphas)
    with pytest.raises(UsageError, match="n_folds"):
        fit_ridge_cv(X, Y, n_folds=1)
    with pytest.raises(UsageError, match="backend"):
        fit_ridge_cv(X, Y, backend="jax")
    with pytest.raises(UsageError, match="dtype"):
        fit_ridge_cv(X, Y, dtype=np.int32)
    with pytest.raises(UsageError, match="chunk_size"):
        fit_ridge_cv(X, Y, chunk_size=0)
    dec = fit_ridge_cv(X, Y)
    with pytest.raises(DataError, match=r"\(n_samples, 10\)"):
        dec.predict(X[:, :9])
    bad_x = X[:3].copy()
    bad_x[0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        dec.predict(bad_x)


# --------------------------------------------------------------------------------------------
# Working memory
# --------------------------------------------------------------------------------------------


def test_working_memory_below_inputs_and_flat_in_targets():
    """Folds run one at a time and no standardised copy of X outlives the first pass: beyond
    the output coefficients, the fit's peak allocations stay below the inputs and grow with the
    number of targets only by the per-target scores (K x alphas values), not by any p- or
    n-sized array."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n, p = 1000, 600  # many voxels per sample: keeping every fold's basis would exceed the inputs
    X = (rng.standard_normal((n, p)) * 3 + 5).astype(np.float32)
    fit_ridge_cv(X[:50, :10], rng.standard_normal((50, 2)))  # lazy imports outside the count

    def working(t):
        Y = rng.standard_normal((n, t)).astype(np.float32)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            dec = fit_ridge_cv(X, Y, alphas="paper", fit_intercept=False, memory_budget=2**20)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak - base - dec.coef.nbytes, X.nbytes + Y.nbytes

    small, inputs = working(3000)
    large, _ = working(6000)
    print(
        f"working memory {small / 2**20:.1f} / {large / 2**20:.1f} MiB, inputs {inputs / 2**20:.1f}"
    )
    assert small < inputs
    assert large - small < 3000 * 400  # bytes per added target (the output adds 2400)


@pytest.mark.parametrize("offset", [0.0, 3.0, 1e4])
def test_float32_standardisation_is_exact_to_a_few_ulps_whatever_the_mean(offset):
    """float32 voxels are standardised in float32 with the mean in two parts: the centred value
    keeps its precision even when the mean dwarfs the spread (the float64 route as reference)."""
    from nipype_brainrecon.ridge.backends import make_ops
    from nipype_brainrecon.ridge.source import Source
    from nipype_brainrecon.ridge.stats import voxel_statistics

    rng = np.random.default_rng(3)
    X = (offset + rng.standard_normal((300, 40)) * rng.uniform(0.1, 3.0, 40)).astype(np.float32)
    mean, scale = voxel_statistics(X, 64)
    mask = np.ones(40, bool)
    ops = make_ops("numpy", None, np.dtype(np.float32))
    src = Source(ops, X, np.zeros((300, 1), np.float32), mask, mean, scale, 64)
    assert src.in_float32
    fast = src.span_voxels(slice(0, 300))
    exact = (X.astype(np.float64) - mean) / scale
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(fast - exact) / ulp) <= 4.0
    # A float64 compute dtype takes the float64 route: exact to the rounding of division.
    src64 = Source(
        make_ops("numpy", None, np.dtype(np.float64)), X, X[:, :1], mask, mean, scale, 64
    )
    assert not src64.in_float32
    np.testing.assert_allclose(src64.span_voxels(slice(0, 300)), exact, rtol=1e-15, atol=0)
