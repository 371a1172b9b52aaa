"""RoiMask and ExtractRoiData interfaces on tiny NIfTIs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nipype_brainrecon.interfaces.rois import ExtractRoiData, RoiMask

AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


@pytest.fixture
def run_files(tmp_path):
    seg = np.zeros((6, 6, 4), np.int16)
    seg[:3, :, :2] = 1
    seg[3:, :2, 2:] = 2
    nib.Nifti1Image(seg, AFFINE).to_filename(tmp_path / "dseg.nii.gz")
    pd.DataFrame({"index": [1, 2], "name": ["early", "ventral"]}).to_csv(
        tmp_path / "dseg.tsv", sep="\t", index=False
    )
    rng = np.random.default_rng(0)
    runs = []
    for run, n in ((1, 4), (2, 3)):
        betas = rng.standard_normal((6, 6, 4, n)).astype(np.float32)
        nib.Nifti1Image(betas, AFFINE).to_filename(tmp_path / f"run{run}_betas.nii.gz")
        pd.DataFrame({"run": run, "stim_id": [f"s{run}{k}" for k in range(n)]}).to_csv(
            tmp_path / f"run{run}_trials.tsv", sep="\t", index=False
        )
        runs.append(betas)
    return tmp_path, seg, runs


def test_roi_mask_and_extraction(run_files, tmp_path):
    base, seg, runs = run_files
    work = tmp_path / "work"
    work.mkdir()
    roi = RoiMask(
        dseg_file=str(base / "dseg.nii.gz"),
        labels_file=str(base / "dseg.tsv"),
        roi_names=["ventral"],
        reference_file=str(base / "run1_betas.nii.gz"),
        roi_label="ventral",
    ).run(cwd=str(work))
    assert roi.outputs.n_voxels == 3 * 2 * 2
    res = ExtractRoiData(
        betas_files=[str(base / "run1_betas.nii.gz"), str(base / "run2_betas.nii.gz")],
        trials_files=[str(base / "run1_trials.tsv"), str(base / "run2_trials.tsv")],
        roi_file=roi.outputs.roi_file,
    ).run(cwd=str(work))
    data = np.load(res.outputs.data_file)
    sel = seg == 2
    expected = np.concatenate([runs[0][sel].T, runs[1][sel].T])
    np.testing.assert_array_equal(data, expected)
    trials = pd.read_csv(res.outputs.trials_file, sep="\t")
    assert trials["stim_id"].tolist() == ["s10", "s11", "s12", "s13", "s20", "s21", "s22"]


def test_roi_mask_needs_one_source(run_files, tmp_path):
    base, _, _ = run_files
    with pytest.raises(ValueError, match="exactly one"):
        RoiMask(reference_file=str(base / "run1_betas.nii.gz")).run(cwd=str(tmp_path))
