"""ROI masks from segmentations, atlases and binary masks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nipype_brainrecon.errors import DataError, MissingInputError, UsageError
from nipype_brainrecon.rois import (
    extract_roi_data,
    read_label_table,
    roi_from_atlas,
    roi_from_dseg,
    roi_from_masks,
    roi_voxel_count,
)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


@pytest.fixture
def seg_img():
    data = np.zeros((8, 8, 4), dtype=np.int16)
    data[:4, :, :2] = 1  # early: 4*8*2 = 64 voxels
    data[4:, :4, 2:] = 2  # ventral: 4*4*2 = 32 voxels
    return nib.Nifti1Image(data, AFFINE)


@pytest.fixture
def label_tsv(tmp_path):
    path = tmp_path / "desc-visual_dseg.tsv"
    pd.DataFrame({"index": [1, 2], "name": ["early", "ventral"]}).to_csv(
        path, sep="\t", index=False
    )
    return path


def test_dseg_roi_counts_and_union(seg_img, label_tsv):
    assert read_label_table(label_tsv) == {"early": 1, "ventral": 2}
    assert roi_voxel_count(roi_from_dseg(seg_img, label_tsv, "early")) == 64
    assert roi_voxel_count(roi_from_dseg(seg_img, label_tsv, "ventral")) == 32
    assert roi_voxel_count(roi_from_dseg(seg_img, label_tsv, ["early", "ventral"])) == 96


def test_dseg_resampled_to_finer_reference(seg_img, label_tsv):
    # A 1 mm reference over the same field of view: each 2 mm voxel becomes 8 voxels.
    shifted = np.eye(4)
    shifted[:3, 3] = -0.5  # voxel centres of the fine grid inside the coarse voxels
    ref = nib.Nifti1Image(np.zeros((16, 16, 8), np.float32), shifted)
    interior = np.zeros((8, 8, 4), np.int16)
    interior[2:5, 2:4, 1:3] = 2  # away from the edges, where the fine grid overhangs
    roi = roi_from_dseg(nib.Nifti1Image(interior, AFFINE), label_tsv, "ventral", reference=ref)
    assert roi.shape == (16, 16, 8)
    assert roi_voxel_count(roi) == 12 * 8


def test_brain_mask_intersection_warns_and_counts(seg_img, label_tsv):
    brain = np.zeros((8, 8, 4), np.uint8)
    brain[:2] = 1
    with pytest.warns(UserWarning, match="outside the brain mask"):
        roi = roi_from_dseg(seg_img, label_tsv, "early", brain_mask=nib.Nifti1Image(brain, AFFINE))
    assert roi_voxel_count(roi) == 2 * 8 * 2


def test_roi_errors(seg_img, label_tsv, tmp_path):
    with pytest.raises(UsageError, match="no region named"):
        roi_from_dseg(seg_img, label_tsv, "parietal")
    empty = nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), AFFINE)
    with pytest.raises(DataError, match="empty"):
        roi_from_dseg(empty, label_tsv, "early")
    brain = nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), AFFINE)
    with pytest.raises(DataError, match="inside the brain mask"):
        roi_from_dseg(seg_img, label_tsv, "early", brain_mask=brain)
    with pytest.raises(MissingInputError, match="label table not found"):
        read_label_table(tmp_path / "nope.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tlabel\n1\tearly\n")
    with pytest.raises(DataError, match="lacks column"):
        read_label_table(bad)
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="corrupt.nii.gz"):
        roi_from_dseg(corrupt, label_tsv, "early")
    far = nib.Nifti1Image(
        np.zeros((8, 8, 4), np.float32),
        np.diag([2, 2, 2, 1.0])
        + np.array([[0, 0, 0, 500], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    )
    with pytest.raises(DataError, match="does not overlap"):
        roi_from_dseg(seg_img, label_tsv, "early", reference=far)


def test_atlas_probabilistic_and_masks(tmp_path):
    prob = np.zeros((6, 6, 3, 2), np.float32)
    prob[:3, ..., 0] = 0.9
    prob[:3, :3, :, 0] = 0.3  # below threshold
    prob[3:, ..., 1] = 0.6
    atlas = nib.Nifti1Image(prob, AFFINE)
    assert roi_voxel_count(roi_from_atlas(atlas, index=0)) == 3 * 6 * 3 - 3 * 3 * 3
    assert roi_voxel_count(roi_from_atlas(atlas, index=1)) == 3 * 6 * 3
    with pytest.raises(DataError, match="empty"):
        roi_from_atlas(atlas, index=1, threshold=0.7)
    with pytest.raises(UsageError, match="map index"):
        roi_from_atlas(atlas)
    a = np.zeros((6, 6, 3), np.uint8)
    a[0] = 1
    b = np.zeros((6, 6, 3), np.uint8)
    b[0, 0] = 1
    b[5] = 1
    union = roi_from_masks([nib.Nifti1Image(a, AFFINE), nib.Nifti1Image(b, AFFINE)])
    assert roi_voxel_count(union) == 18 + 18


def test_extract_roi_data_matches_indexing(seg_img, label_tsv):
    rng = np.random.default_rng(0)
    betas = rng.standard_normal((8, 8, 4, 5)).astype(np.float32)
    roi = roi_from_dseg(seg_img, label_tsv, "ventral")
    x = extract_roi_data(nib.Nifti1Image(betas, AFFINE), roi)
    sel = np.asarray(seg_img.dataobj) == 2
    assert x.shape == (5, 32)
    np.testing.assert_array_equal(x, betas[sel].T)
    with pytest.raises(DataError, match="4D"):
        extract_roi_data(nib.Nifti1Image(betas[..., 0], AFFINE), roi)
    with pytest.raises(DataError, match="grid differs"):
        extract_roi_data(nib.Nifti1Image(betas, AFFINE * 2), roi)
