"""The single-trial GLM's progress bar (issue 24): one bar per run over its voxels, drawn only
when asked, and the betas bit-identical with and without it."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from tqdm.std import tqdm

from nipype_brainrecon.glm import estimate_single_trial_betas
from nipype_brainrecon.interfaces.betas import SingleTrialBetas

TR = 2.0
SHAPE = (10, 10, 8)  # 800 voxels: 4 chunks of the fit's smallest chunk (256 voxels)


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """The fit's smallest voxel chunks, so that the bar advances over several."""
    monkeypatch.setattr("nipype_brainrecon.glm.fit._CHUNK_ELEMENTS", 1)


def _run(tmp_path=None, seed=0, n=60, n_trials=8):
    """A small random run: BOLD, mask, events with two trial types, confounds."""
    rng = np.random.default_rng(seed)
    data = 100.0 + rng.normal(size=(*SHAPE, n)).astype(np.float32)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    bold = nib.Nifti1Image(data, affine)
    bold.header.set_xyzt_units("mm", "sec")
    bold.header.set_zooms((3.0, 3.0, 3.0, TR))
    mask = nib.Nifti1Image(np.ones(SHAPE, dtype=np.uint8), affine)
    events = pd.DataFrame(
        {
            "onset": np.linspace(4, n * TR - 20, n_trials).round(1),
            "duration": 2.0,
            "stim_file": [f"stimuli/img{j:02d}.png" for j in range(n_trials)],
            "trial_type": ["face", "scene"] * (n_trials // 2),
        }
    )
    confounds = pd.DataFrame(rng.normal(size=(n, 2)), columns=["trans_x", "rot_x"])
    return bold, events, confounds, mask


def _bars(err: str, desc: str) -> list[tuple[int, int]]:
    """``(done, total)`` of every drawing of the bar ``desc``."""
    return [
        (int(m.group(1)), int(m.group(2)))
        for m in re.finditer(re.escape(desc) + r": +\d+%\|[^|]*\| (\d+)/(\d+)", err)
    ]


@pytest.mark.parametrize(
    ("method", "noise_model", "lss_others", "fits"),
    [("lss", "ols", "all", 1), ("lss", "ar1", "trial_type", 2), ("lsa", "ols", "all", 1)],
)
def test_betas_bit_identical_with_and_without_the_bar(
    method, noise_model, lss_others, fits, capsys, monkeypatch
):
    bold, events, confounds, mask = _run()
    updates = []
    update = tqdm.update

    def record(self, k=1):
        updates.append(k)
        return update(self, k)

    monkeypatch.setattr(tqdm, "update", record)
    kwargs = dict(
        method=method,
        noise_model=noise_model,
        lss_others=lss_others,
        confounds=["trans_x", "rot_x"],
        run=3,
    )
    quiet, quiet_trials = estimate_single_trial_betas(bold, events, confounds, mask, **kwargs)
    assert "%|" not in capsys.readouterr().err  # no bar unless asked (the default)
    updates.clear()
    shown, shown_trials = estimate_single_trial_betas(
        bold, events, confounds, mask, progress=True, **kwargs
    )
    err = capsys.readouterr().err
    a, b = np.asarray(quiet.dataobj), np.asarray(shown.dataobj)
    assert a.dtype == b.dtype and a.shape == b.shape == (*SHAPE, 8)
    assert np.array_equal(a, b) and np.abs(a).sum() > 0
    pd.testing.assert_frame_equal(quiet_trials, shown_trials)
    # One bar for the run, over every voxel of every fit (LSS per trial type: two fits).
    drawn = _bars(err, "run-3 betas: voxels")
    n_vox = int(np.prod(SHAPE))
    assert drawn and {total for _, total in drawn} == {fits * n_vox}
    assert drawn[-1] == (fits * n_vox, fits * n_vox)
    assert updates == [256, 256, 256, 32] * fits  # one bar, chunk by chunk
    assert err.rstrip().endswith("voxel/s]")


def test_bar_names_the_subject_from_the_file_name(tmp_path, capsys):
    bold, events, confounds, mask = _run(seed=1)
    path = tmp_path / "sub-07_task-x_run-02_desc-preproc_bold.nii.gz"
    nib.save(bold, path)
    estimate_single_trial_betas(path, events, confounds, mask, confounds=None, progress=True)
    err = capsys.readouterr().err
    assert _bars(err, "sub-07 run-2 betas: voxels")[-1] == (800, 800)


def test_interface_progress_is_not_hashed_and_changes_no_output(tmp_path, capsys):
    bold, events, confounds, mask = _run(seed=2)
    files = {
        "bold_file": tmp_path / "bold.nii.gz",
        "mask_file": tmp_path / "mask.nii.gz",
        "events_file": tmp_path / "events.tsv",
        "confounds_file": tmp_path / "confounds.tsv",
    }
    nib.save(bold, files["bold_file"])
    nib.save(mask, files["mask_file"])
    events.to_csv(files["events_file"], sep="\t", index=False)
    confounds.to_csv(files["confounds_file"], sep="\t", index=False)
    inputs = {k: str(v) for k, v in files.items()}
    quiet = SingleTrialBetas(**inputs, confounds=["trans_x"], run_label="1")
    shown = SingleTrialBetas(**inputs, confounds=["trans_x"], run_label="1", progress=True)
    assert quiet.inputs.get_hashval()[1] == shown.inputs.get_hashval()[1]
    outputs = []
    for name, interface in (("quiet", quiet), ("shown", shown)):
        (tmp_path / name).mkdir()
        interface.run(cwd=str(tmp_path / name))
        outputs.append(np.asarray(nib.load(interface._results["betas_file"]).dataobj))
    err = capsys.readouterr().err
    assert np.array_equal(outputs[0], outputs[1])
    assert _bars(err, "run-1 betas: voxels")[-1] == (800, 800)
    assert err.count("betas: voxels: 100%") == 1  # only the node asked for it drew a bar
