"""Permutation nulls and bootstrap CIs of identification, against brute force and theory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.errors import DataError, UsageError
from nipype_brainrecon.evaluation import evaluate
from nipype_brainrecon.evaluation.metrics import (
    identification_correlations,
    identification_gain,
    identification_with_null,
    two_way_identification,
)
from nipype_brainrecon.evaluation.nulls import (
    assignment_scorer,
    bootstrap_ci,
    permutation_null,
    permutations,
)
from nipype_brainrecon.evaluation.suite import NULL_COLUMNS

RULES = ("takagi", "mindeye")


def _data(seed, n=15, d=20, s=2, signal=0.0, ties=False):
    rng = np.random.default_rng(seed)
    orig = rng.standard_normal((n, d))
    recon = signal * orig[:, None, :] + rng.standard_normal((n, s, d))
    if ties:
        recon[1] = recon[0]
        orig[2] = 3.0 * orig[3] + 1.0
    return orig, recon


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("ties", [False, True])
def test_null_draws_equal_identification_of_permuted_reconstructions(rule, ties):
    orig, recon = _data(1, n=9, s=3, signal=0.5, ties=ties)
    gain, denominator = identification_gain(identification_correlations(orig, recon), rule)
    score = assignment_scorer(gain, denominator)
    perms = permutations(9, 40, seed=3)
    brute = [two_way_identification(orig, recon[p], rule=rule).mean() for p in perms]
    np.testing.assert_allclose(score(perms), brute, rtol=0, atol=1e-12)
    identity = np.arange(9)[None]
    np.testing.assert_allclose(
        score(identity)[0], two_way_identification(orig, recon, rule=rule).mean(), atol=1e-12
    )


@pytest.mark.parametrize("rule", RULES)
def test_p_values_are_uniform_on_unrelated_data(rule):
    p = np.array(
        [identification_with_null(*_data(seed), rule=rule)[1]["p_value"] for seed in range(50)]
    )
    assert np.mean(p < 0.05) <= 0.15
    assert 0.3 <= np.mean(p < 0.5) <= 0.7  # not stuck at 1 (or 0) either
    assert p.min() >= 1 / 1001 and p.max() <= 1.0


@pytest.mark.parametrize("rule", RULES)
def test_strongly_related_data_give_the_smallest_p_value(rule):
    per_image, stats = identification_with_null(*_data(7, signal=5.0), rule=rule)
    assert per_image.mean() == 1.0
    assert stats["p_value"] == 1 / 1001
    assert 0.5 < stats["null_p95"] < 0.7  # the null centres on chance
    assert stats["ci_low"] == stats["ci_high"] == 1.0  # every image scores 1


def test_permutation_null_formula_and_batched_equals_loop():
    rng = np.random.default_rng(5)
    w = rng.integers(-5, 6, 12).astype(float)  # integer sums: exact in any order

    def batched(perms):
        return (np.asarray(perms).reshape(-1, 12) == np.arange(12)).astype(float) @ w

    a = permutation_null(batched, 12, n_permutations=200, seed=9)
    b = permutation_null(
        lambda p: batched(p[None])[0], 12, n_permutations=200, seed=9, batched=False
    )
    np.testing.assert_array_equal(a.null, b.null)
    assert a.observed == b.observed == w.sum()
    perms = permutations(12, 200, seed=9)
    np.testing.assert_allclose(a.null, batched(perms))
    assert a.p_value == (1 + np.sum(a.null >= a.observed)) / 201
    assert a.p95 == np.percentile(a.null, 95)
    # seeded: the same draws again, other draws with another seed
    assert np.array_equal(permutation_null(batched, 12, n_permutations=200, seed=9).null, a.null)
    assert not np.array_equal(
        permutation_null(batched, 12, n_permutations=200, seed=1).null, a.null
    )
    assert sorted(perms[0]) == list(range(12))


def test_equal_scores_count_in_the_p_value():
    # every assignment scores the same: all draws tie with the observed value, so p = 1
    res = permutation_null(assignment_scorer(np.ones((6, 6), dtype=int), 1), 6, n_permutations=99)
    assert res.p_value == 1.0 and res.observed == 1.0


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_items():
    rng = np.random.default_rng(11)
    widths = {}
    for n in (30, 3000):
        x = rng.random(n)
        low, high = bootstrap_ci(x)
        assert low < x.mean() < high
        widths[n] = high - low
        # the normal approximation: 2 * 1.96 * sd / sqrt(n)
        expected = 2 * 1.96 * x.std() / np.sqrt(n)
        assert abs(widths[n] / expected - 1) < 0.2
    assert widths[3000] < widths[30] / 5  # ~ sqrt(100) = 10 times narrower


def test_bootstrap_ci_equals_a_loop_over_resamples():
    x = np.random.default_rng(2).random(25)
    idx = np.random.default_rng(4).integers(0, 25, size=(300, 25))
    means = [x[i].mean() for i in idx]
    low, high = bootstrap_ci(x, n_boot=300, seed=4)
    np.testing.assert_allclose([low, high], np.percentile(means, [2.5, 97.5]), atol=1e-14)
    # per-sample scores (n, S) are averaged over samples first
    x2 = np.stack([x, x], axis=1)
    assert bootstrap_ci(x2, n_boot=300, seed=4) == (low, high)


def test_errors():
    with pytest.raises(UsageError, match="n_permutations"):
        permutation_null(lambda p: p[:, 0], 5, n_permutations=0)
    with pytest.raises(UsageError, match="n_boot"):
        bootstrap_ci(np.ones(4), n_boot=0)
    with pytest.raises(DataError, match="NaN"):
        bootstrap_ci(np.array([0.5, np.nan]))
    with pytest.raises(DataError, match="3 scores for 4"):
        permutation_null(lambda p: np.zeros(3), 5, n_permutations=4)


def test_defaults_are_in_config_and_not_recorded():
    ev = DEFAULTS.evaluation
    assert (ev.n_permutations, ev.n_boot, ev.resampling_seed) == (1000, 1000, 0)
    flat = DEFAULTS.flat()
    assert not {"n_permutations", "n_boot", "resampling_seed"} & set(flat)


def test_evaluate_adds_null_columns_at_the_end():
    rng = np.random.default_rng(3)
    orig = rng.integers(0, 256, (8, 16, 16, 3)).astype(np.uint8)
    rec = np.clip(orig[:, None] / 255 + 0.2 * rng.standard_normal((8, 2, 16, 16, 3)), 0, 1)
    table = evaluate(
        orig,
        rec,
        extractors=("pixels",),
        size=16,
        baselines={"mean": orig.mean(axis=0) / 255},
        n_permutations=300,
        n_boot=200,
    )
    assert list(table.columns[-4:]) == list(NULL_COLUMNS)
    assert list(table.columns[:-4]) == [
        "features",
        "score",
        "rule",
        "better",
        "value",
        "chance",
        "mismatched",
        "baseline: mean",
    ]
    assert table.loc["SSIM", list(NULL_COLUMNS)].isna().all()  # no null for SSIM
    assert table.loc["PixCorr", list(NULL_COLUMNS)].notna().all()  # PixCorr: matrix null
    assert table.loc["PixCorr", "p_value"] == 1 / 301
    assert table.attrs["n_permutations"] == 300 and table.attrs["n_boot"] == 200
    # the identification rows against the functions on the extractor's own features
    from nipype_brainrecon.evaluation import get_extractor

    ext = get_extractor("pixels")
    fo = ext(orig)["Pixels"]
    fr = ext(rec.reshape(-1, 16, 16, 3))["Pixels"].reshape(8, 2, -1)
    for rule in RULES:
        row = table.loc[f"Pixels 2-way ({rule})"]
        per, stats = identification_with_null(fo, fr, rule=rule, n_permutations=300, n_boot=200)
        np.testing.assert_allclose(row["value"], per.mean(), atol=1e-12)
        for k in NULL_COLUMNS:
            np.testing.assert_allclose(row[k], stats[k], atol=1e-12)
        assert row["p_value"] == 1 / 301  # good reconstructions beat every permutation
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert isinstance(table, pd.DataFrame)


def _decoded(seed, n=12, d=30, signal=0.0):
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((n, d))
    return truth, signal * truth + rng.standard_normal((n, d))


def test_target_r_null_draws_equal_the_mean_r_of_permuted_predictions():
    from nipype_brainrecon.evaluation.metrics import (
        per_target_correlation,
        target_correlation_gain,
    )

    truth, pred = _decoded(2, signal=0.7)
    truth[:, 3] = 1.0  # a constant target: NaN r, left out of the mean as in nanmean
    gain, denominator = target_correlation_gain(truth, pred, chunk=7)  # chunks straddle it
    score = assignment_scorer(gain, denominator)
    perms = permutations(len(truth), 30, seed=5)
    brute = [np.nanmean(per_target_correlation(truth, pred[p])) for p in perms]
    np.testing.assert_allclose(score(perms), brute, rtol=0, atol=1e-12)
    identity = np.arange(len(truth))[None]
    np.testing.assert_allclose(
        score(identity)[0], np.nanmean(per_target_correlation(truth, pred)), atol=1e-12
    )


def test_decoding_scores_give_every_correlation_its_null_and_ci():
    from nipype_brainrecon.evaluation.metrics import correlation_matrix, decoding_scores

    related = decoding_scores(*_decoded(3, n=40, signal=2.0))
    unrelated = [decoding_scores(*_decoded(s, n=40)) for s in range(40)]
    for score in ("target_r", "pattern_r", "identification"):
        keys = [f"{score}_{k}" for k in ("null_p95", "p_value", "ci_low", "ci_high")]
        assert all(np.isfinite(related[k]) for k in keys)
        value = related["identification" if score == "identification" else f"{score}_mean"]
        assert related[f"{score}_ci_low"] <= value <= related[f"{score}_ci_high"]
        assert related[f"{score}_p_value"] == 1 / 1001
        p = np.array([u[f"{score}_p_value"] for u in unrelated])
        assert np.mean(p < 0.05) <= 0.15 and 0.25 <= np.mean(p < 0.5) <= 0.75
    # Permuting the labels of a mean pattern r: the null is the mean off-diagonal r.
    truth, pred = _decoded(4, n=30, signal=1.0)
    scores = decoding_scores(truth, pred)
    off = correlation_matrix(truth, pred)[~np.eye(30, dtype=bool)]
    assert abs(scores["pattern_r_null_p95"] - off.mean()) < 0.1
    assert scores["pattern_r_mean"] > scores["pattern_r_null_p95"]
