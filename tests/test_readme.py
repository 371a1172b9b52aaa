"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def precomputed(tmp_path_factory):
    """The inputs the example names, from a small simulated dataset: betas estimated per run
    (their trials tables keep stim_file only), the ROI segmentation, the demo model."""
    from nipype_brainrecon.bids import collect_participant
    from nipype_brainrecon.diffusion.models import demo_model_path
    from nipype_brainrecon.glm import estimate_single_trial_betas, save_betas
    from nipype_brainrecon.synthetic.simulate import simulate_dataset

    base = tmp_path_factory.mktemp("readme")
    # 100 test images: the example's identification is asserted (issue 22: >= 100)
    bids_dir = simulate_dataset(base / "sim", n_subjects=1, n_runs=2, seed=5, n_test=100)
    participant = collect_participant(bids_dir, "01")
    betas_files, trials_files = [], []
    for k, run in enumerate(participant.runs, start=1):
        img, table = estimate_single_trial_betas(
            run.bold, run.events_file, run.confounds, run.mask, run=k
        )
        betas, trials = save_betas(
            img,
            table.drop(columns=["stim_id"]),
            base / f"run-{k}_betas.nii.gz",
            base / f"run-{k}_trials.tsv",
        )
        betas_files.append(str(betas))
        trials_files.append(str(trials))
    return {
        "betas_files": betas_files,
        "trials_files": trials_files,
        "dseg_file": str(participant.roi_dseg),
        "labels_file": str(participant.roi_labels_file),
        "bids_dir": str(bids_dir),
        "model": str(demo_model_path()),
        "work_dir": str(base / "work"),
    }


@pytest.mark.slow  # about a minute on 2 cores: decoding and reconstruction run
def test_composing_example_runs_on_simulated_betas(precomputed):
    import numpy as np
    import pandas as pd

    blocks = _python_blocks()
    assert blocks, "README has no python example"
    namespace: dict = dict(precomputed)
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    wf = namespace["wf"]
    names = wf.list_node_names()
    assert "decoding_wf.fit_z" in names and "reconstruction_wf.reconstruct" in names
    assert namespace["decoding"].get_node("roi_z").inputs.roi_names == ["early"]
    nodes = {f"{n._hierarchy.split('.')[-1]}.{n.name}": n for n in namespace["result"].nodes()}
    # Decoders and predictions exist and decode the held-out stimuli above chance.
    for target in ("z", "c"):
        scores = nodes[f"decoding_wf.predict_{target}"].result.outputs.scores
        assert scores["identification"] > scores["identification_null_p95"] > 0.5
        assert Path(nodes[f"decoding_wf.fit_{target}"].result.outputs.decoder_file).is_file()
    # resolution=None: z at the demo model's own size, whose VAE has 3 downsamplings.
    from nipype_brainrecon.diffusion.models import native_resolution

    info = nodes["decoding_wf.features"].result.outputs.model_info
    side = native_resolution(precomputed["model"]) // 8
    assert info["resolution"] == native_resolution(precomputed["model"])
    assert info["z_shape"] == [4, side, side]
    test_ids = pd.read_csv(nodes["decoding_wf.split_z"].result.outputs.test_stimuli_file, sep="\t")[
        "stim_id"
    ]
    predicted = np.load(nodes["decoding_wf.predict_z"].result.outputs.predicted_file)
    assert predicted.shape == (len(test_ids), 4, side, side)
    images = [n for k, n in nodes.items() if k.startswith("reconstruction_wf.")]
    assert images, "the reconstruction ran"


def test_readme_has_exactly_two_setup_commands():
    section = README.read_text().split("## Set up", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make \w+", section, flags=re.M)
    assert commands == ["make demo", "make test"]
