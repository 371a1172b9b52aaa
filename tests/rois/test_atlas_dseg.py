"""atlas_to_dseg: an atlas (e.g. in MNI space, 2 mm) as a dseg + labels table on the BOLD grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nipype_brainrecon.errors import DataError
from nipype_brainrecon.rois import atlas_to_dseg, roi_from_dseg

ATLAS_AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
ATLAS_AFFINE[:3, 3] = [-30.0, -30.0, -30.0]
# 3 mm, shifted so that no BOLD voxel centre falls half-way between two atlas voxels.
BOLD_AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
BOLD_AFFINE[:3, 3] = [-26.6, -25.3, -24.1]


def _atlas() -> nib.Nifti1Image:
    rng = np.random.default_rng(0)
    data = np.zeros((30, 30, 30), dtype=np.int16)
    # Blocks of regions 1..6 (index 4 left out), with a random speckle so edges are irregular.
    for k, index in enumerate((1, 2, 3, 5, 6, 7)):
        data[3 + 4 * k : 7 + 4 * k, 4:26, 5:25] = index
    speckle = rng.random(data.shape) < 0.05
    data[speckle & (data > 0)] = 0
    return nib.Nifti1Image(data, ATLAS_AFFINE)


def _bold(n_vols: int = 3) -> nib.Nifti1Image:
    return nib.Nifti1Image(np.ones((17, 18, 19, n_vols), dtype=np.float32), BOLD_AFFINE)


def _nearest_by_hand(atlas: nib.Nifti1Image, reference: nib.Nifti1Image) -> np.ndarray:
    """The atlas index at every reference voxel centre (nearest atlas voxel; 0 outside)."""
    ijk = np.stack(np.meshgrid(*map(np.arange, reference.shape[:3]), indexing="ij"), -1)
    world = ijk @ reference.affine[:3, :3].T + reference.affine[:3, 3]
    vox = (world - atlas.affine[:3, 3]) @ np.linalg.inv(atlas.affine[:3, :3]).T
    idx = np.rint(vox).astype(int)
    data = np.asanyarray(atlas.dataobj)
    inside = np.all((idx >= 0) & (idx < np.array(data.shape)), axis=-1)
    out = np.zeros(reference.shape[:3], dtype=np.int64)
    out[inside] = data[tuple(idx[inside].T)]
    return out


def test_grouped_regions_match_nearest_neighbour_on_the_bold_grid():
    atlas, bold = _atlas(), _bold()
    groups = {"early": [1, 2, 3], "ventral": [6, 7]}
    dseg, table = atlas_to_dseg(atlas, groups, bold)

    assert dseg.shape == bold.shape[:3]
    np.testing.assert_allclose(dseg.affine, bold.affine)
    assert np.issubdtype(dseg.get_data_dtype(), np.integer)
    pd.testing.assert_frame_equal(table, pd.DataFrame({"index": [1, 2], "name": groups.keys()}))

    truth = _nearest_by_hand(atlas, bold)
    expected = np.where(np.isin(truth, [1, 2, 3]), 1, np.where(np.isin(truth, [6, 7]), 2, 0))
    got = np.asanyarray(dseg.dataobj)
    np.testing.assert_array_equal(got, expected)
    assert set(np.unique(got)) == {0, 1, 2}
    # Index 5 is in no group: its voxels are background, as are voxels outside the atlas.
    assert (got[truth == 5] == 0).all() and (truth == 5).any()
    # The pipeline reads the result as it reads the simulator's dseg.
    early = roi_from_dseg(dseg, dict(zip(table["name"], table["index"], strict=True)), "early")
    assert int(np.asanyarray(early.dataobj).sum()) == int(np.isin(truth, [1, 2, 3]).sum())


def test_label_table_keeps_every_region(tmp_path):
    atlas, bold = _atlas(), _bold(1)
    labels = tmp_path / "atlas_dseg.tsv"
    pd.DataFrame({"index": [1, 2, 3, 5, 6, 7], "name": list("abcdef")}).to_csv(
        labels, sep="\t", index=False
    )
    dseg, table = atlas_to_dseg(atlas, labels, bold)
    truth = _nearest_by_hand(atlas, bold)
    renumber = {0: 0, 1: 1, 2: 2, 3: 3, 5: 4, 6: 5, 7: 6}
    np.testing.assert_array_equal(np.asanyarray(dseg.dataobj), np.vectorize(renumber.get)(truth))
    assert table["name"].tolist() == list("abcdef")
    assert table["index"].tolist() == [1, 2, 3, 4, 5, 6]


def test_bad_atlases_are_named():
    atlas, bold = _atlas(), _bold()
    with pytest.raises(DataError, match=r"index \[4\] not in the atlas"):
        atlas_to_dseg(atlas, {"early": [1, 4]}, bold)
    probabilistic = nib.Nifti1Image(np.asanyarray(atlas.dataobj) * 0.3, ATLAS_AFFINE)
    with pytest.raises(DataError, match="roi_from_atlas"):
        atlas_to_dseg(probabilistic, {"early": 1}, bold)
    far_affine = np.diag([3.0, 3.0, 3.0, 1.0])
    far_affine[:3, 3] = 500.0
    far = nib.Nifti1Image(np.ones((4, 4, 4, 2), np.float32), far_affine)
    with pytest.raises(DataError, match="overlap"):
        atlas_to_dseg(atlas, {"early": 1}, far)
    # A region the BOLD field of view misses (one atlas voxel at x = 28 mm; the BOLD ends at 21.4).
    data = np.asanyarray(atlas.dataobj).copy()
    data[29, 29, 29] = 9
    with pytest.raises(DataError, match="'tiny' has no voxel on the grid"):
        atlas_to_dseg(nib.Nifti1Image(data, ATLAS_AFFINE), {"early": 1, "tiny": 9}, bold)
