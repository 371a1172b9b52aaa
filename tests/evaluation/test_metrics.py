"""Identification and correlation scores against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from nipype_brainrecon.errors import DataError
from nipype_brainrecon.evaluation.metrics import (
    TIE_TOLERANCE,
    correlation_matrix,
    identification_correlations,
    identification_from_correlations,
    per_target_correlation,
    two_way_identification,
    two_way_identification_loop,
)

RULES = ("takagi", "mindeye")


def _mindeye_loop(orig, recon):
    n, s = recon.shape[:2]
    acc = np.zeros((n, s))
    for j in range(n):
        for k in range(s):
            own = np.corrcoef(recon[j, k], orig[j])[0, 1]
            acc[j, k] = np.mean(
                [np.corrcoef(recon[j, k], orig[i])[0, 1] < own for i in range(n) if i != j]
            )
    return acc.mean(axis=1)


@pytest.mark.parametrize("n_samples", [1, 5])
def test_identification_rules_equal_loops(n_samples):
    rng = np.random.default_rng(1)
    orig = rng.standard_normal((30, 40))
    recon = orig[:, None, :] * 0.3 + rng.standard_normal((30, n_samples, 40))
    fast = two_way_identification(orig, recon, rule="takagi")
    np.testing.assert_allclose(fast, two_way_identification_loop(orig, recon))
    np.testing.assert_allclose(
        two_way_identification(orig, recon, rule="mindeye"), _mindeye_loop(orig, recon)
    )
    assert 0.5 < fast.mean() < 1.0


def test_identification_chance_on_unrelated_features():
    rng = np.random.default_rng(2)
    orig = rng.standard_normal((200, 64))
    recon = rng.standard_normal((200, 3, 64))
    for rule in ("takagi", "mindeye"):
        assert abs(two_way_identification(orig, recon, rule=rule).mean() - 0.5) < 0.03


def test_correlations():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 7))
    b = rng.standard_normal((4, 7))
    ref = np.corrcoef(np.vstack([a, b]))[:5, 5:]
    np.testing.assert_allclose(correlation_matrix(a, b), ref, atol=1e-12)
    y = rng.standard_normal((50, 3))
    p = y + rng.standard_normal((50, 3))
    r = per_target_correlation(y, p)
    np.testing.assert_allclose(r, [np.corrcoef(y[:, k], p[:, k])[0, 1] for k in range(3)])
    p[:, 1] = 1.0
    assert np.isnan(per_target_correlation(y, p)[1])


def test_identification_errors():
    with pytest.raises(DataError, match="at least 2"):
        two_way_identification(np.ones((1, 3)), np.ones((1, 3)))
    bad = np.random.default_rng(0).random((3, 4))
    bad[1, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        two_way_identification(np.eye(3, 4), bad)
    with pytest.raises(DataError, match="rule"):
        two_way_identification(np.eye(3), np.eye(3), rule="other")
    with pytest.raises(DataError, match="2 reconstructions for 3"):
        two_way_identification(np.eye(3), np.eye(3)[:2])


@pytest.mark.parametrize("rule", RULES)
def test_constant_and_identical_predictions_score_exactly_half(rule):
    rng = np.random.default_rng(4)
    n = 12
    orig = rng.standard_normal((n, 30))
    one = rng.standard_normal(30)
    cases = {
        # the same (non-constant) prediction for every image
        "identical rows": np.tile(one, (n, 1)),
        "identical rows, 3 samples": np.tile(one, (n, 3, 1)),
        # constant vectors: r is defined as 0 with every candidate, so every comparison ties
        "constant rows": np.tile(np.arange(n, dtype=float)[:, None], (1, 30)),
        "all ones": np.ones((n, 30)),
    }
    for name, pred in cases.items():
        fast = two_way_identification(orig, pred, rule=rule)
        np.testing.assert_array_equal(fast, two_way_identification_loop(orig, pred, rule))
        if rule == "takagi" or name.startswith(("constant", "all")):
            # every comparison of every image ties
            np.testing.assert_array_equal(fast, 0.5, err_msg=name)
        else:  # one prediction against different originals: the ranks average to one half
            half_units = np.round(fast * 2 * (n - 1)).astype(int)  # comparisons won, in halves
            np.testing.assert_array_equal(fast * 2 * (n - 1), half_units)
            assert half_units.sum() == n * (n - 1), name  # exactly 0.5 in exact arithmetic
        assert abs(fast.mean() - 0.5) < 1e-15, name
    # identical predictions for identical originals: nothing to tell apart
    same = np.tile(one, (n, 1))
    np.testing.assert_array_equal(two_way_identification(same, same, rule=rule), 0.5)


def test_constant_vectors_correlate_zero():
    orig = np.vstack([np.full(5, 3.0), np.arange(5.0)])
    corr = identification_correlations(orig, np.vstack([np.arange(5.0), np.full(5, 0.1)]))
    # exact zeros where either vector is constant, r = 1 for the equal ramps
    np.testing.assert_array_equal(corr[..., 0], [[0.0, 0.0], [1.0, 0.0]])


def _strict_takagi(orig, recon):
    """Ties counted as failures (the former rule): to show the planted ties matter."""
    m = identification_correlations(orig, recon).mean(axis=2)
    n = len(m)
    return ((m < np.diag(m)[:, None]) & ~np.eye(n, dtype=bool)).sum(axis=1) / (n - 1)


def test_vectorised_equals_loop_exactly_with_planted_ties():
    differs_from_strict = 0
    had_ties = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n, d, s = int(rng.integers(3, 8)), int(rng.integers(3, 12)), int(rng.integers(1, 4))
        orig = rng.standard_normal((n, d))
        recon = 0.5 * orig[:, None, :] + rng.standard_normal((n, s, d))
        a, b, c = rng.choice(n, 3, replace=False)
        recon[a] = recon[b]  # duplicated candidate: Takagi ties
        orig[c] = 2.5 * orig[a] - 1.0  # correlation-equal original: MindEye ties
        if seed % 3 == 0:
            recon[c] = 3.0 * recon[b] + 7.0  # an affine copy: equal r, different rounding
        if seed % 5 == 0:
            recon[b, 0] = 4.0  # a constant sample: r = 0 with everything
        if seed % 7 == 0:
            recon = np.tile(recon[:1], (n, 1, 1))  # the same prediction for all images
        for rule in RULES:
            fast = two_way_identification(orig, recon, rule=rule)
            loop = two_way_identification_loop(orig, recon, rule)
            np.testing.assert_array_equal(fast, loop, err_msg=f"seed {seed}, {rule}")
            half_units = fast * 2 * s * (n - 1)
            had_ties += bool(np.any(np.round(half_units) % 2 == 1))
        differs_from_strict += not np.array_equal(
            two_way_identification(orig, recon, rule="takagi"), _strict_takagi(orig, recon)
        )
    assert had_ties > 100  # the planted ties were there ...
    assert differs_from_strict > 50  # ... and the strict rule would have scored them otherwise


def test_ties_are_decided_by_tolerance_not_rounding():
    corr = np.zeros((3, 3, 1))
    corr[:, :, 0] = [[0.5, 0.5 + TIE_TOLERANCE / 4, 0.2], [0.1, 0.9, 0.3], [0.0, 0.0, 0.5]]
    # image 0: a near-tie (half) and a win; image 1: two wins; image 2: two wins
    np.testing.assert_array_equal(identification_from_correlations(corr, "takagi"), [0.75, 1, 1])
    corr[0, 1, 0] = 0.5 + 10 * TIE_TOLERANCE  # a real difference: a loss
    np.testing.assert_array_equal(identification_from_correlations(corr, "takagi"), [0.5, 1, 1])
