"""The simulated dataset: layout, validity, ground truth recovered from the data, and the CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from nipype_brainrecon.errors import MissingInputError, OutputError, UsageError
from nipype_brainrecon.synthetic import simulate as sim
from nipype_brainrecon.synthetic import stimuli as st
from nipype_brainrecon.synthetic.simulate import dataset as sim_dataset
from nipype_brainrecon.synthetic.simulate.presets import preset_options

N_SUBJECTS, N_RUNS, N_REPEATS = 2, 3, 3


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default dataset, written through the command line; also times it."""
    out = tmp_path_factory.mktemp("cli") / "sim"
    start = time.perf_counter()
    code = sim.main([str(out), "--subjects", str(N_SUBJECTS), "--quiet"])
    return {"out": out, "code": code, "seconds": time.perf_counter() - start}


@pytest.fixture(scope="module")
def dataset(default_run) -> Path:
    assert default_run["code"] == 0
    return default_run["out"]


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("noiseless") / "sim"
    return sim.simulate_dataset(  # oracle: the GLM's own HRF, so LSA recovers the amplitudes
        out,
        n_subjects=1,
        n_runs=2,
        snr=math.inf,
        n_train=40,
        n_test=6,
        n_repeats=2,
        seed=5,
        **preset_options("oracle"),
    )


def _validator() -> str:
    exe = Path(sys.executable).parent / "bids-validator-deno"
    found = str(exe) if exe.is_file() else shutil.which("bids-validator-deno")
    if not found:
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    return found


@pytest.fixture(scope="module")
def validation(dataset) -> dict[str, subprocess.CompletedProcess]:
    """One validator run per dataset folder, shared by the tests of this module."""
    exe = _validator()
    runs = {}
    for name, folder in (
        ("raw", dataset),
        ("fmriprep", dataset / "derivatives" / "fmriprep"),
        ("simulation", dataset / "derivatives" / "simulation"),
    ):
        runs[name] = subprocess.run(
            [exe, "--format", "json", str(folder)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    return runs


# ----------------------------------------------------------------------------- helpers


def _stem(sub: str, run: int) -> str:
    return f"sub-{sub}_task-{sim.TASK}_run-{run:02d}"


def _run_data(root: Path, sub: str, run: int, ijk: np.ndarray):
    prep = root / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
    img = nib.load(prep / f"{_stem(sub, run)}_space-T1w_desc-preproc_bold.nii.gz")
    data = np.asarray(img.dataobj, dtype=np.float64)
    y = data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].T  # time × voxels
    events = pd.read_csv(root / f"sub-{sub}" / "func" / f"{_stem(sub, run)}_events.tsv", sep="\t")
    conf = pd.read_csv(prep / f"{_stem(sub, run)}_desc-confounds_timeseries.tsv", sep="\t")
    tr = json.loads((prep / f"{_stem(sub, run)}_space-T1w_desc-preproc_bold.json").read_text())[
        "RepetitionTime"
    ]
    frame_times = np.arange(y.shape[0]) * tr
    design = sim.trial_regressors(events.onset.to_numpy(), events.duration.to_numpy(), frame_times)
    nuisance = np.column_stack([np.ones(len(frame_times)), conf.filter(like="cosine").to_numpy()])
    return y, events, design, nuisance


def _lsa_betas(root: Path, sub: str, truth: dict) -> np.ndarray:
    """Least-squares-all per-trial betas in % signal change, trials in ground-truth order."""
    betas = []
    for run in range(1, int(truth["trial_run"].max()) + 1):
        y, _, design, nuisance = _run_data(root, sub, run, truth["voxel_ijk"])
        coef = np.linalg.lstsq(np.column_stack([design, nuisance]), y, rcond=None)[0]
        betas.append(coef[: design.shape[1]] / (truth["baseline"] / 100.0))
    return np.vstack(betas)


def _ridge(x_train, y_train, x_test, alpha):
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-9
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y_train - y_train.mean(0)))
    return b @ w + y_train.mean(0)


# ----------------------------------------------------------------------------- CLI and layout


def test_cli_writes_default_dataset_quickly(default_run):
    print(f"brainrecon-simulate --subjects {N_SUBJECTS}: {default_run['seconds']:.1f} s")
    assert default_run["code"] == 0
    assert default_run["seconds"] < 30
    siblings = [p.name for p in default_run["out"].parent.iterdir()]
    assert siblings == ["sim"]  # no .partial left over


def test_layout_files(dataset):
    desc = json.loads((dataset / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["License"] and desc["Authors"]
    assert desc["GeneratedBy"][0]["Name"] == "nipype-brainrecon"
    parts = pd.read_csv(dataset / "participants.tsv", sep="\t")
    assert list(parts.participant_id) == ["sub-01", "sub-02"]
    fmriprep = dataset / "derivatives" / "fmriprep"
    assert json.loads((fmriprep / "dataset_description.json").read_text())["DatasetType"] == (
        "derivative"
    )
    lut = pd.read_csv(fmriprep / "desc-visual_dseg.tsv", sep="\t")
    assert dict(zip(lut["index"], lut["name"], strict=True)) == {1: "early", 2: "ventral"}
    captions = pd.read_csv(dataset / "stimuli" / "captions.tsv", sep="\t")
    assert list(captions.columns) == ["stim_file", "caption"]
    assert captions.groupby("stim_file").size().min() >= 3
    n_images = len(list((dataset / "stimuli").glob("*.png")))
    assert n_images == sim.DEFAULT_N_TRAIN + sim.DEFAULT_N_TEST == captions.stim_file.nunique()
    for sub in ("01", "02"):
        for run in range(1, N_RUNS + 1):
            stem = _stem(sub, run)
            sidecar = json.loads(
                (dataset / f"sub-{sub}" / "func" / f"{stem}_bold.json").read_text()
            )
            assert sidecar["RepetitionTime"] == 2.0 and sidecar["TaskName"] == "vision"
            for name in (
                f"{stem}_space-T1w_desc-preproc_bold.nii.gz",
                f"{stem}_space-T1w_desc-preproc_bold.json",
                f"{stem}_space-T1w_desc-brain_mask.nii.gz",
                f"{stem}_desc-confounds_timeseries.tsv",
                f"{stem}_desc-confounds_timeseries.json",
            ):
                assert (fmriprep / f"sub-{sub}" / "func" / name).is_file(), name
        assert (
            fmriprep / f"sub-{sub}" / "anat" / f"sub-{sub}_space-T1w_desc-visual_dseg.nii.gz"
        ).is_file()


def test_images_headers_and_rois(dataset):
    func = dataset / "sub-01" / "func"
    prep = dataset / "derivatives" / "fmriprep" / "sub-01"
    raw = nib.load(func / f"{_stem('01', 1)}_bold.nii.gz")
    pre = nib.load(prep / "func" / f"{_stem('01', 1)}_space-T1w_desc-preproc_bold.nii.gz")
    mask = nib.load(prep / "func" / f"{_stem('01', 1)}_space-T1w_desc-brain_mask.nii.gz")
    dseg = nib.load(prep / "anat" / "sub-01_space-T1w_desc-visual_dseg.nii.gz")
    assert raw.shape[:3] == sim.GRID_SHAPE and raw.ndim == 4 and raw.shape[3] > 100
    assert raw.header.get_zooms() == (3.0, 3.0, 3.0, 2.0)
    assert raw.header.get_xyzt_units() == ("mm", "sec")
    assert raw.get_data_dtype() == np.float32
    for img in (pre, mask, dseg):
        np.testing.assert_array_equal(img.affine, raw.affine)
    # preproc is documented as equal to raw (no spatial motion was simulated)
    np.testing.assert_array_equal(np.asarray(pre.dataobj), np.asarray(raw.dataobj))
    m = np.asarray(mask.dataobj).astype(bool)
    labels = np.asarray(dseg.dataobj)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.all(m[labels > 0])  # ROIs inside the brain
    counts = {lab: int((labels == lab).sum()) for lab in (1, 2)}
    assert all(100 <= c <= 400 for c in counts.values()), counts
    data = np.asarray(raw.dataobj)
    assert data[m].mean() > 10 * data[~m].mean()  # brain is bright, background dark


def test_events_spread_test_repeats_over_runs(dataset):
    truth = sim.load_ground_truth(dataset, "01")
    split = dict(zip(truth["stim_file"], truth["split"], strict=True))
    for sub in ("01", "02"):
        frames = []
        for run in range(1, N_RUNS + 1):
            ev = pd.read_csv(
                dataset / f"sub-{sub}" / "func" / f"{_stem(sub, run)}_events.tsv", sep="\t"
            )
            assert list(ev.columns) == ["onset", "duration", "trial_type", "stim_file"]
            assert set(ev.trial_type) == {"stimulus"}
            np.testing.assert_allclose(np.diff(ev.onset), 4.0)
            np.testing.assert_allclose(ev.duration, 3.0)
            assert all((dataset / "stimuli" / f).is_file() for f in ev.stim_file)
            frames.append(ev.assign(run=run))
        ev = pd.concat(frames)
        shown = ev.groupby("stim_file").agg(n=("run", "size"), runs=("run", "nunique"))
        for name, row in shown.iterrows():
            if split[name] == "train":
                assert row.n == 1
            else:
                assert row.n == N_REPEATS and row.runs == N_REPEATS  # one repeat per run
        assert len(shown) == sim.DEFAULT_N_TRAIN + sim.DEFAULT_N_TEST
        sizes = [len(f) for f in frames]
        assert max(sizes) - min(sizes) <= 1  # balanced runs


def test_confounds_follow_fmriprep(dataset):
    prep = dataset / "derivatives" / "fmriprep" / "sub-02" / "func"
    conf = pd.read_csv(prep / f"{_stem('02', 2)}_desc-confounds_timeseries.tsv", sep="\t")
    motion = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    needed = motion + [f"{m}_derivative1" for m in motion]
    needed += ["framewise_displacement", "global_signal", "csf", "white_matter", "cosine00"]
    assert set(needed) <= set(conf.columns)
    img = nib.load(prep / f"{_stem('02', 2)}_space-T1w_desc-preproc_bold.nii.gz")
    assert len(conf) == img.shape[3]
    assert conf.framewise_displacement.isna().tolist() == [True] + [False] * (len(conf) - 1)
    mov = conf[motion].to_numpy()
    fd = np.abs(np.diff(mov[:, :3], axis=0)).sum(1) + 50 * np.abs(np.diff(mov[:, 3:], axis=0)).sum(
        1
    )
    np.testing.assert_allclose(conf.framewise_displacement[1:], fd, rtol=1e-4, atol=1e-6)
    mask = np.asarray(
        nib.load(prep / f"{_stem('02', 2)}_space-T1w_desc-brain_mask.nii.gz").dataobj
    ).astype(bool)
    gs = np.asarray(img.dataobj)[mask].mean(axis=0)
    np.testing.assert_allclose(conf.global_signal, gs, rtol=1e-5)
    cos = conf.filter(like="cosine").to_numpy()
    assert cos.shape[1] == int(2 * len(conf) * 2.0 / 128)  # 128 s high-pass DCT basis
    np.testing.assert_allclose(cos.T @ cos, np.eye(cos.shape[1]), atol=1e-4)


# ----------------------------------------------------------------------------- validity


@pytest.mark.parametrize("folder", ["raw", "fmriprep", "simulation"])
def test_bids_validator_accepts(validation, folder):
    result = validation[folder]
    report = json.loads(result.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert result.returncode == 0, errors[:5]
    assert not errors


def test_pybids_indexes_every_run(dataset):
    from bids import BIDSLayout

    layout = BIDSLayout(dataset, derivatives=True)
    assert layout.get_subjects() == ["01", "02"]
    assert layout.get_tasks() == ["vision"]
    for sub in ("01", "02"):
        for run in range(1, N_RUNS + 1):
            common = {"subject": sub, "task": "vision", "run": run}
            for query in (
                {"desc": "preproc", "suffix": "bold", "space": "T1w", "extension": ".nii.gz"},
                {"desc": "brain", "suffix": "mask", "space": "T1w", "extension": ".nii.gz"},
                {"desc": "confounds", "suffix": "timeseries", "extension": ".tsv"},
                {"suffix": "events", "extension": ".tsv"},
                {"suffix": "bold", "extension": ".nii.gz", "scope": "raw"},
            ):
                found = layout.get(**common, **query)
                assert len(found) == 1, (sub, run, query)
        bold = layout.get(subject=sub, run=1, desc="preproc", suffix="bold", extension=".nii.gz")
        assert bold[0].get_metadata()["RepetitionTime"] == 2.0
        dseg = layout.get(subject=sub, desc="visual", suffix="dseg", extension=".nii.gz")
        assert len(dseg) == 1


# ----------------------------------------------------------------------------- ground truth


def test_ground_truth_is_self_consistent(dataset):
    truth = sim.load_ground_truth(dataset, "sub-01")
    assert truth["params"]["hrf_model"] == "glover" and truth["params"]["seed"] == 0
    assert truth["params"]["snr"] == 1.0 and "std" in truth["params"]["snr_definition"]
    resp = truth["responsive"]  # non-responsive voxels (default realism) have no amplitudes
    assert np.all(truth["stimulus_amplitudes"][:, ~resp] == 0) and (~resp).any()
    early = truth["voxel_label"] == 1
    ventral = truth["voxel_label"] == 2
    assert set(truth["voxel_roi"][early]) == {"early"}
    # amplitudes per stimulus = intercept + weights · features (responsive voxels)
    for roi, features, weights in (
        (early, "low_level", "weights_early"),
        (ventral, "semantic", "weights_ventral"),
    ):
        on = resp[roi]
        np.testing.assert_allclose(
            truth["stimulus_amplitudes"][:, roi][:, on],
            (truth[features] @ truth[weights].T + truth["intercept"][roi])[:, on],
        )
    # trial amplitudes = that stimulus's amplitude + small trial-to-trial variability
    dev = (truth["amplitudes"] - truth["stimulus_amplitudes"][truth["trial_stim_index"]])[:, resp]
    spread = truth["stimulus_amplitudes"][:, resp].std(axis=0)
    assert 0.05 < np.median(dev.std(axis=0) / spread) < 0.15
    assert np.all((truth["prf_x"] > 0) & (truth["prf_x"] < 1) & (truth["prf_sigma"] > 0))
    assert truth["weights_early"].shape == (early.sum(), truth["low_level"].shape[1])
    assert list(truth["trial_stim_file"][:3]) == [
        truth["stim_file"][i] for i in truth["trial_stim_index"][:3]
    ]
    # semantic features are the scenes' semantics
    scenes = json.loads((dataset / "derivatives" / "simulation" / "scenes.json").read_text())
    first = truth["stim_file"][0]
    np.testing.assert_array_equal(
        truth["semantic"][0], st.scene_semantics(st.Scene.from_dict(scenes[first]))
    )
    with pytest.raises(MissingInputError, match="sub-07"):
        sim.load_ground_truth(dataset, "07")


def test_noiseless_lsa_recovers_trial_amplitudes(noiseless):
    truth = sim.load_ground_truth(noiseless, "01")
    betas = _lsa_betas(noiseless, "01", truth)
    for label, name in sim.ROI_LABELS.items():
        m = truth["voxel_label"] == label
        r = np.corrcoef(betas[:, m].ravel(), truth["amplitudes"][:, m].ravel())[0, 1]
        print(f"noiseless LSA, {name}: r = {r:.6f}")
        assert r > 0.99


def _true_response(events: pd.DataFrame, frames: np.ndarray, amps: np.ndarray, truth: dict):
    """Noiseless stimulus response (time × voxels), each voxel through its own true HRF."""
    from nipype_brainrecon.synthetic.simulate import realism

    timing = (events.onset.to_numpy(), events.duration.to_numpy(), frames)
    hrfs = np.column_stack([truth["hrf_delay"], truth["hrf_undershoot"]])
    pred = np.empty((len(frames), amps.shape[1]))
    for hrf in np.unique(hrfs, axis=0):
        cols = np.flatnonzero((hrfs == hrf).all(axis=1))
        pred[:, cols] = realism.hrf_regressors(*timing, *hrf) @ amps[:, cols]
    return pred


def test_snr_estimated_from_data_matches_stated(dataset):
    """Fit each responsive voxel with its true (noiseless) response, through its own HRF, plus
    the drift basis: the estimated SNR over the voxel's planted multiplier is the stated SNR."""
    for sub in ("01", "02"):
        truth = sim.load_ground_truth(dataset, sub)
        resp = truth["responsive"]
        assert 0 < resp.mean() < 1  # the default has non-responsive voxels
        estimates = []
        for run in range(1, N_RUNS + 1):
            y, events, _, nuisance = _run_data(dataset, sub, run, truth["voxel_ijk"])
            amps = truth["amplitudes"][truth["trial_run"] == run]
            frames = np.arange(len(y)) * 2.0
            pred = _true_response(events, frames, amps, truth) * (truth["baseline"] / 100.0)
            y, pred = y[:, resp], pred[:, resp]
            # remove baseline and drift from data and prediction, then one slope per voxel
            proj = nuisance @ np.linalg.pinv(nuisance)
            y_r, p_r = y - proj @ y, pred - proj @ pred
            slope = (y_r * p_r).sum(0) / (p_r**2).sum(0)
            resid = y_r - slope * p_r
            dof = len(y) - nuisance.shape[1] - 1
            noise_sd = np.sqrt((resid**2).sum(0) / dof)
            signal_sd = (slope * pred).std(0)
            estimates.append(signal_sd / noise_sd / truth["snr_multiplier"][resp])
        est = float(np.median(np.concatenate(estimates)))
        print(f"sub-{sub}: stated SNR 1.0, estimated {est:.3f} (per voxel over its multiplier)")
        assert abs(est - 1.0) < 0.10


@pytest.fixture(scope="module")
def hundred_test_images(tmp_path_factory) -> Path:
    """A default dataset (realism on) of one subject with 100 test images."""
    out = tmp_path_factory.mktemp("hundred") / "sim"
    return sim.simulate_dataset(out, n_subjects=1, n_test=100, seed=0)


def test_default_data_decodes_layout_from_early_and_meaning_from_ventral(hundred_test_images):
    """Proxies of z (the image at 8×8) and c (semantic vector): early vs ventral dissociate.

    Each proxy is identified (two-way, ties half) above its permutation null's 95th percentile
    where it lives, and better there than from the other ROI by a one-sided sign-flip test of
    the per-image differences (p < 0.05). These null-based levels replaced fixed ones (0.8,
    0.9, margins 0.1 and 0.05) chosen from one measured value; the test set grew from 20 to 100
    images and the data became the realistic default (issue 22), both set before this ran. The
    same claims over pre-registered seeds: ``benchmarks/bench_seeds.py``."""
    dataset = hundred_test_images
    from nipype_brainrecon.evaluation.metrics import identification_with_null
    from nipype_brainrecon.evaluation.nulls import sign_flip_p

    truth = sim.load_ground_truth(dataset, "01")
    betas = _lsa_betas(dataset, "01", truth)
    stim_idx = truth["trial_stim_index"]
    is_train = truth["split"][stim_idx] == "train"
    test_ids = np.flatnonzero(truth["split"] == "test")
    pixels = np.stack(
        [
            np.asarray(
                Image.open(dataset / "stimuli" / f).convert("RGB").resize((8, 8), Image.BOX),
                dtype=float,
            ).ravel()
            for f in truth["stim_file"]
        ]
    )
    targets = {"image": pixels, "semantics": truth["semantic"]}
    score = {}
    for label, roi in sim.ROI_LABELS.items():
        m = truth["voxel_label"] == label
        x_train = betas[is_train][:, m]
        x_test = np.stack([betas[stim_idx == i][:, m].mean(0) for i in test_ids])
        for name, target in targets.items():
            pred = _ridge(x_train, target[stim_idx[is_train]], x_test, alpha=10.0)
            score[roi, name] = identification_with_null(target[test_ids], pred)
    print({f"{k[0]}->{k[1]}": (round(v[0].mean(), 3), v[1]) for k, v in score.items()})
    for roi, name in (("early", "image"), ("ventral", "semantics")):
        per_image, stats = score[roi, name]
        assert per_image.mean() > stats["null_p95"] and stats["p_value"] < 0.05
    for name, there, other in (("image", "early", "ventral"), ("semantics", "ventral", "early")):
        difference = score[there, name][0] - score[other, name][0]
        assert difference.mean() > 0 and sign_flip_p(difference) < 0.05


def test_same_seed_same_data(tmp_path):
    kw = {"n_subjects": 1, "n_runs": 1, "n_train": 8, "n_test": 2, "n_repeats": 1}
    a = sim.simulate_dataset(tmp_path / "a", seed=3, **kw)
    b = sim.simulate_dataset(tmp_path / "b", seed=3, **kw)
    c = sim.simulate_dataset(tmp_path / "c", seed=4, **kw)
    name = f"sub-01/func/{_stem('01', 1)}_bold.nii.gz"

    def load(root):
        return np.asarray(nib.load(root / name).dataobj)

    np.testing.assert_array_equal(load(a), load(b))
    assert (a / "stimuli/captions.tsv").read_text() == (b / "stimuli/captions.tsv").read_text()
    assert load(a).shape != load(c).shape or not np.array_equal(load(a), load(c))


def test_user_stimuli(tmp_path):
    src = tmp_path / "mine"
    st.write_stimuli(src, st.generate_scenes(10, seed=9), size=48, n_captions=3)
    for p in src.glob("*.png"):  # rename, so the copy is not mistaken for generated files
        p.rename(p.with_name(p.name.replace("stim-", "photo_")))
    table = (src / st.CAPTIONS_FILE).read_text().replace("stim-", "photo_")
    (src / st.CAPTIONS_FILE).write_text(table)
    out = sim.simulate_dataset(
        tmp_path / "sim", stimuli_dir=src, n_subjects=1, n_runs=2, n_test=2, n_repeats=2
    )
    assert sorted(p.name for p in (out / "stimuli").glob("*.png")) == sorted(
        p.name for p in src.glob("*.png")
    )
    truth = sim.load_ground_truth(out, "01")
    assert truth["params"]["semantic_features"] == "caption bag-of-words"
    assert truth["params"]["n_train"] == 8 and truth["params"]["n_test"] == 2
    assert set(truth["semantic_names"]) & set(st.SHAPES)  # vocabulary: words of the captions
    assert set(truth["semantic_names"]) <= set(table.lower().replace("\t", " ").split()) | {""}
    ev = pd.read_csv(out / "sub-01" / "func" / f"{_stem('01', 1)}_events.tsv", sep="\t")
    assert ev.stim_file.str.startswith("photo_").all()
    with pytest.raises(UsageError, match="has 10 images"):
        sim.simulate_dataset(tmp_path / "sim2", stimuli_dir=src, n_train=9, n_test=2)
    assert not (tmp_path / "sim2").exists()


# ----------------------------------------------------------------------------- errors


def _leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name == name or ".partial" in p.name]


@pytest.mark.parametrize(
    ("args", "code", "pattern"),
    [
        (["--snr", "-1"], 64, "--snr -1"),
        (["--snr", "nan"], 64, "--snr nan"),
        (["--subjects", "0"], 64, "--subjects"),
        (["--runs", "two"], 64, "--runs"),
        (["--tr", "0"], 64, "--tr"),
        (["--no-such-option"], 64, "unrecognized"),
        (["--stimuli", "DOES-NOT-EXIST"], 66, "--stimuli"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, args, code, pattern):
    args = [a.replace("DOES-NOT-EXIST", str(tmp_path / "nothing")) for a in args]
    out = tmp_path / "out"
    assert sim.main([str(out), *args]) == code
    err = capsys.readouterr().err.strip()
    assert pattern in err and len(err.splitlines()) == 1, err
    assert _leftovers(tmp_path, "out") == []


def test_cli_refuses_output_inside_a_dataset_or_non_empty(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset_description.json").write_text("{}")
    assert sim.main([str(tmp_path / "ds" / "derivatives" / "sim")]) == 73
    assert "inside the existing BIDS dataset" in capsys.readouterr().err
    assert not (tmp_path / "ds" / "derivatives").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert sim.main([str(tmp_path / "full")]) == 73
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    with pytest.raises(OutputError):
        sim.simulate_dataset(tmp_path / "full")


def test_cli_bad_stimuli_table_is_a_data_error(tmp_path, capsys):
    src = tmp_path / "mine"
    src.mkdir()
    Image.new("RGB", (8, 8)).save(src / "a.png")
    Image.new("RGB", (8, 8)).save(src / "b.png")
    (src / st.CAPTIONS_FILE).write_text("stim_file\tcaption\na.png\ta black square\n")
    assert sim.main([str(tmp_path / "out"), "--stimuli", str(src)]) == 65
    assert "b.png: image has no caption" in capsys.readouterr().err
    assert _leftovers(tmp_path, "out") == []


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sim_dataset, "simulate_subject", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        sim.simulate_dataset(tmp_path / "out", n_train=4, n_test=1)
    assert list(tmp_path.iterdir()) == []


def test_cli_help_and_version(capsys):
    assert sim.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--snr" in text and "--stimuli" in text
    assert sim.main(["--version"]) == 0
    assert "brainrecon-simulate" in capsys.readouterr().out
