"""Banded ridge (one alpha per feature space) against himalaya and on planted unique variance."""

from __future__ import annotations

import numpy as np
import pytest

from nipype_brainrecon.errors import DataError, UsageError
from nipype_brainrecon.ridge import fit_ridge_cv
from nipype_brainrecon.ridge.banded import banded_alpha_grid, fit_banded_ridge, fit_banded_ridge_cv

GRID = 10.0 ** np.arange(-1, 6)


def _two_bands(seed=0, n=120, pz=30, pc=50, t=12):
    rng = np.random.default_rng(seed)
    xz, xc = rng.standard_normal((n, pz)), rng.standard_normal((n, pc)) + 3.0
    snr = np.logspace(-2, 1, t)
    y = (
        (xz @ rng.standard_normal((pz, t))) * snr * (np.arange(t) % 2)
        + (xc @ rng.standard_normal((pc, t))) * snr[::-1] * 0.3
        + rng.standard_normal((n, t)) * 5
        + 2.0
    )
    return xz, xc, y


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_equals_himalaya_banded_ridge_cv(fit_intercept):
    """Same standardised blocks, KFold(5) unshuffled, the 6 x 6 Cartesian grid given to
    himalaya's BandedRidgeCV as band scalings gamma_b = 1 / alpha_b with ridge alpha 1
    (deltas_b = log gamma_b, so alpha_b = exp(-deltas_b)): every target chooses the same
    alpha pair and predictions agree to float64 rounding (observed 2e-15 / 1e-14 relative)."""
    from benchmarks._common import himalaya_banded_ridge_cv

    xz, xc, y = _two_bands()
    tr, te = slice(0, 90), slice(90, None)
    grid = np.logspace(-1, 4, 6)
    fit = fit_banded_ridge_cv([xz[tr], xc[tr]], y[tr], alphas_per_band=grid,
                              fit_intercept=fit_intercept)  # fmt: skip
    ref, (sz, sc) = himalaya_banded_ridge_cv([xz[tr], xc[tr]], y[tr], grid, fit_intercept)
    np.testing.assert_allclose(np.exp(-ref.deltas_), fit.alphas, rtol=1e-9)
    assert np.unique(fit.best).size >= 4  # the targets do choose different pairs
    np.testing.assert_allclose(fit.cv_scores, ref.cv_scores_, rtol=1e-9)
    pred_ref = ref.predict([sz.transform(xz[te]), sc.transform(xc[te])])
    pred = fit.predict([xz[te], xc[te]])
    assert np.abs(pred - pred_ref).max() <= 1e-10 * np.abs(pred_ref).max()
    split = fit.predict([xz[te], xc[te]], split=True)
    np.testing.assert_allclose(split.sum(0) + fit.intercept, pred, rtol=1e-12)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_shared_alpha_grid_equals_fit_ridge_cv(fit_intercept):
    """The diagonal grid (alpha_z = alpha_c) is ordinary ridge CV on the concatenated,
    standardised features: the project's own solver gives the same alphas and predictions."""
    xz, xc, y = _two_bands(seed=1)
    tr, te = slice(0, 90), slice(90, None)
    fit = fit_banded_ridge_cv([xz[tr], xc[tr]], y[tr], alpha_grid=np.c_[GRID, GRID],
                              fit_intercept=fit_intercept)  # fmt: skip
    ref = fit_ridge_cv(np.hstack([xz[tr], xc[tr]]), y[tr], alphas=GRID, dtype=np.float64,
                       fit_intercept=fit_intercept)  # fmt: skip
    np.testing.assert_array_equal(fit.alphas[0], ref.alphas)
    np.testing.assert_array_equal(fit.alphas[1], ref.alphas)
    pred_ref = ref.predict(np.hstack([xz[te], xc[te]]))
    np.testing.assert_allclose(fit.predict([xz[te], xc[te]]), pred_ref, rtol=1e-9, atol=1e-9)


def _planted(seed, n_tr=500, n_te=200, pz=10, pc=300, n_a=20, n_b=20, f_a=0.9, f_b=0.4):
    """z (10 iid features) drives voxel group A with 90 % of its variance; c (300 features:
    a rank-3 factor signal plus as much iid noise) drives group B with 40 %. Planted unique
    variance: A (z, c) = (0.9, 0), B (z, c) = (0, 0.4)."""
    rng = np.random.default_rng(seed)
    n = n_tr + n_te
    xz = rng.standard_normal((n, pz))
    factors = rng.standard_normal((n, 3))
    xc = factors @ rng.standard_normal((3, pc)) / np.sqrt(3) + rng.standard_normal((n, pc))
    wz = rng.standard_normal((pz, n_a))
    wc = rng.standard_normal((3, n_b))
    sig_a = xz @ (wz / np.linalg.norm(wz, axis=0))
    sig_b = factors @ (wc / np.linalg.norm(wc, axis=0))
    y = np.hstack([
        np.sqrt(f_a) * sig_a + np.sqrt(1 - f_a) * rng.standard_normal((n, n_a)),
        np.sqrt(f_b) * sig_b + np.sqrt(1 - f_b) * rng.standard_normal((n, n_b)),
    ])  # fmt: skip
    tr, te = slice(0, n_tr), slice(n_tr, None)
    return [xz[tr], xc[tr]], y[tr], [xz[te], xc[te]], y[te]


def _unique_ci(scores, y_test, groups, n_boot=1000, seed=0):
    """Group-mean unique variance (z, c) and its 95 % bootstrap CI over test images."""
    idx = np.random.default_rng(seed).integers(0, y_test.shape[0], (n_boot, y_test.shape[0]))
    yb = y_test[idx]
    sst = ((yb - yb.mean(1, keepdims=True)) ** 2).sum(1)

    def r2(pred):
        return 1 - ((yb - pred[idx]) ** 2).sum(1) / sst

    joint = r2(scores["predicted_joint"])
    alone = [r2(p) for p in scores["predicted_alone"]]
    boot = np.stack([joint - alone[1], joint - alone[0]])  # (2 bands, n_boot, targets)
    return {
        g: (scores["unique"][:, sl].mean(1), np.percentile(boot[:, :, sl].mean(2), [2.5, 97.5], 1))
        for g, sl in groups.items()
    }


def test_planted_unique_variance_banded_vs_shared_alpha():
    """Pre-registered check (thresholds fixed on seeds 0-9 of this design, asserted on seeds
    10-14, which it was not tuned on). Per seed, group A = 20 z-driven voxels (planted unique
    variance z 0.9, c 0), group B = 20 c-driven voxels (z 0, c 0.4); 500 training and 200 test
    images; alphas 1e-1 .. 1e5 per band (49 pairs) vs the same 7 values shared.

    Seeds 0-9 (design): banded estimates A (0.894..0.917, -0.001..0.0), B (-0.001..0.001,
    0.345..0.406); the planted value lies in the 95 % bootstrap CI over test images in 32 of
    40 checks (the CI has no training-set variability, so coverage is below 95 %). A shared
    alpha gives A (0.784..0.814, -0.119..-0.102): outside the CI in 20 of 20 checks, unique z
    underestimated by ~0.1 and c given ~-0.1 (the 300 c features, noise for A, force a
    larger shared alpha that also shrinks z). B is the same in both (c needs the large alpha).

    Asserted: banded within 0.075 of every planted value and covering it in >= 12 of 20
    checks; shared alpha biased by >= 0.07 on both A values, outside their CI in every seed.
    """
    planted = {"A": np.array([0.9, 0.0]), "B": np.array([0.0, 0.4])}
    groups = {"A": slice(0, 20), "B": slice(20, None)}
    covered, rows = 0, []
    for seed in range(10, 15):
        xs, y, ts, yt = _planted(seed)
        banded = fit_banded_ridge_cv(xs, y, alphas_per_band=GRID, test_blocks=ts, Y_test=yt)
        shared = fit_banded_ridge_cv(xs, y, alpha_grid=np.c_[GRID, GRID], test_blocks=ts,
                                     Y_test=yt)  # fmt: skip
        cb, cs = _unique_ci(banded.scores, yt, groups), _unique_ci(shared.scores, yt, groups)
        for g, truth in planted.items():
            est, ci = cb[g]
            assert np.all(np.abs(est - truth) <= 0.075), (seed, g, est)
            covered += int(np.sum((ci[0] <= truth) & (truth <= ci[1])))
        est_s, ci_s = cs["A"]
        assert np.all(np.abs(est_s - planted["A"]) >= 0.07), (seed, est_s)
        assert not np.any((ci_s[0] <= planted["A"]) & (planted["A"] <= ci_s[1])), seed
        rows.append((seed, cb["A"][0], cb["B"][0], est_s))
    assert covered >= 12, (covered, rows)


def test_bad_inputs():
    xz, xc, y = _two_bands(n=20)
    with pytest.raises(DataError):
        fit_banded_ridge_cv([xz, xc[:10]], y)
    with pytest.raises(UsageError):
        fit_banded_ridge_cv([xz, xc], y, alpha_grid=[[1.0, -1.0]])
    with pytest.raises(UsageError):
        banded_alpha_grid([[1.0], [1.0], [2.0]], 2)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("n", [40, 120])
def test_fixed_alphas_equal_the_cv_refit(fit_intercept, n):
    """``fit_banded_ridge`` at the alphas the CV chose is the CV fit's model: kernel form when
    the 80 columns outnumber the samples (n=40, the same solve), feature space otherwise
    (n=120, equal to rounding)."""
    xz, xc, y = _two_bands(n=n)
    cv = fit_banded_ridge_cv([xz, xc], y, alphas_per_band=GRID, fit_intercept=fit_intercept)
    assert len(np.unique(cv.alphas.T, axis=0)) > 1  # per-target pairs differ
    fixed = fit_banded_ridge([xz, xc], y, cv.alphas, fit_intercept=fit_intercept)
    new = np.random.default_rng(5).standard_normal((7, 80)) + 1.0
    blocks = [new[:, :30], new[:, 30:]]
    want, got = cv.predict(blocks), fixed.predict(blocks)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max())
    np.testing.assert_array_equal(fixed.alphas, cv.alphas)


def test_fixed_alphas_one_band_and_bad_alphas():
    """One band at one alpha for every target is the ridge solution computed directly."""
    xz, _, y = _two_bands(n=60)
    fit = fit_banded_ridge([xz], y, [3.0])
    z = (xz - xz.mean(0)) / xz.std(0)
    w = np.linalg.solve(z.T @ z + 3.0 * np.eye(z.shape[1]), z.T @ (y - y.mean(0)))
    np.testing.assert_allclose(fit.coef[0], w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.intercept, y.mean(0))
    for bad in ([0.0], [1.0, 2.0], np.ones((1, 3))):
        with pytest.raises(UsageError, match="alphas"):
            fit_banded_ridge([xz], y, bad)
