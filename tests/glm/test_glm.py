"""Single-trial betas: ground truth on synthetic runs, nilearn's per-trial LSS, input errors."""

from __future__ import annotations

import os
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel, compute_regressor

from nipype_brainrecon.errors import DataError, MissingInputError, OutputError, UsageError
from nipype_brainrecon.glm import (
    CONFOUND_PRESETS,
    combine_runs,
    design,
    estimate_single_trial_betas,
    load_events,
    load_precomputed_betas,
    save_betas,
    select_confounds,
)

TR = 2.0
MOTION = CONFOUND_PRESETS["motion"]


def _regressors(onsets, durations, n, hrf="glover"):
    frame_times = np.arange(n) * TR
    cols = [
        compute_regressor(np.array([[o], [d], [1.0]]), hrf, frame_times)[0][:, 0]
        for o, d in zip(onsets, durations, strict=True)
    ]
    return np.stack(cols, axis=1)


def _run(
    *,
    n=100,
    n_trials=12,
    shape=(4, 4, 4),
    noise=1.0,
    seed=0,
    amplitudes=None,
    confound_effect=True,
    dtype=np.float32,
):
    """A synthetic run: Glover-convolved trials with known amplitudes, AR(1) noise, motion."""
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(4, n * TR - 30, n_trials)).round(2)
    durations = np.full(n_trials, 2.0)
    regs = _regressors(onsets, durations, n)
    n_vox = int(np.prod(shape))
    amp = rng.normal(2.0, 1.0, (n_trials, n_vox)) if amplitudes is None else amplitudes
    motion = pd.DataFrame(rng.normal(0, 0.1, (n, 6)).cumsum(0), columns=MOTION)
    confounds = motion.copy()
    for col in MOTION:
        confounds[f"{col}_derivative1"] = confounds[col].diff()  # NaN first row, as fMRIPrep
    confounds["csf"] = rng.normal(size=n)
    rho = rng.uniform(0.0, 0.5, n_vox)
    white = rng.normal(size=(n, n_vox))
    ar = np.zeros((n, n_vox))
    for t in range(n):
        ar[t] = white[t] + (rho * ar[t - 1] if t else 0.0)
    y = 1000.0 + regs @ amp + noise * ar
    if confound_effect:
        y += motion.to_numpy() @ rng.normal(0, 2, (6, n_vox))
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    bold = nib.Nifti1Image(y.T.reshape(*shape, n).astype(dtype), affine)
    bold.header.set_xyzt_units("mm", "sec")
    bold.header.set_zooms((3.0, 3.0, 3.0, TR))
    mask = np.ones(shape, dtype=np.uint8)
    mask[0, 0, :] = 0
    events = pd.DataFrame(
        {
            "onset": onsets,
            "duration": durations,
            "stim_file": [f"stimuli/img{j % 5:02d}.png" for j in range(n_trials)],
            "trial_type": np.where(np.arange(n_trials) % 3 == 0, "face", "scene"),
        }
    )
    return {
        "bold": bold,
        "mask": nib.Nifti1Image(mask, affine),
        "events": events,
        "confounds": confounds,
        "amp": amp,
        "sel": mask.astype(bool),
    }


def _masked(img, sel):
    return np.asarray(img.dataobj)[sel].T  # trials × voxels


def _nilearn_lss(
    run,
    noise_model,
    *,
    others="all",
    hrf="glover",
    extra_events=None,
    signal_scaling=0,
    t_r=TR,
):
    """The usual LSS: nilearn's FirstLevelModel fitted once per trial."""
    events, sel = run["events"], run["sel"]
    conf = select_confounds(run["confounds"])
    out = []
    for j in range(len(events)):
        ev = events[["onset", "duration"]].copy()
        ev["trial_type"] = "other" if others == "all" else "other_" + events["trial_type"]
        ev.loc[j, "trial_type"] = "trial"
        if extra_events is not None:
            ev = pd.concat([ev, extra_events], ignore_index=True)
        model = FirstLevelModel(
            t_r=t_r,
            hrf_model=hrf,
            drift_model="cosine",
            high_pass=1 / 128,
            noise_model=noise_model,
            mask_img=run["mask"],
            minimize_memory=True,
            signal_scaling=signal_scaling,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(run["bold"], events=ev, confounds=conf)
            effect = model.compute_contrast("trial", output_type="effect_size")
        out.append(np.asarray(effect.dataobj)[sel])
    return np.array(out)


def _max_rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------------------------------------------
# Ground truth
# ------------------------------------------------------------------------------------------------
def test_lsa_recovers_amplitudes_without_noise():
    run = _run(noise=0.0, confound_effect=False)
    betas, trials = estimate_single_trial_betas(
        run["bold"], run["events"], None, run["mask"], method="lsa", confounds=None,
        signal_scaling=False,
    )  # fmt: skip
    got = _masked(betas, run["sel"])
    truth = run["amp"][:, run["sel"].ravel()]
    # float32 storage of 1000 + signal limits the precision to ~1e-4 of the signal.
    assert np.abs(got - truth).max() < 2e-3
    assert betas.shape == (4, 4, 4, 12) and betas.get_data_dtype() == np.float32
    assert np.all(np.asarray(betas.dataobj)[~run["sel"]] == 0)
    assert list(trials.columns[:6]) == ["run", "trial", "onset", "duration", "stim_file", "stim_id"]
    assert trials["stim_id"].tolist()[:2] == ["img00", "img01"]
    assert trials["trial"].tolist() == list(range(12))


def test_lss_recovers_equal_amplitudes_and_scaling_is_percent():
    # With one amplitude for every trial, "this trial + all others" fits the data exactly.
    n_vox = 64
    amp = np.tile(np.linspace(1.0, 3.0, n_vox), (12, 1))
    run = _run(noise=0.0, confound_effect=False, amplitudes=amp)
    betas, _ = estimate_single_trial_betas(
        run["bold"], run["events"], None, run["mask"], confounds=None, signal_scaling=False
    )
    truth = amp[:, run["sel"].ravel()]
    assert np.abs(_masked(betas, run["sel"]) - truth).max() < 2e-3
    scaled, _ = estimate_single_trial_betas(
        run["bold"], run["events"], None, run["mask"], confounds=None
    )
    mean = np.asarray(run["bold"].dataobj, dtype=float)[run["sel"]].mean(axis=1)
    np.testing.assert_allclose(_masked(scaled, run["sel"]), 100 * truth / mean, rtol=1e-3)


def test_lss_confounds_remove_motion_effect():
    run = _run(noise=0.3, confound_effect=True, seed=3)
    truth = run["amp"][:, run["sel"].ravel()]
    with_conf, _ = estimate_single_trial_betas(
        run["bold"], run["events"], run["confounds"], run["mask"], method="lsa",
        signal_scaling=False,
    )  # fmt: skip
    without, _ = estimate_single_trial_betas(
        run["bold"], run["events"], None, run["mask"], method="lsa", confounds=None,
        signal_scaling=False,
    )  # fmt: skip
    err_with = np.abs(_masked(with_conf, run["sel"]) - truth).mean()
    err_without = np.abs(_masked(without, run["sel"]) - truth).mean()
    print(f"LSA mean abs error: with motion confounds {err_with:.3f}, without {err_without:.3f}")
    assert err_with < 0.5 * err_without


# ------------------------------------------------------------------------------------------------
# Against nilearn's FirstLevelModel fitted once per trial
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hrf", ["glover", "spm + derivative"])
def test_lss_ols_equals_nilearn_per_trial(hrf):
    # float64 data: nilearn's percent scaling of float32 data rounds to ~1e-5 of the betas.
    run = _run(seed=1, dtype=np.float64)
    betas, _ = estimate_single_trial_betas(
        run["bold"], run["events"], run["confounds"], run["mask"], hrf_model=hrf
    )
    ref = _nilearn_lss(run, "ols", hrf=hrf)
    rel = _max_rel(_masked(betas, run["sel"]), ref)
    print(f"LSS OLS ({hrf}) vs nilearn: max rel diff {rel:.2e}")
    assert rel < 1e-5


def test_lss_ols_equals_nilearn_on_float32_without_scaling():
    run = _run(seed=12)
    betas, _ = estimate_single_trial_betas(
        run["bold"], run["events"], run["confounds"], run["mask"], signal_scaling=False
    )
    ref = _nilearn_lss(run, "ols", signal_scaling=False)
    rel = _max_rel(_masked(betas, run["sel"]), ref)
    print(f"LSS OLS float32 unscaled vs nilearn: max rel diff {rel:.2e}")
    assert rel < 1e-5


def test_lss_ar1_matches_nilearn_per_trial():
    run = _run(seed=2, noise=2.0, dtype=np.float64)
    betas, _ = estimate_single_trial_betas(
        run["bold"], run["events"], run["confounds"], run["mask"], noise_model="ar1"
    )
    ours = _masked(betas, run["sel"])
    ref = _nilearn_lss(run, "ar1")
    r = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
    ols = _masked(
        estimate_single_trial_betas(
            run["bold"], run["events"], run["confounds"], run["mask"], noise_model="ols"
        )[0],
        run["sel"],
    )
    print(f"LSS AR(1) vs nilearn: r = {r:.8f}, max rel diff {_max_rel(ours, ref):.2e}")
    assert r >= 0.999
    assert _max_rel(ours, ref) < 1e-4  # same AR bins, so nearly identical
    assert _max_rel(ols, ref) > 1e-3  # and the prewhitening did change the betas


def test_lss_per_condition_and_nuisance_events_equal_nilearn():
    run = _run(seed=4, n_trials=9, dtype=np.float64)
    # Rows without stim_file (button presses) are modelled, not estimated.
    presses = pd.DataFrame(
        {
            "onset": [11.0, 77.0, 133.0],
            "duration": 0.0,
            "stim_file": [np.nan, "n/a", ""],
            "trial_type": "press",
        }
    )
    events = pd.concat([run["events"], presses], ignore_index=True)
    betas, trials = estimate_single_trial_betas(
        run["bold"], events, run["confounds"], run["mask"], lss_others="trial_type"
    )
    assert len(trials) == 9
    extra = presses[["onset", "duration"]].assign(trial_type="nuisance_press")
    ref = _nilearn_lss(run, "ols", others="trial_type", extra_events=extra)
    rel = _max_rel(_masked(betas, run["sel"]), ref)
    print(f"LSS per condition + nuisance events vs nilearn: max rel diff {rel:.2e}")
    assert rel < 1e-5


def test_lsa_equals_nilearn_single_fit():
    run = _run(seed=5, dtype=np.float64)
    sel = run["sel"]
    events = run["events"][["onset", "duration"]].assign(
        trial_type=[f"t{j:02d}" for j in range(12)]
    )
    for noise_model in ("ols", "ar1"):
        betas, _ = estimate_single_trial_betas(
            run["bold"], run["events"], run["confounds"], run["mask"], method="lsa",
            noise_model=noise_model,
        )  # fmt: skip
        model = FirstLevelModel(
            t_r=TR, high_pass=1 / 128, noise_model=noise_model, mask_img=run["mask"]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(run["bold"], events=events, confounds=select_confounds(run["confounds"]))
            ref = np.array(
                [
                    np.asarray(model.compute_contrast(name, output_type="effect_size").dataobj)[sel]
                    for name in events["trial_type"]
                ]
            )
        assert _max_rel(_masked(betas, sel), ref) < 1e-5


def test_fallback_regressors_give_the_same_betas(monkeypatch):
    run = _run(seed=6)
    fast, _ = estimate_single_trial_betas(
        run["bold"], run["events"], run["confounds"], run["mask"], hrf_model="glover + derivative"
    )
    monkeypatch.setattr(design, "_fast_path_matches", lambda *a: False)
    slow, _ = estimate_single_trial_betas(
        run["bold"], run["events"], run["confounds"], run["mask"], hrf_model="glover + derivative"
    )
    assert _max_rel(_masked(fast, run["sel"]), _masked(slow, run["sel"])) < 1e-9


@pytest.mark.parametrize("t_r", [0.7, 1.5, 2.5])
def test_fast_regressors_equal_compute_regressor(t_r):
    rng = np.random.default_rng(7)
    n = 150
    frame_times = np.linspace(0.5 * t_r, (n - 0.5) * t_r, n)
    onsets = np.sort(rng.uniform(0, n * t_r - 5, 10))
    durations = rng.choice([0.0, 0.5, 3.0], 10)
    for hrf in ("glover", "spm + derivative + dispersion"):
        own, _ = design.trial_regressors(onsets, durations, frame_times, hrf)
        for j in range(10):
            ref, _ = compute_regressor(
                np.array([[onsets[j]], [durations[j]], [1.0]]), hrf, frame_times
            )
            np.testing.assert_allclose(own[j], ref, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Confounds
# ------------------------------------------------------------------------------------------------
def test_select_confounds_presets_and_lists():
    rng = np.random.default_rng(8)
    table = pd.DataFrame(rng.normal(size=(20, 6)), columns=MOTION)
    table["trans_x_derivative1"] = table["trans_x"].diff()
    table["csf"] = rng.normal(size=20)
    default = select_confounds(table)
    assert list(default.columns) == CONFOUND_PRESETS["motion+derivatives"]
    assert default.notna().all().all() and default.iloc[0, 6:].eq(0).all()
    # Derivatives missing from the table are computed as fMRIPrep does (backward difference).
    np.testing.assert_allclose(
        default["rot_z_derivative1"].to_numpy()[1:], np.diff(table["rot_z"].to_numpy())
    )
    assert list(select_confounds(table, "motion").columns) == MOTION
    assert list(select_confounds(table, ["csf", "trans_y"]).columns) == ["csf", "trans_y"]
    assert select_confounds(table, None).shape[1] == 0
    with pytest.raises(DataError, match="white_matter"):
        select_confounds(table, ["white_matter"])
    with pytest.raises(UsageError, match="unknown preset"):
        select_confounds(table, "36p")
    with pytest.raises(DataError, match="volumes"):
        select_confounds(table, "motion", n_volumes=21)
    broken = table.copy()
    broken.loc[5, "csf"] = np.nan
    with pytest.raises(DataError, match="row"):
        select_confounds(broken, ["csf"])
    with pytest.raises(UsageError, match="no confounds"):
        select_confounds(None, "motion")


def test_confounds_tsv_with_na_first_row(tmp_path):
    run = _run(seed=9)
    path = tmp_path / "sub-01_task-x_run-2_desc-confounds_timeseries.tsv"
    run["confounds"].to_csv(path, sep="\t", index=False, na_rep="n/a")
    bold_path = tmp_path / "sub-01_task-x_run-2_desc-preproc_bold.nii.gz"
    nib.save(run["bold"], bold_path)
    from_file, trials = estimate_single_trial_betas(bold_path, run["events"], path, run["mask"])
    in_memory, _ = estimate_single_trial_betas(
        run["bold"], run["events"], run["confounds"], run["mask"]
    )
    assert trials["run"].eq(2).all()  # from the run- entity of the file name
    assert _max_rel(_masked(from_file, run["sel"]), _masked(in_memory, run["sel"])) < 1e-6


# ------------------------------------------------------------------------------------------------
# Input errors
# ------------------------------------------------------------------------------------------------
def _args(run, **over):
    args = {
        "bold_img": run["bold"],
        "events_df": run["events"],
        "confounds_df": run["confounds"],
        "mask_img": run["mask"],
    }
    args.update(over)
    return args


def test_events_errors(tmp_path):
    run = _run()
    path = tmp_path / "events.tsv"
    run["events"].drop(columns="stim_file").to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=r"events\.tsv.*stim_file"):
        estimate_single_trial_betas(**_args(run, events_df=path))
    with pytest.raises(DataError, match="onset"):
        load_events(run["events"].drop(columns="onset"))
    late = run["events"].copy()
    late.loc[3, "onset"] = 100 * TR - 1.0
    with pytest.raises(DataError, match=r"trial\(s\) \[3\] end after the last volume"):
        estimate_single_trial_betas(**_args(run, events_df=late))
    early = run["events"].copy()
    early.loc[0, "onset"] = -2.0
    with pytest.raises(DataError, match="negative onset"):
        estimate_single_trial_betas(**_args(run, events_df=early))
    missing = run["events"].astype({"duration": object})
    missing.loc[1, "duration"] = "n/a"
    with pytest.raises(DataError, match="duration missing"):
        load_events(missing)
    with pytest.raises(MissingInputError, match="nope.tsv"):
        load_events(tmp_path / "nope.tsv")
    with pytest.raises(DataError, match="trial_type"):
        estimate_single_trial_betas(
            **_args(run, events_df=run["events"].drop(columns="trial_type")),
            lss_others="trial_type",
        )


def test_image_errors(tmp_path):
    run = _run()
    bold3d = nib.Nifti1Image(np.asarray(run["bold"].dataobj)[..., 0], run["bold"].affine)
    path = tmp_path / "bold3d.nii.gz"
    nib.save(bold3d, path)
    with pytest.raises(DataError, match=r"bold3d\.nii\.gz.*4D"):
        estimate_single_trial_betas(**_args(run, bold_img=path))
    no_tr = nib.Nifti1Image(np.asarray(run["bold"].dataobj), run["bold"].affine)
    with pytest.raises(DataError, match="repetition time"):
        estimate_single_trial_betas(**_args(run, bold_img=no_tr))
    # ... unless given explicitly.
    betas, _ = estimate_single_trial_betas(**_args(run, bold_img=no_tr), t_r=TR)
    assert betas.shape[3] == 12
    with pytest.raises(MissingInputError, match="absent.nii.gz"):
        estimate_single_trial_betas(**_args(run, mask_img=tmp_path / "absent.nii.gz"))
    with pytest.raises(UsageError, match="method"):
        estimate_single_trial_betas(**_args(run), method="lsx")
    with pytest.raises(UsageError, match="hrf_model"):
        estimate_single_trial_betas(**_args(run), hrf_model="fir")
    with pytest.raises(UsageError, match="noise_model"):
        estimate_single_trial_betas(**_args(run), noise_model="ar2")


def test_too_few_volumes_for_lsa():
    run = _run(n=40, n_trials=30)
    with pytest.raises(DataError, match="40 volumes but the LSA model"):
        estimate_single_trial_betas(**_args(run), method="lsa")
    betas, _ = estimate_single_trial_betas(**_args(run))  # LSS is fine
    assert betas.shape[3] == 30


def test_nan_and_constant_voxels_dropped_with_warning():
    run = _run()
    data = np.asarray(run["bold"].dataobj).copy()
    data[1, 1, 1, 5] = np.nan
    data[2, 2, 2, :] = 500.0
    bold = nib.Nifti1Image(data, run["bold"].affine, run["bold"].header)
    with pytest.warns(UserWarning, match="2 of 60 mask voxels are NaN or constant"):
        betas, trials = estimate_single_trial_betas(**_args(run, bold_img=bold))
    assert trials.attrs["n_dropped_voxels"] == 2
    values = np.asarray(betas.dataobj)
    assert np.all(values[1, 1, 1] == 0) and np.all(values[2, 2, 2] == 0)
    assert np.isfinite(values).all()
    clean, _ = estimate_single_trial_betas(**_args(run))
    keep = run["sel"].copy()
    keep[1, 1, 1] = keep[2, 2, 2] = False
    assert _max_rel(values[keep], np.asarray(clean.dataobj)[keep]) < 1e-6


def test_mask_on_another_grid():
    run = _run()
    # Same field of view at twice the resolution: resampled, same voxels selected.
    fine = np.ones((8, 8, 8), dtype=np.uint8)
    fine[0:2, 0:2, :] = 0
    fine_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    fine_affine[:3, 3] = -0.75
    fine_mask = nib.Nifti1Image(fine, fine_affine)
    with pytest.warns(UserWarning, match="resampled"):
        betas, _ = estimate_single_trial_betas(**_args(run, mask_img=fine_mask))
    same, _ = estimate_single_trial_betas(**_args(run))
    np.testing.assert_array_equal(np.asarray(betas.dataobj), np.asarray(same.dataobj))
    small = nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.diag([3.0, 3.0, 3.0, 1.0]))
    with pytest.raises(DataError, match="does not cover"):
        estimate_single_trial_betas(**_args(run, mask_img=small))
    unknown = nib.Nifti1Image(np.ones((4, 4, 5), np.uint8), None)
    unknown.header.set_sform(None, code=0)
    unknown.header.set_qform(None, code=0)
    with pytest.raises(DataError, match="affine is unset"):
        estimate_single_trial_betas(**_args(run, mask_img=unknown))
    empty = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), run["bold"].affine)
    with pytest.raises(DataError, match="empty"):
        estimate_single_trial_betas(**_args(run, mask_img=empty))


# ------------------------------------------------------------------------------------------------
# Runs, files, precomputed betas
# ------------------------------------------------------------------------------------------------
def test_combine_save_and_load_precomputed(tmp_path):
    run1, run2 = _run(seed=10), _run(seed=11, n_trials=7)
    a = estimate_single_trial_betas(**_args(run1), run=1)
    b = estimate_single_trial_betas(**_args(run2), run=2)
    betas, trials = combine_runs([a, b])
    assert betas.shape[3] == 19 and trials["run"].tolist() == [1] * 12 + [2] * 7
    np.testing.assert_array_equal(np.asarray(betas.dataobj)[..., 12:], np.asarray(b[0].dataobj))
    with pytest.raises(UsageError, match="run labels repeat"):
        combine_runs([a, a])
    img_path, tsv_path = save_betas(
        betas, trials, tmp_path / "sub-01_desc-betas_bold.nii.gz", tmp_path / "sub-01_trials.tsv"
    )
    loaded, table = load_precomputed_betas(img_path, tsv_path)
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), np.asarray(betas.dataobj))
    # Streamed to disk, byte for byte the in-memory file (reproducible: no name or time).
    import gzip

    assert img_path.read_bytes() == gzip.compress(betas.to_bytes(), compresslevel=6, mtime=0)
    plain, _ = save_betas(betas, trials, tmp_path / "plain_bold.nii", tmp_path / "plain.tsv")
    assert plain.read_bytes() == betas.to_bytes()
    assert table["stim_id"].tolist() == trials["stim_id"].tolist()
    # A table with one row too few is refused, naming it.
    trials.iloc[:-1].to_csv(tmp_path / "short.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=r"short\.tsv: 18 rows but .* 19 volumes"):
        load_precomputed_betas(img_path, tmp_path / "short.tsv")
    # NSD-style minimal table: stim_file only; run and trial are filled in.
    pd.DataFrame({"stim_file": [f"nsd/{i}.png" for i in range(19)]}).to_csv(
        tmp_path / "min.tsv", sep="\t", index=False
    )
    _, minimal = load_precomputed_betas(img_path, tmp_path / "min.tsv")
    assert minimal["stim_id"].iloc[3] == "3" and minimal["run"].eq(1).all()
    assert minimal["trial"].tolist() == list(range(19))
    with pytest.raises(DataError, match="4D"):
        nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), tmp_path / "3d.nii")
        load_precomputed_betas(tmp_path / "3d.nii", tsv_path)
    with pytest.raises(MissingInputError):
        load_precomputed_betas(tmp_path / "none.nii.gz", tsv_path)


@pytest.mark.realdata
def test_haxby_run_matches_nilearn_on_real_noise(haxby_dir):
    """Real BOLD (Haxby 2001, run 1, 25 mm): one beta per category block, OLS and AR(1)."""
    run_dir = haxby_dir / "sub001" / "BOLD" / "task001_run001"
    events = pd.read_csv(run_dir / "bold_events.tsv", sep="\t")
    events["stim_file"] = "stimuli/" + events["trial_type"] + ".png"
    motion = pd.DataFrame(np.loadtxt(run_dir / "bold_moest.txt"), columns=MOTION)
    bold = nib.load(run_dir / "bold_25mm.nii.gz")
    mask = nib.load(haxby_dir / "sub001" / "masks" / "25mm" / "brain.nii.gz")
    sel = np.asarray(mask.dataobj) > 0
    run = {"bold": bold, "mask": mask, "events": events, "confounds": motion, "sel": sel}
    for noise_model in ("ols", "ar1"):
        betas, trials = estimate_single_trial_betas(
            bold, events, motion, mask, noise_model=noise_model, t_r=2.5
        )
        ours = _masked(betas, sel)
        ref = _nilearn_lss(run, noise_model, t_r=2.5)
        r = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
        print(f"Haxby LSS {noise_model}: max rel diff {_max_rel(ours, ref):.1e}, r {r:.8f}")
        assert r >= 0.999 and _max_rel(ours, ref) < 1e-3
    assert trials["stim_id"].tolist() == events["trial_type"].tolist()


def test_save_betas_table_on_a_full_disk(tmp_path, monkeypatch):
    """The table cannot be written: one message naming the table and the fix, no betas left."""
    import errno

    import nipype_brainrecon.io as nbio

    betas, trials = combine_runs([estimate_single_trial_betas(**_args(_run(seed=12)), run=1)])
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd: int) -> None:
            self.handle = real_fdopen(fd, "wb")

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, *args, **kwargs):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".trials.tsv."):
            return FullDisk(fd)
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(nbio.os, "fdopen", fdopen)
    with pytest.raises(OutputError) as caught:
        save_betas(betas, trials, tmp_path / "betas.nii.gz", tmp_path / "trials.tsv")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'trials.tsv'}: cannot write (No space left on device)")
    assert "free disk space" in message and "cannot write betas" not in message
    assert sorted(x.name for x in tmp_path.iterdir()) == []


def test_save_betas_below_a_file(tmp_path):
    """The output folder cannot be made (a file stands in its way): an OutputError naming the
    betas file and the fix, the BIDS Apps exit code 73, and nothing written."""
    betas, trials = combine_runs([estimate_single_trial_betas(**_args(_run(seed=13)), run=1)])
    (tmp_path / "afile").write_text("")
    betas_path = tmp_path / "afile" / "sub-01" / "betas.nii.gz"
    with pytest.raises(OutputError) as caught:
        save_betas(betas, trials, betas_path, tmp_path / "afile" / "sub-01" / "trials.tsv")
    assert str(caught.value).startswith(f"{betas_path}: cannot write (Not a directory)")
    assert "check the output folder" in str(caught.value)
    assert caught.value.exit_code == 73
    assert sorted(x.name for x in tmp_path.iterdir()) == ["afile"]
