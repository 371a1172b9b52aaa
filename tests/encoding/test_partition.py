"""Bootstrap intervals of variance partitioning (``nipype_brainrecon.encoding.partition``)."""

from __future__ import annotations

import numpy as np
import pytest

from nipype_brainrecon.encoding.partition import (
    FixedPenaltyModel,
    bootstrap_counts,
    partition_bootstrap,
    partition_refit_bootstrap,
)
from nipype_brainrecon.errors import DataError, UsageError


def _data(seed=0, n_train=40, n_test=25, t=3):
    rng = np.random.default_rng(seed)
    xa, xb = rng.standard_normal((n_train + n_test, 2)), rng.standard_normal((n_train + n_test, 3))
    y = xa @ rng.standard_normal((2, t)) + xb @ rng.standard_normal((3, t))
    y += rng.standard_normal(y.shape) * 2.0
    tr, te = slice(0, n_train), slice(n_train, None)
    alphas = {
        "a": np.full((1, t), 2.0),
        "b": np.full((1, t), 5.0),
        "j": np.array([[2.0] * t, [7.0] * t]),
    }
    models = (
        FixedPenaltyModel([xa[tr]], [xa[te]], alphas["a"]),
        FixedPenaltyModel([xb[tr]], [xb[te]], alphas["b"]),
        FixedPenaltyModel([xa[tr], xb[tr]], [xa[te], xb[te]], alphas["j"]),
    )
    return y[tr], y[te], models


def _ridge_prediction(blocks, y, alphas, tests):
    """Standardised blocks, an intercept, per-band penalties: the normal equations."""
    zs, zt = [], []
    for x, xt in zip(blocks, tests, strict=True):
        m, s = x.mean(0), x.std(0)
        zs.append((x - m) / s)
        zt.append((xt - m) / s)
    z, z_test = np.hstack(zs), np.hstack(zt)
    ridge = np.concatenate([np.full(b.shape[1], a) for b, a in zip(blocks, alphas, strict=True)])
    w = np.linalg.solve(z.T @ z + np.diag(ridge), z.T @ (y - y.mean(0)))
    return z_test @ w + y.mean(0)


def _r2(y, p, counts):
    w = counts / counts.sum()
    mu = w @ y
    return 1 - (w @ (y - p) ** 2) / (w @ (y - mu) ** 2)


def test_refit_bootstrap_is_the_basic_interval_of_refitted_models():
    """Each resample recomputed by hand (the documented draws: training rows from
    ``default_rng([seed, 1])``, test counts from ``bootstrap_counts``), the interval is
    ``2 * estimate - percentiles``."""
    y_tr, y_te, models = _data()
    n_boot, seed = 40, 3
    out = partition_refit_bootstrap(y_tr, y_te, *models, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng([seed, 1])
    counts = bootstrap_counts(len(y_te), n_boot, seed)

    def parts(rows, c):
        r2 = [
            _r2(y_te, _ridge_prediction([b[rows] for b in m.train_blocks], y_tr[rows], m.alphas[:, 0], m.test_blocks), c)
            for m in models
        ]  # fmt: skip
        return {
            "unique_a": r2[2] - r2[1],
            "unique_b": r2[2] - r2[0],
            "shared": r2[0] + r2[1] - r2[2],
        }

    point = parts(np.arange(len(y_tr)), np.ones(len(y_te)))
    draws = [parts(rng.integers(0, len(y_tr), len(y_tr)), counts[b]) for b in range(n_boot)]
    for key in point:
        q_low, q_high = np.percentile([d[key] for d in draws], [2.5, 97.5], axis=0)
        np.testing.assert_allclose(out[key]["estimate"], point[key], atol=1e-10)
        np.testing.assert_allclose(out[key]["low"], 2 * point[key] - q_high, atol=1e-10)
        np.testing.assert_allclose(out[key]["high"], 2 * point[key] - q_low, atol=1e-10)


def test_training_units_are_resampled_together():
    """Every row its own unit is the default; rows sharing a stimulus id are drawn as one unit:
    each row twice, the copies one unit, draws the same models as the rows alone (ridge on
    duplicated rows with twice the penalty is the same model)."""
    y_tr, y_te, models = _data(n_train=30)
    default = partition_refit_bootstrap(y_tr, y_te, *models, n_boot=30, seed=1)
    ids = [f"s{i}" for i in range(30)]
    ones = partition_refit_bootstrap(y_tr, y_te, *models, n_boot=30, seed=1, train_units=ids)
    np.testing.assert_array_equal(default["shared"]["low"], ones["shared"]["low"])
    twice = [
        FixedPenaltyModel(
            [np.repeat(b, 2, axis=0) for b in m.train_blocks], m.test_blocks, 2 * m.alphas
        )
        for m in models
    ]
    paired = partition_refit_bootstrap(
        np.repeat(y_tr, 2, axis=0), y_te, *twice, n_boot=30, seed=1, train_units=np.repeat(ids, 2)
    )
    for key in ("unique_a", "unique_b", "shared"):
        np.testing.assert_allclose(paired[key]["low"], default[key]["low"], atol=1e-10)
        np.testing.assert_allclose(paired[key]["high"], default[key]["high"], atol=1e-10)


def test_refit_interval_holds_the_test_interval_and_groups():
    """The refit draws add the fit's variability to the test-image ones: wider on average; the
    group interval is the one of each resample's group mean."""
    y_tr, y_te, models = _data(seed=2, t=6)
    groups = {"first": np.arange(6) < 3}
    refit = partition_refit_bootstrap(y_tr, y_te, *models, n_boot=200, seed=0, groups=groups)
    preds = [_ridge_prediction(m.train_blocks, y_tr, m.alphas[:, 0], m.test_blocks) for m in models]
    test = partition_bootstrap(y_te, *preds, n_boot=200, seed=0)
    width = {k: np.mean(v["high"] - v["low"]) for k, v in refit.items() if k != "groups"}
    assert all(width[k] > np.mean(test[k]["high"] - test[k]["low"]) for k in width)
    est, low, high = refit["groups"]["first"]["shared"]
    assert est == pytest.approx(refit["shared"]["estimate"][:3].mean())
    assert low < high


def test_refit_bootstrap_bad_inputs():
    y_tr, y_te, models = _data()
    with pytest.raises(DataError, match="rows"):
        partition_refit_bootstrap(y_tr[:-1], y_te, *models)
    with pytest.raises(DataError, match="y_train"):
        partition_refit_bootstrap(y_tr, y_te[:, :2], *models)
    with pytest.raises(DataError, match="train_units"):
        partition_refit_bootstrap(y_tr, y_te, *models, train_units=["a"])
    with pytest.raises(UsageError, match="level"):
        partition_refit_bootstrap(y_tr, y_te, *models, level=1.5)
