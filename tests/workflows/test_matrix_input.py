"""Betas as plain trials × voxels matrices (.npy, .tsv) with ROIs as lists of their columns.

The same betas given as 4D NIfTI runs with an equivalent dseg must give the same ROI data and
the same decoder, coefficient for coefficient; bad matrices and ROI lists are named in one line.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nipype_brainrecon.errors import DataError, UsageError
from nipype_brainrecon.interfaces.decoding import ExtractRoiColumns, FitDecoder, SplitTrials
from nipype_brainrecon.interfaces.rois import ExtractRoiData, RoiMask
from nipype_brainrecon.ridge import load_decoder
from nipype_brainrecon.rois import load_betas_matrix, read_voxel_rois
from nipype_brainrecon.workflows.decoding import init_decoding_wf

SHAPE = (3, 4, 5)  # 60 voxels
N_RUNS, N_TRIALS = 3, 20


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three runs of betas with signal in the 'early' voxels, as NIfTI and as matrices."""
    root = tmp_path_factory.mktemp("matrix")
    rng = np.random.default_rng(7)
    dseg = rng.integers(0, 3, SHAPE).astype(np.int16)  # 0 background, 1 early, 2 ventral
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.Nifti1Image(dseg, affine).to_filename(root / "dseg.nii.gz")
    pd.DataFrame({"index": [1, 2], "name": ["early", "ventral"]}).to_csv(
        root / "dseg.tsv", sep="\t", index=False
    )
    flat = dseg.ravel()  # C order: the columns of the matrices
    rois = {
        "early": np.flatnonzero(flat == 1).tolist(),
        "ventral": np.flatnonzero(flat == 2).tolist(),
    }
    (root / "rois.json").write_text(json.dumps(rois))
    n_stim = 30
    features = rng.standard_normal((n_stim, 4)).astype(np.float32)
    weights = rng.standard_normal((4, flat.size))
    nifti, matrices, trials = [], [], []
    for run in range(N_RUNS):
        # 8 training stimuli per run, 'test' stimuli 24..29 shown in every run (repeats).
        stim = np.r_[np.arange(8 * run, 8 * run + 8), np.arange(24, 30), np.arange(24, 30)]
        stim = stim[rng.permutation(stim.size)]
        rows = (features[stim] @ weights + rng.standard_normal((N_TRIALS, flat.size))).astype(
            np.float32
        )
        volume = rows.T.reshape(*SHAPE, N_TRIALS)  # voxel j of a row = flat C index j
        nib.Nifti1Image(volume, affine).to_filename(root / f"run{run}_betas.nii.gz")
        nifti.append(str(root / f"run{run}_betas.nii.gz"))
        if run == 1:
            header = "\t".join(f"v{j}" for j in range(flat.size))
            np.savetxt(root / "run1_betas.tsv", rows, fmt="%.9g", delimiter="\t", header=header,
                       comments="")  # fmt: skip
            matrices.append(str(root / "run1_betas.tsv"))
        else:
            np.save(root / f"run{run}_betas.npy", rows)
            matrices.append(str(root / f"run{run}_betas.npy"))
        pd.DataFrame({"run": run + 1, "stim_file": [f"img{s:02d}.png" for s in stim]}).to_csv(
            root / f"run{run}_trials.tsv", sep="\t", index=False
        )
        trials.append(str(root / f"run{run}_trials.tsv"))
    np.save(root / "z.npy", features)
    pd.DataFrame({"stim_id": [f"img{s:02d}" for s in range(n_stim)]}).to_csv(
        root / "z_stimuli.tsv", sep="\t", index=False
    )
    return root, nifti, matrices, trials


def _decode(root, extract, trials, name):
    """SplitTrials and FitDecoder on an extraction's output (as the workflow connects them)."""
    work = root / name
    work.mkdir()
    split = SplitTrials(
        data_file=extract.data_file, trials_file=extract.trials_file, source_trials_files=trials
    ).run(cwd=str(work))
    fit = FitDecoder(
        train_data_file=split.outputs.train_data_file,
        train_stimuli_file=split.outputs.train_stimuli_file,
        train_groups_file=split.outputs.train_groups_file,
        features_file=str(root / "z.npy"),
        features_stimuli_file=str(root / "z_stimuli.tsv"),
        target_label="z",
        roi_label="early",
        backend="numpy",
    ).run(cwd=str(work))
    return load_decoder(fit.outputs.decoder_file), fit.outputs


def test_matrix_input_gives_the_nifti_decoder(data):
    root, nifti, matrices, trials = data
    (root / "nifti").mkdir()
    roi = RoiMask(
        dseg_file=str(root / "dseg.nii.gz"),
        labels_file=str(root / "dseg.tsv"),
        roi_names=["early"],
        reference_file=nifti[0],
    ).run(cwd=str(root / "nifti"))
    from_nifti = ExtractRoiData(
        betas_files=nifti, trials_files=trials, roi_file=roi.outputs.roi_file
    ).run(cwd=str(root / "nifti"))
    (root / "matrix").mkdir()
    from_matrix = ExtractRoiColumns(
        betas_files=matrices,
        trials_files=trials,
        roi_indices_file=str(root / "rois.json"),
        roi_names=["early"],
    ).run(cwd=str(root / "matrix"))
    n_early = int((nib.load(root / "dseg.nii.gz").get_fdata() == 1).sum())
    assert from_matrix.outputs.n_voxels == from_nifti.outputs.n_voxels == n_early
    a = np.load(from_nifti.outputs.data_file)
    b = np.load(from_matrix.outputs.data_file)
    assert a.shape == (N_RUNS * N_TRIALS, n_early) and np.array_equal(a, b)

    nifti_decoder, nifti_out = _decode(root, from_nifti.outputs, trials, "fit_nifti")
    matrix_decoder, matrix_out = _decode(root, from_matrix.outputs, trials, "fit_matrix")
    assert matrix_out.cv_folds == nifti_out.cv_folds == "leave-runs-out: 3 folds of 3 runs"
    for name in ("coef", "intercept", "alphas", "cv_scores", "mean", "scale"):
        assert np.array_equal(getattr(matrix_decoder, name), getattr(nifti_decoder, name)), name
    assert matrix_decoder.cv_scores.mean() > -0.9  # the decoder learnt something (variance 1)


def test_tsv_roi_list_equals_json(data, tmp_path):
    root = data[0]
    rois = read_voxel_rois(root / "rois.json")
    pd.DataFrame(
        [(name, int(c)) for name, cols in rois.items() for c in cols[::-1]],
        columns=["roi", "column"],
    ).to_csv(tmp_path / "rois.tsv", sep="\t", index=False)
    again = read_voxel_rois(tmp_path / "rois.tsv")
    assert again.keys() == rois.keys()
    assert all(np.array_equal(again[k], rois[k]) for k in rois)


def _extract(betas, trials, rois, tmp_path, names=("early",)):
    return ExtractRoiColumns(
        betas_files=betas, trials_files=trials, roi_indices_file=str(rois), roi_names=list(names)
    ).run(cwd=str(tmp_path))


def _one_line(exc_info):
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_bad_inputs_are_named_in_one_line(data, tmp_path):
    root, _, matrices, trials = data
    (tmp_path / "far.json").write_text(json.dumps({"early": [0, 60]}))
    with pytest.raises(DataError) as exc:
        _extract(matrices, trials, tmp_path / "far.json", tmp_path)
    assert _one_line(exc).startswith(f"{tmp_path / 'far.json'}: ROI ['early'] lists column 60")
    assert "60 voxel columns (0..59)" in str(exc.value)

    with pytest.raises(DataError) as exc:  # run 0's betas with run 1's table less its last row
        pd.read_csv(trials[1], sep="\t").iloc[:-1].to_csv(tmp_path / "short.tsv", sep="\t")
        _extract(matrices[:1], [str(tmp_path / "short.tsv")], root / "rois.json", tmp_path)
    assert _one_line(exc) == (
        f"{tmp_path / 'short.tsv'}: 19 trials but 20 rows in {matrices[0]}; give one row per "
        "trial, in the trials' order"
    )

    np.save(tmp_path / "narrow.npy", np.ones((N_TRIALS, 59), np.float32))
    with pytest.raises(DataError) as exc:
        _extract([matrices[0], str(tmp_path / "narrow.npy")], trials[:2], root / "rois.json",
                 tmp_path)  # fmt: skip
    assert _one_line(exc).startswith(f"{tmp_path / 'narrow.npy'}: 59 voxel columns but")

    np.save(tmp_path / "cube.npy", np.ones((2, 3, 4), np.float32))
    with pytest.raises(DataError, match=r"cube\.npy: a betas matrix must be numeric and 2D"):
        load_betas_matrix(tmp_path / "cube.npy")
    (tmp_path / "words.tsv").write_text("a\tb\n1\tx\n")
    with pytest.raises(DataError, match=r"words\.tsv: cannot read the betas matrix"):
        load_betas_matrix(tmp_path / "words.tsv")
    (tmp_path / "neg.json").write_text(json.dumps({"early": [-1, 2]}))
    with pytest.raises(DataError, match=r"neg\.json: ROI 'early' has indices that are not"):
        read_voxel_rois(tmp_path / "neg.json")
    with pytest.raises(UsageError, match=r"rois\.json: no ROI named \['V9'\]"):
        _extract(matrices, trials, root / "rois.json", tmp_path, names=["V9"])


def test_workflow_matrix_route():
    wf = init_decoding_wf(precomputed_betas=True, betas_format="matrix", c_roi=["a", "b"])
    assert wf.get_node("extract_c").inputs.roi_names == ["a", "b"]
    assert not {"roi_z", "roi_c"} & set(wf.list_node_names())
    with pytest.raises(UsageError, match="needs precomputed_betas=True"):
        init_decoding_wf(betas_format="matrix")
    with pytest.raises(UsageError, match="betas_format='mgz'"):
        init_decoding_wf(precomputed_betas=True, betas_format="mgz")
