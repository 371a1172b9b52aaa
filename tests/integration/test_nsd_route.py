"""NSD's whole route: the release layout -> ``brainrecon-nsd`` -> ``brainrecon --betas`` -> report.

The miniature NSD of ``tests/datasets/nsd_fixture.py`` (the release's formats, 2 sessions, 60
trials of 24 images, 6 of them shared) is converted by the ``brainrecon-nsd`` command, then the
BIDS App runs on the converted dataset with the streams atlas as ROIs, the shared images as the
test set (``--test-set column:split``) and the shipped demo model; the whole route runs twice,
in two folders with the same relative command lines, so everything it writes (reports, methods
text and sidecars included; only the timestamped run logs excepted) must be byte-identical.
The reconstructions are not expected to resemble the random miniature images (the demo model and
54 training trials); what is checked is the route: the NSD ids reach the outputs, the test set is
exactly the shared images, and a rerun is byte-identical.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import is_run_log, tree_digest

from nipype_brainrecon.bids_app.cli import main as brainrecon
from nipype_brainrecon.datasets.nsd.cli import main as brainrecon_nsd

sys.path.insert(0, str(Path(__file__).parents[1] / "datasets"))
from nsd_fixture import build_mini_nsd  # noqa: E402

pytestmark = pytest.mark.slow

ANAT = "sub-01/anat/sub-01_space-func1pt8mm_desc-streams_dseg"
SAMPLES = 2


def _participant(converted: str, out: str, work: str) -> int:
    return brainrecon([
        converted, out, "participant", "--participant-label", "01",
        "--betas", converted,
        "--roi-dseg", f"{converted}/{ANAT}.nii.gz",
        "--roi-labels", f"{converted}/{ANAT}.tsv",
        "--test-set", "column:split", "--model", "demo", "--samples", str(SAMPLES),
        "--skip-bids-validation", "-w", work,
    ])  # fmt: skip


def _outputs(out: Path) -> dict[str, str]:
    """Every output file but the run logs, which are named and stamped by their start time."""
    return {k: v for k, v in tree_digest(out).items() if not is_run_log(k)}


@pytest.fixture(scope="module")
def route(tmp_path_factory):
    """Two whole routes in two folders with the same relative command lines (so the recorded
    commands agree): each converts the miniature NSD and runs the participant level."""
    base = tmp_path_factory.mktemp("nsd-route")
    truth = build_mini_nsd(base / "nsd")
    runs, before = [], None
    cwd = os.getcwd()
    try:
        for k in (1, 2):
            folder = base / f"lab{k}"
            folder.mkdir()
            os.chdir(folder)
            assert brainrecon_nsd([str(base / "nsd"), "nsd-bids", "--subject", "1"]) == 0
            before = tree_digest(folder / "nsd-bids")
            assert _participant("nsd-bids", "out", "work") == 0
            runs.append(folder)
        digests = [_outputs(folder / "out") for folder in runs]  # before the group level
        assert brainrecon(["nsd-bids", "out", "group"]) == 0  # in lab2
    finally:
        os.chdir(cwd)
    outs = [folder / "out" for folder in runs]
    return truth, [folder / "nsd-bids" for folder in runs], before, outs, digests


def test_test_set_is_exactly_the_shared_images(route):
    truth, _, _, outs, _ = route
    stimuli = pd.read_csv(outs[0] / "sub-01/decoding/sub-01_stimuli.tsv", sep="\t")
    assert sorted(stimuli["stim_id"].astype(int)) == sorted(truth.shared_ids.tolist())
    # Every shared image is shown 3 times in the fixture's design: the repeats are averaged.
    assert set(stimuli["repeats"]) == {3}


def test_reconstructions_are_named_by_the_73k_ids(route):
    truth, _, _, outs, _ = route
    recon = sorted(p.name for p in (outs[0] / "sub-01/recon").glob("*_recon.png"))
    expected = sorted(
        f"sub-01_stim-{sid}_sample-{s}_recon.png"
        for sid in truth.shared_ids
        for s in range(SAMPLES)
    )
    assert recon == expected


def test_betas_and_trials_reach_the_outputs_unchanged(route):
    truth, _, _, outs, _ = route
    tables = sorted((outs[0] / "sub-01/func").glob("*_desc-precomputed_trials.tsv"))
    assert [t.name[:13] for t in tables] == ["sub-01_ses-01", "sub-01_ses-02"]
    trials = pd.concat([pd.read_csv(t, sep="\t") for t in tables], ignore_index=True)
    assert trials["stim_id"].tolist() == truth.stim73k.tolist()
    assert trials["session"].tolist() == truth.session.tolist()
    assert trials["repetition"].tolist() == truth.repetition.tolist()


def test_reports_are_written(route):
    truth, _, _, outs, _ = route
    report = (outs[0] / "sub-01.html").read_text()
    for sid in truth.shared_ids:
        assert f"stim-{sid}" in report
    assert (outs[1] / "group.html").exists()
    metrics = pd.read_csv(outs[0] / "sub-01/sub-01_desc-reconstruction_metrics.tsv", sep="\t")
    assert {"chance", "null_p95", "p_value"} <= set(metrics.columns)
    # Each test image's scores: one row per shared image, a column per metric of the table.
    per_image = pd.read_csv(outs[0] / "sub-01/recon/sub-01_desc-perimage_metrics.tsv", sep="\t")
    assert sorted(per_image["stim_id"]) == sorted(truth.shared_ids.tolist())
    assert "PixCorr" in per_image.columns and 'id="per-image"' in report


def test_rerun_is_byte_identical_and_the_input_untouched(route):
    _, converted, before, _, (first, second) = route
    assert tree_digest(converted[0]) == tree_digest(converted[1])  # the converter's rerun
    assert tree_digest(converted[1]) == before  # the BIDS App wrote nothing into its input
    assert len(first) > 30 and "sub-01.html" in first and "logs/CITATION.md" in first
    assert first == second
