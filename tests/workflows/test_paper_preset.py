"""``--paper`` reproduces the authors' ridge: StandardScaler + himalaya ``RidgeCV`` (defaults).

The authors' ``codes/utils/ridge.py`` fits ``make_pipeline(StandardScaler(), RidgeCV(alphas))``
with himalaya's defaults: no intercept, ``KFold(5)`` without shuffling, their 7 alphas. The
preset's three settings are followed from the command line, through the settings the workflow
builder receives, to the FitDecoder node, whose predictions are compared with that pipeline on
the same training rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cv_groups import _class_sorted, _fit, _write_training

from nipype_brainrecon.bids_app.parser import PAPER_PRESET, build_parser
from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.ridge import PAPER_ALPHAS
from nipype_brainrecon.workflows.decoding import init_decoding_wf

ARGS = ["bids", "out", "participant"]


def test_preset_sets_the_authors_options():
    paper = build_parser().parse_args([*ARGS, "--paper"])
    assert (paper.alphas, paper.fit_intercept, paper.cv_groups) == ("paper", False, "none")
    default = build_parser().parse_args(ARGS)
    assert (default.alphas, default.fit_intercept, default.cv_groups) == (
        DEFAULTS.decoding.alphas,
        DEFAULTS.decoding.fit_intercept,
        DEFAULTS.decoding.cv_groups,
    )
    assert build_parser().parse_args([*ARGS, "--no-intercept"]).fit_intercept is False


def test_preset_refuses_a_contradicting_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*ARGS, "--paper", "--cv-groups", "session"])
    assert exit_info.value.code == 64
    assert "--paper sets --cv-groups none; drop --cv-groups session" in capsys.readouterr().err


def test_workflow_nodes_receive_the_preset():
    wf = init_decoding_wf(
        precomputed_betas=True,
        alphas=PAPER_PRESET["alphas"],
        fit_intercept=PAPER_PRESET["fit_intercept"],
        cv_groups=PAPER_PRESET["cv_groups"],
    )
    for target in ("z", "c"):
        inputs = wf.get_node(f"fit_{target}").inputs
        assert (inputs.alphas, inputs.fit_intercept, inputs.cv_groups) == ("paper", False, "none")


def test_fit_decoder_with_the_preset_equals_the_authors_pipeline(tmp_path):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, Y, runs, _ = _class_sorted(n_runs=6, p=30)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    files = _write_training(tmp_path, X, Y, {"source": 1, "run": runs})
    decoder, outputs, sidecar = _fit(tmp_path, files, "paper", **PAPER_PRESET)
    assert sidecar["Metadata"]["CVFolds"] == outputs.cv_folds
    assert "contiguous" in outputs.cv_folds

    set_backend("numpy", on_error="raise")
    pipe = make_pipeline(StandardScaler(), RidgeCV(alphas=list(PAPER_ALPHAS))).fit(X, Y)
    np.testing.assert_array_equal(decoder.alphas, pipe[-1].best_alphas_)
    X_test = np.random.default_rng(1).standard_normal((7, X.shape[1])) + X.mean(0)
    # FitDecoder solves in float32 (the pipeline's dtype), himalaya here in float64.
    np.testing.assert_allclose(decoder.predict(X_test), pipe.predict(X_test), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(decoder.intercept, 0.0)
