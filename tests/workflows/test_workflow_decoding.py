"""The decoding workflow on the simulated dataset, where the truth is known.

The paper's finding must hold: z (image latent) decodes better from the early ROI than from the
ventral one, and c (caption embedding) better from the ventral ROI than from the early one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nipype_brainrecon.bids import collect_participant
from nipype_brainrecon.diffusion.models import demo_model_path, native_resolution
from nipype_brainrecon.ridge import load_decoder
from nipype_brainrecon.rois import roi_voxel_count
from nipype_brainrecon.synthetic.simulate import simulate_dataset
from nipype_brainrecon.workflows.decoding import init_decoding_wf

RES = native_resolution(demo_model_path())  # the shipped demo model's own image size


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


#: Test images of the decoding fixture: identification is asserted on >= 100 (issue 22).
N_TEST = 100


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """The decoding workflow with the paper's ROIs and swapped, as the seeds benchmark runs it."""
    from benchmarks.bench_seeds import run_paper_and_swapped

    base = tmp_path_factory.mktemp("decoding")
    simulate_dataset(base / "sim", n_subjects=1, seed=3, n_test=N_TEST)
    model = demo_model_path()
    participant = collect_participant(base / "sim", "01")
    paper, other = run_paper_and_swapped(participant, model, RES, base, metadata={"seed": 3})
    return paper, other, participant, model


def test_paper_finding_on_simulation(decoded):
    """Where the information lives, each latent is identified above its permutation null's
    95th percentile (p < 0.05, the decoders' own ``identification_null_p95``; this replaced
    fixed levels, 0.65 and 0.8, chosen from one measured value), and the dissociation points
    the paper's way. One seed at 100 test images on the default (realistic) simulation, both
    set by issue 22 before this ran (it was 20 images with realism off); the claim with
    p-values over pre-registered seeds 1-5 is ``benchmarks/bench_seeds.py`` (docs/evaluation.md,
    "Scores over seeds and the null simulation")."""
    paper, swapped = decoded[:2]
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
    # Above the null where the information lives (p < 0.05 from the permutation null).
    for s in (z_early, c_ventral):
        assert s["identification"] > s["identification_null_p95"]
        assert s["identification_p_value"] < 0.05


def test_decoder_files_and_provenance(decoded):
    paper = decoded[0]
    fit = _outputs(paper, "fit_z")
    sidecar = json.loads(open(fit.sidecar_file).read())
    decoder = load_decoder(fit.decoder_file)
    assert decoder.n_voxels == roi_voxel_count(_outputs(paper, "roi_z").roi_file) == 190
    side = RES // 8
    assert tuple(decoder.target_shape) == (4, side, side)
    assert sum(fit.alpha_counts.values()) == 4 * side * side
    text = json.dumps(sidecar)
    assert "early" in text and '"seed": 3' in text
    split = _outputs(paper, "split_z").split_info
    assert split["TestSetRule"] == "repeats"
    assert split["NumberOfTestStimuli"] == N_TEST and split["TestRepeatsMin"] == 3
    predicted = np.load(_outputs(paper, "predict_z").predicted_file)
    assert predicted.shape == (N_TEST, 4, side, side)


def test_default_alpha_grid_decodes_at_least_as_well_as_papers(decoded):
    """On standardised voxels the paper's grid (1e-6..1) is nearly unregularised."""
    import pandas as pd

    from nipype_brainrecon.evaluation.metrics import decoding_scores
    from nipype_brainrecon.ridge import fit_ridge_cv

    paper = decoded[0]
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


@pytest.fixture(scope="module")
def reconstructed(decoded, tmp_path_factory):
    """Reconstructions of the 100 test stimuli from decoded z and c in the three modes, one
    sample each (was 2 samples of 20 images; issue 22 asks for >= 100 where identification is
    asserted, and 4 passes x 100 images x 2 samples would double the CI's cost)."""
    from nipype_brainrecon.workflows.reconstruction import init_reconstruction_wf

    paper, _, participant, model = decoded
    outputs = {}
    base = tmp_path_factory.mktemp("recon")
    for mode in ("z+c", "z", "c"):
        wf = init_reconstruction_wf(
            mode=mode,
            n_samples=1,
            n_chunks=2,
            shuffled_baseline=mode == "z+c",
            name=f"recon_{mode.replace('+', '')}_wf",
        )
        wf.base_dir = str(base)
        inputs = wf.inputs.inputnode
        inputs.z_file = _outputs(paper, "predict_z").predicted_file
        inputs.c_file = _outputs(paper, "predict_c").predicted_file
        inputs.stimuli_file = _outputs(paper, "split_z").test_stimuli_file
        inputs.model = str(model)
        outputs[mode] = wf.run()
    return outputs


def _metrics(decoded, reconstructed, mode, extractors=("pixels", "lowlevel")):
    import pandas as pd

    from nipype_brainrecon.evaluation import evaluate, load_images

    paper, _, participant, _ = decoded
    result = reconstructed[mode]
    images = np.load(_outputs(result, "concatenate").images_file)
    ids = pd.read_csv(_outputs(result, "concatenate").stimuli_file, sep="\t", dtype=str)
    files = {p.stem: p for p in participant.stim_files}
    originals = load_images([files[s] for s in ids["stim_id"]], size=images.shape[2:4])
    train = pd.read_csv(_outputs(paper, "split_z").train_stimuli_file, sep="\t", dtype=str)
    mean_image = load_images(
        [files[s] for s in sorted(set(train["stim_id"]))], size=images.shape[2:4]
    )
    baselines = {"mean training image": mean_image.mean(axis=0).round().astype(np.uint8)}
    if mode == "z+c":
        baselines["shuffled latents"] = np.load(
            _outputs(result, "reconstruct_shuffled").images_file
        )
    return evaluate(
        originals, images, extractors=extractors, size=images.shape[2], baselines=baselines
    )


def test_reconstruction_from_decoded_features(decoded, reconstructed):
    """Reconstructions from the decoded z and c are identified above their permutation null's
    95th percentile (p < 0.05; this replaced fixed margins over chance, 0.1 and 0, chosen on
    this seed) and above the trivial baselines. The rows asserted are those above their null on
    every one of the pre-registered seeds 1-5 of the default simulation
    (benchmarks/results/seeds_reconstruction_default.md): LowLevel(colour) and PixCorr.
    Pixels 2-way held on 3-4 of 5 seeds there, so it is printed, no longer asserted (issue 22:
    the claim is lowered). PixCorr is not claimed above the mean training image (0.184 against
    0.192 when the null check was added): a blurred average matches pixels about as well."""
    table = _metrics(decoded, reconstructed, "z+c")
    print(table.to_string())
    for metric in ("LowLevel(colour) 2-way (takagi)", "PixCorr"):
        row = table.loc[metric]
        assert row["value"] > row["null_p95"] and row["p_value"] < 0.05
    row = table.loc["LowLevel(colour) 2-way (takagi)"]
    assert row["value"] > row["baseline: shuffled latents"]
    assert row["value"] > row["baseline: mean training image"]


def test_ablation_z_only_beats_c_only_on_fidelity(decoded, reconstructed):
    """The paper's ablation: z only beats c only on low-level fidelity."""
    z_only = _metrics(decoded, reconstructed, "z")
    c_only = _metrics(decoded, reconstructed, "c")
    for metric in ("PixCorr", "SSIM"):
        print(
            f"{metric}: z only {z_only.loc[metric, 'value']:.3f}, c only "
            f"{c_only.loc[metric, 'value']:.3f}"
        )
        assert z_only.loc[metric, "value"] > c_only.loc[metric, "value"]


def test_ablation_c_only_keeps_semantic_content(decoded, reconstructed):
    """The paper's ablation: c only stays above chance, and above the mean training image, on
    the semantic metric: which object colours and background the images show (what the
    captions name). The RGB histogram of LowLevel(colour) is a low-level feature: dominated by
    the background's exact shade, it scored c-only images below chance even from the true c.
    The level is the permutation null's 95th percentile (p < 0.05); it replaced "chance +
    0.05", which lay below that null on this seed (issue 22)."""
    c_only = _metrics(decoded, reconstructed, "c", extractors=("pixels", "lowlevel", "scene"))
    both = _metrics(decoded, reconstructed, "z+c", extractors=("scene",))
    for rule in ("takagi", "mindeye"):
        semantic = c_only.loc[f"Scene(colours) 2-way ({rule})"]
        print(
            f"c only, scene colours 2-way ({rule}) {semantic['value']:.3f} (chance "
            f"{semantic['chance']}, mean training image {semantic['baseline: mean training image']:.3f}); "
            f"z+c {both.loc[f'Scene(colours) 2-way ({rule})', 'value']:.3f}"
        )
        assert semantic["value"] > semantic["null_p95"] and semantic["p_value"] < 0.05
        assert semantic["value"] > semantic["baseline: mean training image"]
