"""The decoding workflow on the simulated dataset, where the truth is known.

The paper's finding must hold: z (image latent) decodes better from the early ROI than from the
ventral one, and c (caption embedding) better from the ventral ROI than from the early one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nipype_brainrecon.bids import collect_participant
from nipype_brainrecon.masks import roi_voxel_count
from nipype_brainrecon.models import build_tiny_sd
from nipype_brainrecon.ridge import load_decoder
from nipype_brainrecon.simulate import simulate_dataset
from nipype_brainrecon.workflows.decoding import init_decoding_wf


def _feed(wf, participant, model):
    i = wf.inputs.inputnode
    runs = participant.runs
    i.bold_files = [str(r.bold) for r in runs]
    i.events_files = [str(r.events_file) for r in runs]
    i.confounds_files = [str(r.confounds) for r in runs]
    i.mask_files = [str(r.mask) for r in runs]
    i.run_labels = [str(r.run) for r in runs]
    i.dseg_file = str(participant.roi_dseg)
    i.labels_file = str(participant.roi_labels_file)
    i.stimuli_dir = str(participant.stimuli_dir)
    i.captions_file = str(participant.captions_file)
    i.dataset_dir = str(participant.bids_dir)
    i.model = str(model)


def _outputs(result, name):
    return {n.name: n for n in result.nodes()}[name].result.outputs


def test_graph_shapes():
    full = init_decoding_wf()
    assert {"betas", "features", "fit_z", "fit_c", "predict_z", "predict_c"} <= set(
        full.list_node_names()
    )
    pre = init_decoding_wf(precomputed_betas=True, z_roi=["V1", "V2"], name="pre_wf")
    assert "betas" not in pre.list_node_names()
    assert pre.get_node("roi_z").inputs.roi_names == ["V1", "V2"]


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    base = tmp_path_factory.mktemp("decoding")
    simulate_dataset(base / "sim", n_subjects=1, seed=3)
    model = build_tiny_sd(base / "model", profile="sd-v1-shapes", seed=0)
    participant = collect_participant(base / "sim", "01")
    cache = base / "features"

    wf = init_decoding_wf(resolution=64, feature_cache=str(cache), metadata={"seed": 3})
    wf.base_dir = str(base / "work")
    _feed(wf, participant, model)
    paper = wf.run()

    betas = _outputs(paper, "betas")
    swapped = init_decoding_wf(
        precomputed_betas=True,
        z_roi="ventral",
        c_roi="early",
        resolution=64,
        feature_cache=str(cache),
        name="swapped_wf",
    )
    swapped.base_dir = str(base / "work")
    _feed(swapped, participant, model)
    swapped.inputs.inputnode.betas_files = betas.betas_file
    swapped.inputs.inputnode.trials_files = betas.trials_file
    other = swapped.run()
    return paper, other


def test_paper_finding_on_simulation(decoded):
    paper, swapped = decoded
    scores = {
        ("z", "early"): _outputs(paper, "predict_z").scores,
        ("c", "ventral"): _outputs(paper, "predict_c").scores,
        ("z", "ventral"): _outputs(swapped, "predict_z").scores,
        ("c", "early"): _outputs(swapped, "predict_c").scores,
    }
    for (target, roi), s in scores.items():
        print(
            f"{target} from {roi}: identification {s['identification']:.3f} "
            f"(chance {s['identification_chance']}), target r {s['target_r_mean']:.3f} "
            f"(chance 0), pattern r {s['pattern_r_mean']:.3f} "
            f"(mean-feature baseline {s['baseline_pattern_r_mean']:.3f})"
        )
        assert s["roi"] == roi and s["target"] == target
    z_early, z_ventral = scores[("z", "early")], scores[("z", "ventral")]
    c_ventral, c_early = scores[("c", "ventral")], scores[("c", "early")]
    assert z_early["identification"] > z_ventral["identification"]
    assert z_early["target_r_mean"] > z_ventral["target_r_mean"]
    assert c_ventral["identification"] > c_early["identification"]
    assert c_ventral["target_r_mean"] > c_early["target_r_mean"]
    # Well above chance where the information lives.
    assert z_early["identification"] > 0.65 and c_ventral["identification"] > 0.8


def test_decoder_files_and_provenance(decoded):
    paper, _ = decoded
    fit = _outputs(paper, "fit_z")
    sidecar = json.loads(open(fit.sidecar_file).read())
    decoder = load_decoder(fit.decoder_file)
    assert decoder.n_voxels == roi_voxel_count(_outputs(paper, "roi_z").roi_file) == 190
    assert tuple(decoder.target_shape) == (4, 8, 8)
    assert sum(fit.alpha_counts.values()) == 4 * 8 * 8
    text = json.dumps(sidecar)
    assert "early" in text and '"seed": 3' in text
    split = _outputs(paper, "split_z").split_info
    assert split["TestSetRule"] == "repeats"
    assert split["NumberOfTestStimuli"] == 20 and split["TestRepeatsMin"] == 3
    predicted = np.load(_outputs(paper, "predict_z").predicted_file)
    assert predicted.shape == (20, 4, 8, 8)


def test_default_alpha_grid_decodes_at_least_as_well_as_papers(decoded):
    """On standardised voxels the paper's grid (1e-6..1) is nearly unregularised."""
    import pandas as pd

    from nipype_brainrecon.metrics import decoding_scores
    from nipype_brainrecon.ridge import fit_ridge_cv

    paper, _ = decoded
    for target in ("z", "c"):
        split = _outputs(paper, f"split_{target}")
        features = _outputs(paper, "features")
        order = pd.read_csv(features.stimuli_file, sep="\t", dtype={"stim_id": str})["stim_id"]
        row = {sid: i for i, sid in enumerate(order)}
        y = np.load(getattr(features, f"{target}_file"))
        train_ids = pd.read_csv(split.train_stimuli_file, sep="\t", dtype={"stim_id": str})
        test_ids = pd.read_csv(split.test_stimuli_file, sep="\t", dtype={"stim_id": str})
        y_train = y[[row[s] for s in train_ids["stim_id"]]]
        y_test = y[[row[s] for s in test_ids["stim_id"]]]
        x_train, x_test = np.load(split.train_data_file), np.load(split.test_data_file)
        scores = {}
        for grid in ("default", "paper"):
            decoder = fit_ridge_cv(x_train, y_train, alphas=grid)
            scores[grid] = decoding_scores(y_test, decoder.predict(x_test))
        print(
            f"{target}: default grid r {scores['default']['target_r_mean']:.3f} / identification "
            f"{scores['default']['identification']:.3f}; paper grid r "
            f"{scores['paper']['target_r_mean']:.3f} / {scores['paper']['identification']:.3f} "
            "(chance 0 / 0.5)"
        )
        assert scores["default"]["target_r_mean"] >= scores["paper"]["target_r_mean"]
        assert scores["default"]["identification"] >= scores["paper"]["identification"]
