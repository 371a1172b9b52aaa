"""``benchmarks/bench_seeds.py`` (scores over seeds and the null simulation), run tiny.

The statistics it adds (sign-flip p-value, Holm) are checked against exact references; the
smoke run checks the JSON's structure and that its null-condition p-values are what
:func:`~nipype_brainrecon.evaluation.metrics.identification_with_null` gives on the same
decoded arrays.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from nipype_brainrecon.evaluation.metrics import identification_with_null

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT))
        from benchmarks import bench_seeds

        yield bench_seeds


def test_sign_flip_p_against_exact_enumeration(bench):
    """Against the exact p over all 2^10 sign patterns (Monte Carlo error ~0.003 at 20k)."""
    d = np.array([0.3, -0.1, 0.2, 0.05, 0.15, -0.2, 0.1, 0.25, -0.05, 0.12])
    flips = np.array(list(itertools.product((-1.0, 1.0), repeat=d.size)))
    exact = np.mean((flips * d).mean(axis=1) >= d.mean() - 1e-12)
    assert abs(bench.sign_flip_p(d, n_flips=20000) - exact) < 0.01
    # All-zero differences: every flip ties, p = 1; clear positive shift: p = 1 / (1 + n).
    assert bench.sign_flip_p(np.zeros(20)) == 1.0
    assert bench.sign_flip_p(np.full(40, 0.5), n_flips=999) == pytest.approx(1 / 1000)


def test_holm(bench):
    p = [0.01, 0.04, 0.03, 0.005]  # thresholds 0.0125, 0.0167, 0.025, 0.05 in p order
    assert bench.holm_rejects(p) == [True, False, False, True]
    assert bench.holm_rejects([0.02, 0.02]) == [True, True]  # 0.02 <= 0.025, then <= 0.05
    assert bench.holm_rejects([0.03, 0.2]) == [False, False]


def test_tiny_null_run(bench, tmp_path):
    out = tmp_path / "seeds.json"
    args = ["--seeds", "1", "--conditions", "null_snr0", "--n-test", "10", "--n-train", "40"]
    assert bench.main([*args, "--out", str(out), "--work", str(tmp_path), "--save-arrays"]) == 0
    record = json.loads(out.read_text())
    (run,) = record["runs"]
    assert (run["seed"], run["condition"]) == (1, "null_snr0")
    assert set(run["scores"]) == {"z|early", "c|ventral", "z|ventral", "c|early"}
    assert set(run["dissociation"]) == {"z: early - ventral", "c: ventral - early"}
    arrays = np.load(out.with_suffix(".npz"))
    for key, s in run["scores"].items():
        assert s["n_test"] == 10 and s["matches_workflow_scores"] is True
        target, roi = key.split("|")
        truth = arrays[f"null_snr0_seed1_{target}_{roi}_truth"]
        pred = arrays[f"null_snr0_seed1_{target}_{roi}_predicted"]
        per_image, stats = identification_with_null(truth.reshape(10, -1), pred.reshape(10, -1))
        assert s["p_value"] == stats["p_value"] and s["null_p95"] == stats["null_p95"]
        assert s["identification"] == pytest.approx(per_image.mean(), abs=1e-12)
        assert s["ci_low"] <= s["identification"] <= s["ci_high"]
    fam = run["null_family"]
    ps = [s["p_value"] for s in run["scores"].values()]
    ps += [d["p_value"] for d in run["dissociation"].values()]
    assert fam["n_p_values"] == 6 and fam["min_p"] == min(ps)
    assert fam["all_p_above_0.05"] == (min(ps) > 0.05)
    summary = record["summary"]["null_snr0"]
    assert summary["seeds"] == [1]
    assert summary["pass_rate_all_p_above_0.05"] == float(fam["all_p_above_0.05"])
    assert "| null_snr0 | 1 | z from early |" in out.with_suffix(".md").read_text()


def test_simulate_presets(monkeypatch, tmp_path):
    """No preset gives the defaults, which are HARDER's values; ``--preset oracle`` switches the
    realism off; an explicit option wins over the preset."""
    from nipype_brainrecon.synthetic.simulate import cli
    from nipype_brainrecon.synthetic.simulate.presets import HARDER

    calls = []
    monkeypatch.setattr(cli, "simulate_dataset", lambda out, **kw: calls.append(kw) or out)
    assert cli.main([str(tmp_path / "a"), "-q"]) == 0
    assert cli.main([str(tmp_path / "b"), "-q", "--preset", "oracle"]) == 0
    assert cli.main([str(tmp_path / "c"), "-q", "--preset", "oracle", "--hrf-mismatch", "1"]) == 0
    assert cli.main([str(tmp_path / "d"), "--preset", "hard"]) == 64  # not a preset: usage error
    plain, oracle, explicit = calls
    assert {k: oracle[k] for k in HARDER} == dict.fromkeys(HARDER, 0.0)
    assert {k: plain[k] for k in HARDER} == {
        "hrf_mismatch": 1.0,
        "physio_fraction": 0.3,
        "noise_fwhm": 2.0,
        "nonresponsive_fraction": 0.3,
        "snr_spread": 0.5,
    }
    assert explicit["hrf_mismatch"] == 1.0 and explicit["noise_fwhm"] == 0.0
