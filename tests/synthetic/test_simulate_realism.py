"""The simulator's realism options (issue 22): on by default, ``--preset oracle`` gives the
dataset of before, bit for bit; each option's effect measured against its recorded truth (with
the other options off)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from golden_sim import GOLDEN_KWARGS, fingerprint
from scipy.ndimage import binary_erosion

from nipype_brainrecon.errors import UsageError
from nipype_brainrecon.evaluation.metrics import identification_with_null
from nipype_brainrecon.ridge import fit_ridge_cv
from nipype_brainrecon.synthetic import simulate as sim
from nipype_brainrecon.synthetic.simulate import realism
from nipype_brainrecon.synthetic.simulate.config import DEFAULT_REALISM
from nipype_brainrecon.synthetic.simulate.presets import preset_options

#: Saved before the realism options existed; ``--preset oracle`` must still give it.
GOLDEN_ORACLE = Path(__file__).parent / "data" / "golden_oracle_sim.json"
#: Saved when the options became the defaults (issue 22).
GOLDEN_DEFAULT = Path(__file__).parent / "data" / "golden_default_sim.json"
#: Files whose content may gain keys (the options' records); nothing else may change.
TRUTH_FILES = {
    "derivatives/simulation/simulation.json": {"realism"},
    "derivatives/simulation/sub-01/sub-01_task-vision_groundtruth.json": {"realism_arrays"},
    "derivatives/simulation/sub-01/sub-01_task-vision_groundtruth.npz": {
        "responsive",
        "snr_multiplier",
        "hrf_delay",
        "hrf_undershoot",
        "hrf_variant",
        "null_permutation",
    },
}
#: The effect tests switch every realism option off but the one they measure.
ORACLE = preset_options("oracle")
SMALL = {"n_subjects": 1, "n_train": 24, "n_test": 4, "n_repeats": 1, "image_size": 32}


# ----------------------------------------------------------------------------- helpers


def _oracle_sim(out: Path, **kwargs) -> Path:
    """A simulation with the realism options off except those given."""
    return sim.simulate_dataset(out, **{**ORACLE, **kwargs})


def _stem(run: int) -> str:
    return f"sub-01_task-{sim.TASK}_run-{run:02d}"


def _run(root: Path, run: int, sub: str = "01") -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Preprocessed BOLD (x, y, z, t), events and confounds of a subject's run."""
    prep = root / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
    stem = _stem(run).replace("sub-01", f"sub-{sub}")
    img = nib.load(prep / f"{stem}_space-T1w_desc-preproc_bold.nii.gz")
    events = pd.read_csv(root / f"sub-{sub}" / "func" / f"{stem}_events.tsv", sep="\t")
    conf = pd.read_csv(prep / f"{stem}_desc-confounds_timeseries.tsv", sep="\t")
    return np.asarray(img.dataobj, dtype=np.float64), events, conf


def _cosines(conf: pd.DataFrame) -> np.ndarray:
    return np.column_stack([np.ones(len(conf)), conf.filter(like="cosine").to_numpy()])


def _confound_span(conf: pd.DataFrame) -> np.ndarray:
    """What a GLM with the default confounds (motion + derivatives) and cosines regresses."""
    motion = [f"{k}_{a}" for k in ("trans", "rot") for a in "xyz"]
    cols = motion + [f"{m}_derivative1" for m in motion]
    return np.column_stack([_cosines(conf), conf[cols].fillna(0).to_numpy()])


def _residual(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return y - x @ np.linalg.lstsq(x, y, rcond=None)[0]


def _lsa_betas(root: Path, truth: dict, sub: str = "01") -> np.ndarray:
    """Per-trial GLM betas (Glover HRF, cosines), % signal change, trials in truth order."""
    ijk = truth["voxel_ijk"]
    betas = []
    for run in range(1, int(truth["trial_run"].max()) + 1):
        data, events, conf = _run(root, run, sub)
        y = data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].T
        frames = np.arange(len(y)) * 2.0
        design = sim.trial_regressors(events.onset.to_numpy(), events.duration.to_numpy(), frames)
        coef = np.linalg.lstsq(np.column_stack([design, _cosines(conf)]), y, rcond=None)[0]
        betas.append(coef[: design.shape[1]] / (truth["baseline"] / 100.0))
    return np.vstack(betas)


# ----------------------------------------------------------------------------- defaults


def test_oracle_dataset_is_unchanged(tmp_path):
    """Every file of an oracle simulation (all realism off) is as the default was before the
    options existed (fingerprints saved from the code before the change); the truth files only
    gain the options' records."""
    ref = json.loads(GOLDEN_ORACLE.read_text())
    new = fingerprint(
        sim.simulate_dataset(tmp_path / "sim", **GOLDEN_KWARGS, **preset_options("oracle"))
    )
    assert sorted(new) == sorted(ref)
    for path, before in ref.items():
        if isinstance(before, dict):
            assert {k: new[path][k] for k in before} == before, path
            assert set(new[path]) - set(before) == TRUTH_FILES.get(path, set()), path
        else:
            assert new[path] == before, path
    truth = sim.load_ground_truth(tmp_path / "sim", "01")
    assert truth["responsive"].all() and np.all(truth["snr_multiplier"] == 1.0)
    assert np.all(truth["hrf_delay"] == 6.0) and np.all(truth["hrf_undershoot"] == 12.0)
    np.testing.assert_array_equal(truth["null_permutation"], np.arange(len(truth["stim_file"])))
    assert truth["params"]["realism"]["null"] == "none"


def test_default_dataset_is_unchanged(tmp_path):
    """The default simulation (realism on) is as recorded when it became the default."""
    ref = json.loads(GOLDEN_DEFAULT.read_text())
    assert fingerprint(sim.simulate_dataset(tmp_path / "sim", **GOLDEN_KWARGS)) == ref


def test_presets_are_the_defaults_and_oracle():
    """``harder`` is the defaults; ``oracle`` switches every realism option off."""
    import inspect

    params = inspect.signature(sim.simulate_dataset).parameters
    defaults = {k: params[k].default for k in preset_options("harder")}
    assert defaults == preset_options("harder") == dict(DEFAULT_REALISM)
    assert preset_options("oracle") == dict.fromkeys(defaults, 0.0)
    assert all(v > 0 for v in defaults.values())


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"hrf_mismatch": -1}, "--hrf-mismatch"),
        ({"hrf_mismatch": math.nan}, "--hrf-mismatch"),
        ({"physio_fraction": 1.5}, "--physio-fraction"),
        ({"noise_fwhm": 7}, "--noise-fwhm"),
        ({"nonresponsive_fraction": 1.0}, "--nonresponsive-fraction"),
        ({"snr_spread": -0.1}, "--snr-spread"),
        ({"null": "shuffled"}, "--null"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, kwargs, pattern):
    with pytest.raises(UsageError, match=pattern):
        sim.simulate_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_cli_passes_and_records_the_options(tmp_path, capsys):
    assert sim.main([str(tmp_path / "bad"), "--null", "shuffled"]) == 64
    assert "--null" in capsys.readouterr().err
    args = ["--subjects", "1", "--runs", "1", "--train", "8", "--test", "2", "--repeats", "1"]
    opts = ["--hrf-mismatch", "0.5", "--physio-fraction", "0.25", "--noise-fwhm", "1.5"]
    opts += ["--nonresponsive-fraction", "0.1", "--snr-spread", "0.3", "--null", "snr0"]
    assert sim.main([str(tmp_path / "ok"), *args, *opts, "-q"]) == 0
    params = sim.load_ground_truth(tmp_path / "ok", "01")["params"]["realism"]
    assert params["hrf_mismatch_s"] == 0.5 and params["physio_fraction_of_noise_variance"] == 0.25
    assert params["noise_fwhm_voxels"] == 1.5 and params["nonresponsive_fraction"] == 0.1
    assert params["snr_spread_sd_log"] == 0.3 and params["null"] == "snr0"


# ----------------------------------------------------------------------------- HRF


def test_double_gamma_at_glover_parameters_is_glover():
    from nilearn.glm.first_level import glover_hrf

    np.testing.assert_allclose(realism.double_gamma_hrf(2.0, 50, 6.0, 12.0), glover_hrf(2.0, 50))
    onsets, durations, frames = np.array([8.0, 12.0]), np.array([3.0, 3.0]), np.arange(30) * 2.0
    np.testing.assert_allclose(
        realism.hrf_regressors(onsets, durations, frames, 6.0, 12.0),
        sim.trial_regressors(onsets, durations, frames),
        atol=1e-12,
    )


def test_hrf_regressors_equal_nilearns_per_trial_regressors():
    """The vectorised regressors equal nilearn's ``compute_regressor`` run per trial with the
    same HRF, for random TRs, run lengths, onsets, durations (0 included) and HRFs."""
    from nilearn.glm.first_level import compute_regressor

    rng = np.random.default_rng(1)
    for _ in range(10):
        frames = np.arange(rng.integers(50, 300)) * rng.choice([0.8, 1.5, 2.0, 2.5])
        onsets = np.sort(rng.uniform(0, frames[-1], 20))
        durations = rng.choice([0.0, 0.5, 3.0], 20)
        delay, undershoot = rng.uniform(4, 8), rng.uniform(10, 14)

        def hrf(t_r, oversampling, d=delay, u=undershoot):
            return realism.double_gamma_hrf(t_r, oversampling, d, u)

        expected = np.column_stack(
            [
                compute_regressor(np.array([[o], [d], [1.0]]), hrf, frames, oversampling=50)[0][
                    :, 0
                ]
                for o, d in zip(onsets, durations, strict=True)
            ]
        )
        got = realism.hrf_regressors(onsets, durations, frames, delay, undershoot)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_hrf_mismatch_delay_fitted_from_noiseless_data(tmp_path):
    """Fit the HRF delay of each HRF variant (undershoot at its truth) from a noiseless run,
    pooling its voxels: the fitted delay differs from Glover's by the planted amount; each voxel
    is fitted exactly by its own variant's HRF, while Glover's HRF leaves residuals."""
    from scipy.optimize import minimize_scalar

    kw = {**SMALL, "n_train": 10, "n_test": 2}
    root = _oracle_sim(tmp_path / "s", n_runs=1, snr=math.inf, hrf_mismatch=1.0, **kw)
    truth = sim.load_ground_truth(root, "01")
    data, events, conf = _run(root, 1)
    ijk = truth["voxel_ijk"]
    y = _residual(data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].T, _cosines(conf))
    timing = (events.onset.to_numpy(), events.duration.to_numpy(), np.arange(len(y)) * 2.0)
    drive = truth["amplitudes"] * truth["baseline"] / 100.0  # trials × voxels

    def predict(delay: float, undershoot: float, cols: np.ndarray) -> np.ndarray:
        reg = realism.hrf_regressors(*timing, delay, undershoot)
        return _residual(reg, _cosines(conf)) @ drive[:, cols]

    variants = np.unique(truth["hrf_variant"])
    assert variants.size >= 4 and variants.min() >= 0  # several HRFs, none of them Glover's
    fitted, planted = [], []
    for g in variants:
        cols = np.flatnonzero(truth["hrf_variant"] == g)
        under = truth["hrf_undershoot"][cols[0]]
        res = minimize_scalar(
            lambda d, c=cols, u=under: float(((y[:, c] - predict(d, u, c)) ** 2).sum()),
            bounds=(2.5, 10.5),
            options={"xatol": 1e-3},
        )
        fitted.append(res.x - realism.GLM_HRF_DELAY)
        planted.append(truth["hrf_delay"][cols[0]] - realism.GLM_HRF_DELAY)
        own = predict(truth["hrf_delay"][cols[0]], under, cols)
        r2_own = 1 - ((y[:, cols] - own) ** 2).sum(0) / (y[:, cols] ** 2).sum(0)
        assert r2_own.min() > 0.9999
    print(f"delay shifts: planted {np.round(planted, 3)}, fitted {np.round(fitted, 3)}")
    np.testing.assert_allclose(fitted, planted, atol=0.01)
    assert np.abs(planted).mean() > 0.3
    glover = _residual(sim.trial_regressors(*timing), _cosines(conf)) @ drive
    r2_glover = 1 - ((y - glover) ** 2).sum(0) / (y**2).sum(0)
    off = np.abs(truth["hrf_delay"] - realism.GLM_HRF_DELAY) > 0.5
    print(
        f"Glover HRF R2 where the delay is off by > 0.5 s: median {np.median(r2_glover[off]):.3f}"
    )
    assert off.any() and np.all(r2_glover[off] < 0.99)


# ----------------------------------------------------------------------------- physio, spatial


def test_physio_noise_is_outside_the_confound_span(tmp_path):
    """The physiological noise of a run, rebuilt with the run's motion and cosines from the
    confounds file, has < 1 % of its variance explained by motion + derivatives + cosines, and
    its power is concentrated at the aliased respiration frequency (|0.3 - 0.5| = 0.2 Hz)."""
    root = _oracle_sim(tmp_path / "s", n_runs=1, **SMALL)
    _, _, conf = _run(root, 1)
    motion = conf[[f"{k}_{a}" for k in ("trans", "rot") for a in "xyz"]].to_numpy()
    frames = np.arange(len(conf)) * 2.0
    span = realism.physio_span(motion, conf.filter(like="cosine").to_numpy())
    phys = realism.physio_noise(np.random.default_rng(0), frames, span, 500)
    explained = 1 - _residual(phys, _confound_span(conf)).var(0) / phys.var(0)
    print(f"explained by confounds: max {explained.max():.2e}")
    assert explained.max() < 0.01
    freqs = np.fft.rfftfreq(len(frames), d=2.0)
    power = (np.abs(np.fft.rfft(phys, axis=0)) ** 2).mean(1)
    band = (freqs > 0.17) & (freqs < 0.23)
    share = power[band].sum() / power.sum()
    print(f"power share in 0.17-0.23 Hz: {share:.3f} (flat: {band.mean():.3f})")
    assert share > 1.5 * band.mean()


def test_physio_fraction_raises_residual_power_at_aliased_respiration(tmp_path):
    shares = {}
    for p in (0.0, 0.6):
        root = _oracle_sim(tmp_path / f"p{p}", n_runs=1, physio_fraction=p, **SMALL)
        data, _, conf = _run(root, 1)
        anat = sim.brain_grid()
        other = anat["mask"] & (anat["dseg"] == 0)
        resid = _residual(data[other].T, _confound_span(conf))
        freqs = np.fft.rfftfreq(len(resid), d=2.0)
        power = (np.abs(np.fft.rfft(resid, axis=0)) ** 2).mean(1)
        shares[p] = power[(freqs > 0.17) & (freqs < 0.23)].sum() / power.sum()
    print(shares)
    assert shares[0.6] > 1.5 * shares[0.0]


def _neighbour_correlation(resid_vol: np.ndarray, inner: np.ndarray) -> float:
    """Mean correlation over time of each inner voxel with its +1 neighbour along x, y, z."""
    z = resid_vol - resid_vol.mean(-1, keepdims=True)
    z /= z.std(-1, keepdims=True) + 1e-12
    out = []
    for axis in range(3):
        shifted = np.roll(z, -1, axis=axis)
        pair = inner & np.roll(inner, -1, axis=axis)
        out.append((z * shifted).mean(-1)[pair].mean())
    return float(np.mean(out))


def test_noise_fwhm_gives_the_gaussian_kernel_neighbour_correlation(tmp_path):
    """Noise smoothed with FWHM f voxels: neighbours correlate exp(-1 / (4 sigma^2)),
    sigma = f / sqrt(8 ln 2); unsmoothed noise does not correlate."""
    anat = sim.brain_grid()
    inner = binary_erosion(anat["mask"], iterations=2) & (anat["dseg"] == 0)
    measured = {}
    for fwhm in (0.0, 2.5):
        root = _oracle_sim(
            tmp_path / f"f{fwhm}", n_runs=1, noise_fwhm=fwhm, motion_fraction=0.0, **SMALL
        )
        data, _, conf = _run(root, 1)
        flat = data.reshape(-1, data.shape[-1]).T
        resid = _residual(flat, _cosines(conf)).T.reshape(data.shape)
        measured[fwhm] = _neighbour_correlation(resid, inner)
    sigma = 2.5 / math.sqrt(8 * math.log(2))
    theory = math.exp(-1 / (4 * sigma**2))
    print(
        f"neighbour r: fwhm 0 {measured[0.0]:.3f}, fwhm 2.5 {measured[2.5]:.3f} (theory {theory:.3f})"
    )
    assert abs(measured[0.0]) < 0.05
    assert abs(measured[2.5] - theory) < 0.05


# ----------------------------------------------------------------------------- voxels


def test_nonresponsive_voxels_and_snr_spread(tmp_path):
    """Non-responsive voxels: GLM betas average ~0 (responsive ones their intercept); the
    measured per-voxel SNR follows the planted multipliers (geometric mean 1, SD of log 0.5)."""
    root = _oracle_sim(
        tmp_path / "s", n_runs=2, snr=3.0, nonresponsive_fraction=0.3, snr_spread=0.5, **SMALL
    )
    truth = sim.load_ground_truth(root, "01")
    resp, mult = truth["responsive"], truth["snr_multiplier"]
    for label in (1, 2):
        roi = truth["voxel_label"] == label
        assert (~resp[roi]).sum() == round(0.3 * roi.sum())
    assert abs(np.log(mult).mean()) < 1e-12
    assert abs(np.log(mult).std() - 0.5) < 0.05
    betas = _lsa_betas(root, truth)
    mean_beta = betas.mean(0)
    print(
        f"nonresponsive mean beta {mean_beta[~resp].mean():.4f}, responsive {mean_beta[resp].mean():.3f}"
    )
    assert abs(mean_beta[~resp].mean()) < 0.1 * mean_beta[resp].mean()
    assert np.all(np.abs(truth["amplitudes"][:, ~resp]) == 0)
    assert mean_beta[resp].mean() > 0.4
    # measured SNR: fit the true response (truth amplitudes) and cosines per voxel
    snr_hat = []
    for run in (1, 2):
        data, events, conf = _run(root, run)
        ijk = truth["voxel_ijk"]
        y = data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].T
        frames = np.arange(len(y)) * 2.0
        design = sim.trial_regressors(events.onset.to_numpy(), events.duration.to_numpy(), frames)
        amps = truth["amplitudes"][truth["trial_run"] == run]
        pred = design @ amps * truth["baseline"] / 100.0
        noise = _residual(y - pred, _cosines(conf))
        snr_hat.append(pred.std(0)[resp] / noise.std(0)[resp])
    measured = np.log(np.mean(snr_hat, axis=0) / 3.0)
    r = np.corrcoef(measured, np.log(mult[resp]))[0, 1]
    print(f"log SNR: r = {r:.3f}, sd measured {measured.std():.3f}")
    assert r > 0.95
    assert abs(measured.std() - np.log(mult[resp]).std()) < 0.1


# ----------------------------------------------------------------------------- nulls


def _repeat_reliability(root: Path) -> float:
    """Mean over voxels of the correlation, across test images, of their two repeats' betas."""
    truth = sim.load_ground_truth(root, "01")
    betas = _lsa_betas(root, truth)
    stim = truth["trial_stim_index"]
    test_ids = np.flatnonzero(truth["split"] == "test")
    first = np.stack([betas[np.flatnonzero(stim == i)[0]] for i in test_ids])
    second = np.stack([betas[np.flatnonzero(stim == i)[1]] for i in test_ids])
    a, b = first - first.mean(0), second - second.mean(0)
    return float(((a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0))).mean())


def test_null_snr0_has_the_noise_but_no_signal(tmp_path):
    """snr0: same noise as the dataset at its SNR (same seed), no stimulus signal: test images'
    repeats no longer agree (they do in the dataset with signal)."""
    kw = {**SMALL, "n_runs": 2, "n_test": 10, "n_repeats": 2, "seed": 4, "snr": 2.0}
    real_root = _oracle_sim(tmp_path / "a", **kw)
    root = _oracle_sim(tmp_path / "b", null="snr0", **kw)
    real, null = sim.load_ground_truth(real_root, "01"), sim.load_ground_truth(root, "01")
    np.testing.assert_array_equal(null["noise_std"], real["noise_std"])
    assert np.all(null["amplitudes"] == 0) and np.all(null["signal_std"] == 0)
    rel = {"real": _repeat_reliability(real_root), "snr0": _repeat_reliability(root)}
    print(f"repeat reliability of test betas: {rel}")
    assert rel["real"] > 0.4
    assert abs(rel["snr0"]) < 0.1


def _decode(root: Path, subject: str) -> dict[str, float]:
    """Semantic features of the test images decoded from test-trial betas (ridge trained on the
    training trials), scored by two-way identification with its permutation null."""
    truth = sim.load_ground_truth(root, subject)
    betas = _lsa_betas(root, truth, subject)
    stim = truth["trial_stim_index"]
    train = truth["split"][stim] == "train"
    test_ids = np.flatnonzero(truth["split"] == "test")
    x_test = np.stack([betas[stim == i].mean(0) for i in test_ids])
    decoder = fit_ridge_cv(betas[train], truth["semantic"][stim[train]], alphas=[1, 10, 100, 1000])
    pred = decoder.predict(x_test)
    per_image, stats = identification_with_null(
        truth["semantic"][test_ids], pred, n_permutations=1000, n_boot=200, seed=0
    )
    return {"observed": float(per_image.mean()), **stats}


def test_null_permuted_lands_inside_its_permutation_null(tmp_path):
    """Labels permuted: decoding lands inside its permutation null (observed <= the null's 95th
    percentile) in at least 4 of 5 subjects (each has its own permutation and noise; under a
    true null each lands inside with probability 0.95, so 4 of 5 or more with 0.977). As the
    check that this can fail, the same design without the null decodes far above its null.
    Pre-registered: subjects 01-05 of seed 0 were not looked at before this check was set. It
    was first set with 16 test images and realism off; issue 22's rules then moved it, before
    it ran again, to 100 test images and the default (realistic) simulation."""
    kw = {"n_runs": 2, "n_train": 80, "n_test": 100, "n_repeats": 2, "image_size": 32}
    kw |= {"seed": 0, "snr": 2.0}
    real = _decode(sim.simulate_dataset(tmp_path / "a", n_subjects=1, **kw), "01")
    print(f"real {real}")
    assert real["observed"] > real["null_p95"] and real["p_value"] < 0.01
    root = sim.simulate_dataset(tmp_path / "b", n_subjects=5, null="permuted", **kw)
    nulls = [_decode(root, f"{s:02d}") for s in range(1, 6)]
    for s, null in enumerate(nulls, start=1):
        print(f"null sub-{s:02d}: " + ", ".join(f"{k} {v:.3f}" for k, v in null.items()))
    inside = sum(null["observed"] <= null["null_p95"] for null in nulls)
    assert inside >= 4


def test_mixed_tuning_plants_exact_unique_fractions():
    """unique_fractions: each voxel of a listed ROI has, over the shown stimuli, exactly the
    planted unique fractions of variance partitioning (independent least-squares fits with an
    intercept on the planting spaces); its mean and spread of amplitudes are its own tuning's;
    the unlisted ROI is untouched; the default config draws nothing."""
    from dataclasses import replace as dc_replace

    from nipype_brainrecon.synthetic import stimuli as stim
    from nipype_brainrecon.synthetic.simulate.config import SimulationConfig
    from nipype_brainrecon.synthetic.simulate.features import low_level_features
    from nipype_brainrecon.synthetic.simulate.voxels import brain_grid, voxel_model

    scenes = stim.generate_scenes(160, seed=3)
    semantic = np.stack([stim.scene_semantics(s) for s in scenes])
    low = np.stack([low_level_features(stim.render_scene(s, 64)) for s in scenes])
    low = low.reshape(len(scenes), -1)
    used = np.arange(0, 160, 2)  # half the stimuli "not shown": amplitudes still defined
    model = voxel_model(np.random.default_rng(0), brain_grid()["dseg"], low, semantic, used)
    cfg = SimulationConfig(1, 1, 0, 1.0, None, 10, 1, 2.0, 4.0, 3.0, 64, 1, 0.1, 0.2, 0.3, 1.0)
    cfg = dc_replace(cfg, **ORACLE)
    assert not realism.realism_active(cfg)
    cfg = dc_replace(cfg, unique_fractions=(("early", 0.5, 0.1),))
    assert realism.realism_active(cfg)
    mixed_model, mixed = realism.apply_mixed_tuning(cfg, 1, model, low, semantic, used)

    def r2(x, y):
        x1 = np.column_stack([np.ones(len(x)), x])
        e = y - x1 @ np.linalg.lstsq(x1, y, rcond=None)[0]
        return 1 - (e**2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)

    early = model.early
    amp = mixed_model.stim_amp[used][:, early]
    z, c = mixed.z_space[used], mixed.c_space[used]
    r2z, r2c, r2j = r2(z, amp), r2(c, amp), r2(np.hstack([z, c]), amp)
    np.testing.assert_allclose(r2j - r2c, 0.5, atol=1e-9)
    np.testing.assert_allclose(r2j - r2z, 0.1, atol=1e-9)
    np.testing.assert_allclose(mixed.planted[early], [[0.5, 0.1, 0.4]] * int(early.sum()))
    assert np.all(np.isnan(mixed.planted[~early]))
    np.testing.assert_allclose(mixed_model.specific_sd[early], model.specific_sd[early])
    np.testing.assert_allclose(amp.mean(0), model.stim_amp[used][:, early].mean(0))
    np.testing.assert_array_equal(mixed_model.stim_amp[:, ~early], model.stim_amp[:, ~early])
    # the early tuning of before (pRFs) is gone: the mixed signal is not its own tuning
    assert np.max(np.abs(mixed_model.stim_amp[:, early] - model.stim_amp[:, early])) > 0.1
    with pytest.raises(UsageError, match="--unique-fractions"):
        sim.config.check_config(dc_replace(cfg, unique_fractions=(("v1", 0.5, 0.1),)), None)
    with pytest.raises(UsageError, match="--unique-fractions"):
        sim.config.check_config(dc_replace(cfg, unique_fractions=(("early", 0.8, 0.3),)), None)


def test_cli_unique_fractions_and_preset_reach_the_dataset(tmp_path):
    """The whole route: ``--unique-fractions`` and ``--preset harder`` from the command line to
    the written truth. Over the shown stimuli, every early voxel's amplitudes have exactly the
    planted unique fractions on the saved planting spaces; the preset's values are recorded and
    an option given explicitly wins over the preset."""
    args = ["--subjects", "1", "--runs", "1", "--train", "30", "--test", "6", "--repeats", "1"]
    mixed = ["--unique-fractions", "early:0.6,0.15", "-q"]
    assert sim.main([str(tmp_path / "mixed"), *args, *mixed]) == 0
    truth = sim.load_ground_truth(tmp_path / "mixed", "01")
    assert truth["params"]["realism"]["unique_fractions"] == {
        "early": {"unique_z": 0.6, "unique_c": 0.15, "shared": pytest.approx(0.25)}
    }
    early = truth["voxel_roi"] == "early"
    off = ~truth["responsive"]  # non-responsive voxels (default realism): no fractions
    assert off[early].any()
    planted = np.column_stack([truth[f"planted_{k}"] for k in ("unique_z", "unique_c", "shared")])
    early &= ~off
    np.testing.assert_allclose(planted[early], [[0.6, 0.15, 0.25]] * int(early.sum()))
    assert np.all(np.isnan(planted[~early]))

    def r2(x, y):
        x1 = np.column_stack([np.ones(len(x)), x])
        e = y - x1 @ np.linalg.lstsq(x1, y, rcond=None)[0]
        return 1 - (e**2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)

    amp = truth["stimulus_amplitudes"][:, early]
    z, c = truth["mixed_z_space"], truth["mixed_c_space"]
    joint = r2(np.hstack([z, c]), amp)
    np.testing.assert_allclose(joint - r2(c, amp), 0.6, atol=1e-8)
    np.testing.assert_allclose(joint - r2(z, amp), 0.15, atol=1e-8)

    harder = ["--preset", "harder", "--snr-spread", "0.2", "-q"]
    assert sim.main([str(tmp_path / "harder"), *args, *harder]) == 0
    params = sim.load_ground_truth(tmp_path / "harder", "01")["params"]["realism"]
    assert params["hrf_mismatch_s"] == 1.0 and params["physio_fraction_of_noise_variance"] == 0.3
    assert params["noise_fwhm_voxels"] == 2.0 and params["nonresponsive_fraction"] == 0.3
    assert params["snr_spread_sd_log"] == 0.2  # given explicitly: wins over the preset's 0.5
    assert sim.main([str(tmp_path / "bad"), *args, "--unique-fractions", "v1:0.1,0.1"]) == 64
    assert not (tmp_path / "bad").exists()
