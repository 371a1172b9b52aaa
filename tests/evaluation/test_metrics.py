"""Identification and correlation scores against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from nipype_brainrecon.errors import DataError
from nipype_brainrecon.evaluation.metrics import (
    correlation_matrix,
    per_target_correlation,
    two_way_identification,
    two_way_identification_loop,
)


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
    with pytest.raises(DataError, match="constant"):
        two_way_identification(np.ones((3, 4)), np.random.default_rng(0).random((3, 4)))
    with pytest.raises(DataError, match="rule"):
        two_way_identification(np.eye(3), np.eye(3), rule="other")
    with pytest.raises(DataError, match="2 reconstructions for 3"):
        two_way_identification(np.eye(3), np.eye(3)[:2])
