"""A simulated BIDS dataset with known ground truth, and the ``brainrecon-simulate`` command.

The simulator writes a raw BIDS dataset (BOLD runs of a rapid event-related ``vision`` task, events,
stimuli and captions), fMRIPrep-like derivatives (preprocessed BOLD, brain mask, confounds, a
visual-ROI segmentation) and the ground truth (per-trial amplitudes, voxel weights, receptive
fields, stimulus features) under ``derivatives/simulation``. See ``docs/simulation.md``.

Model, per subject:

* ``early`` voxels have population receptive fields (2D Gaussians over the image) pooling
  low-level maps of the image (luminance, local contrast, red-green, blue-yellow on a 16 × 16 grid);
* ``ventral`` voxels respond to the scene's semantic vector (which shapes, colours, sizes,
  background), not to where things are;
* per-trial amplitude (% signal change) = intercept + weights · stimulus features
  (+ trial-to-trial variability);
* BOLD = baseline · (1 + amplitudes convolved with nilearn's Glover HRF / 100) + slow drift
  (in the span of the confounds' cosine columns) + noise (AR(1) Gaussian + a motion-correlated part
  driven by the simulated motion written in the confounds), the noise scaled per voxel and run so
  that std(stimulus-driven signal) / std(noise) over time equals ``snr`` exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image

from .._version import __version__
from ..errors import BrainreconError, MissingInputError, OutputError, UsageError
from ..io import atomic_directory
from . import stimuli as stim

__all__ = [
    "GRID_SHAPE",
    "HRF_MODEL",
    "LOW_LEVEL_CHANNELS",
    "ROI_LABELS",
    "SNR_DEFINITION",
    "TASK",
    "brain_grid",
    "load_ground_truth",
    "low_level_features",
    "main",
    "simulate_dataset",
    "trial_regressors",
]

TASK = "vision"
#: BOLD grid (x: left→right, y: posterior→anterior, z: inferior→superior) and voxel size (mm).
GRID_SHAPE: tuple[int, int, int] = (16, 16, 10)
VOXEL_SIZE = 3.0
#: Labels of the visual-ROI segmentation.
ROI_LABELS: dict[int, str] = {1: "early", 2: "ventral"}
#: The HRF used to make the BOLD (nilearn's name), so a GLM can use the same one.
HRF_MODEL = "glover"
#: Low-level image maps pooled by early voxels, and their grid.
LOW_LEVEL_CHANNELS: tuple[str, ...] = ("luminance", "contrast", "red-green", "blue-yellow")
LOW_LEVEL_GRID = 16
#: High-pass cut-off (s) of the cosine drift basis, as fMRIPrep's confounds use.
HIGH_PASS_S = 128.0
SNR_DEFINITION = (
    "per voxel and run: std over time of the stimulus-driven signal (trial amplitudes convolved "
    "with the HRF, in BOLD units) divided by std over time of the noise (AR(1) Gaussian plus "
    "motion-correlated part); baseline and slow drift are not noise; the noise of each responsive "
    "(early, ventral) voxel is scaled to give exactly this ratio, other brain voxels get the median "
    "noise level relative to baseline"
)
#: Defaults used when the stimuli are generated (with user stimuli, n_train defaults to the rest).
DEFAULT_N_TRAIN = 180
DEFAULT_N_TEST = 20

_LEAD_IN_S = 8.0  # rest before the first trial
_TAIL_S = 16.0  # rest after the last trial, so the last response is sampled
_DESCRIPTION_NAME = "nipype-brainrecon simulated vision dataset"


@dataclass(frozen=True)
class _Config:
    n_subjects: int
    n_runs: int
    seed: int
    snr: float
    n_train: int | None
    n_test: int
    n_repeats: int
    tr: float
    trial_interval: float
    trial_duration: float
    image_size: int
    n_captions: int
    trial_variability: float
    motion_fraction: float
    ar_coef: float
    drift_percent: float


# ----------------------------------------------------------------------------- anatomy


def brain_grid() -> dict[str, np.ndarray]:
    """The simulated anatomy on the BOLD grid.

    Returns
    -------
    dict
        ``affine`` (4 × 4, RAS mm), ``mask`` (bool brain mask, an ellipsoid), ``dseg`` (int16
        labels of :data:`ROI_LABELS`: ``early`` at the occipital pole, ``ventral`` on the inferior
        surface in front of it), ``csf`` and ``white_matter`` (bool, voxels inside the brain used
        for the fMRIPrep-like confounds; they carry no stimulus response).
    """
    shape = np.array(GRID_SHAPE)
    i, j, k = np.meshgrid(*[np.arange(s) for s in GRID_SHAPE], indexing="ij")
    centre = (shape - 1) / 2
    r2 = ((i - centre[0]) / 6.9) ** 2 + ((j - centre[1]) / 7.6) ** 2 + ((k - centre[2]) / 4.6) ** 2
    mask = r2 <= 1.0
    early = mask & (j <= 4) & (k <= 6)
    ventral = mask & ~early & (j >= 5) & (j <= 10) & (k <= 3)
    dseg = np.zeros(GRID_SHAPE, dtype=np.int16)
    dseg[early] = 1
    dseg[ventral] = 2
    csf = (
        mask & (np.abs(i - centre[0]) <= 1) & (np.abs(j - centre[1] - 1) <= 1) & (k >= 4) & (k <= 6)
    )
    white_matter = mask & (r2 <= 0.45) & ~csf & (dseg == 0)
    affine = np.diag([VOXEL_SIZE, VOXEL_SIZE, VOXEL_SIZE, 1.0])
    affine[:3, 3] = -centre * VOXEL_SIZE
    return {"affine": affine, "mask": mask, "dseg": dseg, "csf": csf, "white_matter": white_matter}


# ----------------------------------------------------------------------------- features


def low_level_features(image: Image.Image, grid: int = LOW_LEVEL_GRID) -> np.ndarray:
    """Low-level maps of an image, pooled on a ``grid`` × ``grid`` lattice.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode; converted to RGB in [0, 1].
    grid : int
        Side of the output maps.

    Returns
    -------
    numpy.ndarray
        Shape ``(4, grid, grid)``: mean luminance, local contrast (std of luminance within the
        cell), red-green (R - G) and blue-yellow (B - (R + G) / 2), channels in
        :data:`LOW_LEVEL_CHANNELS` order, rows top to bottom.
    """
    cell = 4
    side = grid * cell
    rgb = np.asarray(
        image.convert("RGB").resize((side, side), Image.Resampling.BOX), dtype=np.float64
    )
    rgb = rgb / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b

    def cells(x: np.ndarray) -> np.ndarray:
        return x.reshape(grid, cell, grid, cell).swapaxes(1, 2).reshape(grid, grid, cell * cell)

    return np.stack(
        [
            cells(lum).mean(-1),
            cells(lum).std(-1),
            cells(r - g).mean(-1),
            cells(b - (r + g) / 2).mean(-1),
        ]
    )


def _prf_profiles(x: np.ndarray, y: np.ndarray, sigma: np.ndarray, grid: int) -> np.ndarray:
    """Gaussian receptive fields on the feature grid, each summing to 1: (n_voxels, grid*grid)."""
    centres = (np.arange(grid) + 0.5) / grid
    gx = np.exp(-0.5 * ((centres[None, :] - x[:, None]) / sigma[:, None]) ** 2)
    gy = np.exp(-0.5 * ((centres[None, :] - y[:, None]) / sigma[:, None]) ** 2)
    prof = gy[:, :, None] * gx[:, None, :]
    prof /= prof.sum(axis=(1, 2), keepdims=True)
    return prof.reshape(len(x), grid * grid)


# ----------------------------------------------------------------------------- timing


def trial_regressors(
    onsets: np.ndarray, durations: np.ndarray, frame_times: np.ndarray
) -> np.ndarray:
    """One Glover-HRF regressor per trial (a least-squares-all design), as nilearn builds it.

    Parameters
    ----------
    onsets, durations : numpy.ndarray
        Seconds, one entry per trial.
    frame_times : numpy.ndarray
        Acquisition time of each volume (s), e.g. ``np.arange(n) * tr``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_volumes, n_trials)``: the response to a unit-amplitude boxcar of each trial.
    """
    from nilearn.glm.first_level import compute_regressor

    out = np.empty((len(frame_times), len(onsets)))
    for t, (onset, duration) in enumerate(zip(onsets, durations, strict=True)):
        cond = np.array([[onset], [duration], [1.0]])
        out[:, t] = compute_regressor(cond, HRF_MODEL, frame_times, oversampling=50)[0][:, 0]
    return out


def _cosine_basis(frame_times: np.ndarray) -> np.ndarray:
    """DCT drift basis with a 128 s cut-off (nilearn's, as fMRIPrep's cosine columns)."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    dm = make_first_level_design_matrix(
        frame_times, None, drift_model="cosine", high_pass=1.0 / HIGH_PASS_S
    )
    cols = [c for c in dm.columns if c.startswith("drift_")]
    return dm[cols].to_numpy()


def _schedule(
    test_ids: list[int], train_ids: list[int], cfg: _Config, rng: np.random.Generator
) -> list[np.ndarray]:
    """Stimulus index per trial for each run: test repeats in different runs, runs balanced."""
    runs: list[list[int]] = [[] for _ in range(cfg.n_runs)]
    for j, s in enumerate(test_ids):
        for r in range(cfg.n_repeats):
            runs[(j + r) % cfg.n_runs].append(s)
    for s in rng.permutation(train_ids):
        runs[int(np.argmin([len(r) for r in runs]))].append(int(s))
    out = []
    for trials in runs:
        order = np.array(trials)
        for _ in range(50):  # avoid showing the same image twice in a row
            order = rng.permutation(trials)
            if len(order) < 2 or not np.any(order[1:] == order[:-1]):
                break
        out.append(order)
    return out


# ----------------------------------------------------------------------------- noise, motion


def _ar1(rng: np.random.Generator, n_time: int, n_series: int, coef: float) -> np.ndarray:
    from scipy.signal import lfilter

    white = rng.standard_normal((n_time + 50, n_series))
    return lfilter([1.0], [1.0, -coef], white, axis=0)[50:]


def _motion(rng: np.random.Generator, n_time: int) -> np.ndarray:
    """Head motion (trans mm, rot rad): slow wander + jitter + an occasional small jerk."""
    wander = _ar1(rng, n_time, 6, 0.9) * np.array([0.04, 0.06, 0.05, 0.0008, 0.0006, 0.0007])
    jerks = np.zeros((n_time, 6))
    for t in rng.choice(n_time, size=max(1, n_time // 80), replace=False):
        jerks[t:] += rng.normal(0, 1, 6) * np.array([0.15, 0.2, 0.25, 0.002, 0.002, 0.002])
    return wander + jerks


_MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def _with_expansions(df: pd.DataFrame, name: str, values: np.ndarray) -> None:
    """Add a column with fMRIPrep's derivative1 / power2 expansions (first derivative is n/a)."""
    deriv = np.concatenate([[np.nan], np.diff(values)])
    df[name] = values
    df[f"{name}_derivative1"] = deriv
    df[f"{name}_power2"] = values**2
    df[f"{name}_derivative1_power2"] = deriv**2


def _confounds(
    data: np.ndarray, anat: dict[str, np.ndarray], motion: np.ndarray, cosines: np.ndarray
) -> pd.DataFrame:
    """fMRIPrep-named confounds computed from the preprocessed data (voxels × time)."""
    flat_mask = anat["mask"].ravel()
    df = pd.DataFrame(index=range(data.shape[1]))
    brain = data[flat_mask]
    for name, region in (
        ("global_signal", flat_mask),
        ("csf", anat["csf"].ravel()),
        ("white_matter", anat["white_matter"].ravel()),
        ("csf_wm", (anat["csf"] | anat["white_matter"]).ravel()),
    ):
        _with_expansions(df, name, data[region].mean(axis=0))
    diff = np.diff(brain, axis=1)
    dvars = np.sqrt((diff**2).mean(axis=0))
    med = np.median(dvars)
    df["std_dvars"] = np.concatenate([[np.nan], dvars / med if med > 0 else dvars])
    df["dvars"] = np.concatenate([[np.nan], dvars])
    # Power et al. framewise displacement: rotations as arc length on a 50 mm sphere.
    dm = np.abs(np.diff(motion, axis=0))
    fd = dm[:, :3].sum(axis=1) + 50.0 * dm[:, 3:].sum(axis=1)
    df["framewise_displacement"] = np.concatenate([[np.nan], fd])
    for c, name in enumerate(_MOTION_COLUMNS):
        _with_expansions(df, name, motion[:, c])
    for c in range(cosines.shape[1]):
        df[f"cosine{c:02d}"] = cosines[:, c]
    return df


# ----------------------------------------------------------------------------- writing helpers


def _json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _tsv(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g", lineterminator="\n")


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms((VOXEL_SIZE,) * 3 + (tr,))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.to_filename(str(path))


def _generated_by() -> list[dict]:
    return [
        {
            "Name": "nipype-brainrecon",
            "Version": __version__,
            "Description": "brainrecon-simulate: simulated data with known ground truth",
            "CodeURL": "https://github.com/nipype-brainrecon/nipype-brainrecon",
        }
    ]


# ----------------------------------------------------------------------------- validation


def _check_config(cfg: _Config, stimuli_dir: Path | None) -> None:
    def bad(option: str, value: object, need: str) -> UsageError:
        return UsageError(f"{option} {value}: {need}")

    if not 1 <= cfg.n_subjects <= 99:
        raise bad("--subjects", cfg.n_subjects, "use 1 to 99 subjects")
    if not 1 <= cfg.n_runs <= 99:
        raise bad("--runs", cfg.n_runs, "use 1 to 99 runs")
    if cfg.seed < 0:
        raise bad("--seed", cfg.seed, "use a non-negative integer")
    if math.isnan(cfg.snr) or cfg.snr <= 0:
        raise bad("--snr", cfg.snr, "use a positive number (inf for no noise)")
    if cfg.n_train is not None and cfg.n_train < 1:
        raise bad("--train", cfg.n_train, "use at least 1 training image")
    if cfg.n_test < 1:
        raise bad("--test", cfg.n_test, "use at least 1 test image")
    if cfg.n_repeats < 1:
        raise bad("--repeats", cfg.n_repeats, "use at least 1 repeat per test image")
    if not (math.isfinite(cfg.tr) and 0.2 <= cfg.tr <= 10):
        raise bad("--tr", cfg.tr, "use a repetition time between 0.2 and 10 s")
    if not (cfg.trial_duration > 0 and cfg.trial_interval >= cfg.trial_duration):
        raise bad("trial_interval", cfg.trial_interval, "must be at least trial_duration (> 0)")
    if not 8 <= cfg.image_size <= 1024:
        raise bad("--image-size", cfg.image_size, "use 8 to 1024 pixels")
    if not 1 <= cfg.n_captions <= 6:
        raise bad("--captions", cfg.n_captions, "use 1 to 6 captions per image")
    if not (math.isfinite(cfg.trial_variability) and cfg.trial_variability >= 0):
        raise bad("--trial-variability", cfg.trial_variability, "use a number >= 0")
    if not 0 <= cfg.motion_fraction <= 1:
        raise UsageError(f"motion_fraction {cfg.motion_fraction}: use a number in [0, 1]")
    if not 0 <= cfg.ar_coef < 1:
        raise UsageError(f"ar_coef {cfg.ar_coef}: use a number in [0, 1)")
    if not (math.isfinite(cfg.drift_percent) and cfg.drift_percent >= 0):
        raise UsageError(f"drift_percent {cfg.drift_percent}: use a number >= 0")
    if stimuli_dir is None:
        n_train = DEFAULT_N_TRAIN if cfg.n_train is None else cfg.n_train
        if n_train + cfg.n_test > 10000:
            raise bad("--train", n_train, "use at most 10000 images in all")


def _check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out}: output already exists and is not empty; choose a new folder")
    for parent in [out, *out.parents]:
        if (parent / "dataset_description.json").is_file():
            raise OutputError(
                f"{out}: inside the existing BIDS dataset {parent}; write the simulation elsewhere"
            )


# ----------------------------------------------------------------------------- main routine


def simulate_dataset(
    out_dir: str | os.PathLike,
    *,
    n_subjects: int = 2,
    n_runs: int = 3,
    seed: int = 0,
    snr: float = 1.0,
    n_train: int | None = None,
    n_test: int = DEFAULT_N_TEST,
    n_repeats: int = 3,
    tr: float = 2.0,
    stimuli_dir: str | os.PathLike | None = None,
    trial_interval: float = 4.0,
    trial_duration: float = 3.0,
    image_size: int = 128,
    n_captions: int = 5,
    trial_variability: float = 0.1,
    motion_fraction: float = 0.2,
    ar_coef: float = 0.3,
    drift_percent: float = 1.0,
) -> Path:
    """Write a simulated BIDS dataset with fMRIPrep-like derivatives and its ground truth.

    The whole dataset is built in a temporary sibling folder and moved to ``out_dir`` at the end;
    if anything fails nothing is left.

    Parameters
    ----------
    out_dir : path
        New folder (absent or empty, not inside another BIDS dataset).
    n_subjects, n_runs : int
        Subjects (labels ``01``, ``02``, ...) and runs per subject.
    seed : int
        Seeds everything: same arguments, same files.
    snr : float
        Per voxel and run, std of the stimulus-driven signal / std of the noise over time
        (see :data:`SNR_DEFINITION`); ``inf`` gives noiseless data.
    n_train, n_test : int
        Images shown once (training) and images shown ``n_repeats`` times (test).
        ``n_train`` defaults to 180 for generated stimuli, to all images left after the test set
        for ``stimuli_dir``.
    n_repeats : int
        Presentations of each test image, spread over runs.
    tr : float
        Repetition time (s).
    stimuli_dir : path, optional
        A folder of images with ``captions.tsv`` to use instead of generated scenes; ventral
        voxels then respond to a bag-of-words vector of the captions.
    trial_interval, trial_duration : float
        Onset-to-onset interval and stimulus duration (s).
    image_size : int
        Side of generated images (px).
    n_captions : int
        Captions per generated image.
    trial_variability : float
        Std of trial-to-trial amplitude variability, relative to each voxel's std of
        stimulus-specific amplitudes.
    motion_fraction : float
        Share of the noise variance that is motion-correlated.
    ar_coef : float
        AR(1) coefficient of the Gaussian noise (per volume).
    drift_percent : float
        Typical amplitude of the slow drift (% of baseline).

    Returns
    -------
    pathlib.Path
        ``out_dir`` (absolute).

    Raises
    ------
    UsageError
        An argument is out of range.
    MissingInputError
        ``stimuli_dir`` does not exist (or lacks its table or an image).
    DataError
        ``stimuli_dir`` has an unusable captions table.
    OutputError
        ``out_dir`` exists and is not empty, or lies inside a BIDS dataset.
    """
    cfg = _Config(
        n_subjects=int(n_subjects),
        n_runs=int(n_runs),
        seed=int(seed),
        snr=float(snr),
        n_train=None if n_train is None else int(n_train),
        n_test=int(n_test),
        n_repeats=int(n_repeats),
        tr=float(tr),
        trial_interval=float(trial_interval),
        trial_duration=float(trial_duration),
        image_size=int(image_size),
        n_captions=int(n_captions),
        trial_variability=float(trial_variability),
        motion_fraction=float(motion_fraction),
        ar_coef=float(ar_coef),
        drift_percent=float(drift_percent),
    )
    src = Path(stimuli_dir) if stimuli_dir is not None else None
    _check_config(cfg, src)
    user_set = stim.read_stimuli(src) if src is not None else None
    out = Path(out_dir).absolute()
    _check_output(out)
    with atomic_directory(out) as tmp:
        _write_dataset(tmp, cfg, user_set)
    return out


def _write_dataset(root: Path, cfg: _Config, user_set: stim.StimulusSet | None) -> None:
    # --- stimuli and their features
    scenes: list[stim.Scene] | None = None
    if user_set is None:
        n_train = DEFAULT_N_TRAIN if cfg.n_train is None else cfg.n_train
        scenes = stim.generate_scenes(n_train + cfg.n_test, seed=cfg.seed)
        stim_set = stim.write_stimuli(
            root / "stimuli", scenes, size=cfg.image_size, n_captions=cfg.n_captions, seed=cfg.seed
        )
        semantic = np.stack([stim.scene_semantics(s) for s in scenes])
        semantic_names = list(stim.SEMANTIC_FEATURES)
        semantic_source = "scene_semantics"
    else:
        n_avail = len(user_set.files)
        n_train = n_avail - cfg.n_test if cfg.n_train is None else cfg.n_train
        if n_train < 1 or n_train + cfg.n_test > n_avail:
            raise UsageError(
                f"--train {n_train} --test {cfg.n_test}: {user_set.root} has {n_avail} images; "
                "ask for fewer"
            )
        (root / "stimuli").mkdir()
        for name in user_set.files:
            dest = root / "stimuli" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(user_set.path(name), dest)
        with open(root / "stimuli" / stim.CAPTIONS_FILE, "w", encoding="utf-8") as handle:
            handle.write("stim_file\tcaption\n")
            for name in user_set.files:
                for caption in user_set.captions[name]:
                    handle.write(f"{name}\t{caption}\n")
        stim_set = stim.read_stimuli(root / "stimuli")
        semantic, semantic_names = stim.caption_semantics(stim_set.captions)
        semantic_source = "caption bag-of-words"
    files = stim_set.files
    low = np.stack(
        [low_level_features(stim_set.load_image(f, cfg.image_size)) for f in files]
    ).reshape(len(files), -1)

    n_trials = n_train + cfg.n_test * cfg.n_repeats
    if n_trials < cfg.n_runs:
        raise UsageError(
            f"--runs {cfg.n_runs}: only {n_trials} trials in all; use fewer runs or more images"
        )
    rng_split = np.random.default_rng([cfg.seed, 2])
    order = rng_split.permutation(len(files))
    test_ids = sorted(int(i) for i in order[: cfg.n_test])
    train_ids = sorted(int(i) for i in order[cfg.n_test : cfg.n_test + n_train])
    split = np.full(len(files), "unused", dtype="<U6")
    split[train_ids] = "train"
    split[test_ids] = "test"

    anat = brain_grid()
    labels = [f"{s:02d}" for s in range(1, cfg.n_subjects + 1)]

    # --- top-level raw files
    _json(
        root / "dataset_description.json",
        {
            "Name": _DESCRIPTION_NAME,
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["nipype-brainrecon simulator"],
            "GeneratedBy": _generated_by(),
        },
    )
    (root / "README").write_text(
        "Simulated fMRI dataset written by brainrecon-simulate (nipype-brainrecon "
        f"{__version__}).\n\nA rapid event-related '{TASK}' task: each trial shows one image "
        "from stimuli/. Ground truth is in derivatives/simulation; fMRIPrep-like derivatives in "
        "derivatives/fmriprep. See docs/simulation.md of nipype-brainrecon.\n",
        encoding="utf-8",
    )
    _tsv(root / "participants.tsv", pd.DataFrame({"participant_id": [f"sub-{s}" for s in labels]}))
    _json(
        root / "participants.json",
        {"participant_id": {"Description": "Simulated participant label"}},
    )
    _json(
        root / f"task-{TASK}_events.json",
        {
            "trial_type": {"Description": "Kind of trial", "Levels": {"stimulus": "An image"}},
            "stim_file": {"Description": "Image shown, relative to the stimuli/ folder"},
        },
    )

    fmriprep = root / "derivatives" / "fmriprep"
    _json(
        fmriprep / "dataset_description.json",
        {
            "Name": "fMRIPrep-like derivatives of the simulated dataset",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": _generated_by(),
            "SourceDatasets": [{"URL": "bids:raw:"}],
            "DatasetLinks": {"raw": "../../"},
        },
    )
    (fmriprep / "README").write_text(
        "fMRIPrep-like derivatives of the simulated dataset: the preprocessed BOLD equals the raw "
        "BOLD (no spatial motion was simulated), brain masks, confounds computed from the data, "
        "and a visual-ROI segmentation (desc-visual_dseg.tsv).\n",
        encoding="utf-8",
    )
    # fMRIPrep's confounds tables are not (yet) named by the BIDS specification.
    (fmriprep / ".bidsignore").write_text("*_desc-confounds_timeseries.*\n", encoding="utf-8")
    _tsv(
        fmriprep / "desc-visual_dseg.tsv",
        pd.DataFrame({"index": list(ROI_LABELS), "name": list(ROI_LABELS.values())}),
    )
    truth = root / "derivatives" / "simulation"
    _json(
        truth / "dataset_description.json",
        {
            "Name": "Ground truth of the simulated dataset",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": _generated_by(),
        },
    )
    (truth / "README").write_text(
        "Ground truth of the simulation: per-trial amplitudes, voxel weights, receptive fields and "
        "stimulus features (NumPy .npz, no pickle) with JSON descriptions. Read it with "
        "nipype_brainrecon.synthetic.simulate.load_ground_truth.\n",
        encoding="utf-8",
    )
    (truth / ".bidsignore").write_text(
        "*.npz\n*.npy\nsimulation.json\nscenes.json\nsub-*/\n", encoding="utf-8"
    )
    np.savez_compressed(
        truth / "stimuli_features.npz",
        stim_file=np.array(files),
        split=split,
        semantic=semantic,
        semantic_names=np.array(semantic_names),
        low_level=low,
        low_level_shape=np.array([len(LOW_LEVEL_CHANNELS), LOW_LEVEL_GRID, LOW_LEVEL_GRID]),
        low_level_channels=np.array(LOW_LEVEL_CHANNELS),
    )
    if scenes is not None:
        _json(truth / "scenes.json", {f: s.to_dict() for f, s in zip(files, scenes, strict=True)})
    _json(
        truth / "simulation.json",
        {
            "seed": cfg.seed,
            "snr": cfg.snr if math.isfinite(cfg.snr) else "inf",
            "snr_definition": SNR_DEFINITION,
            "hrf_model": HRF_MODEL,
            "hrf_oversampling": 50,
            "frame_times": "np.arange(n_volumes) * RepetitionTime (slice_time_ref 0)",
            "amplitude_units": "percent signal change of the voxel baseline",
            "bold_model": "baseline * (1 + sum_trials amplitude * glover_regressor / 100) "
            "+ drift + noise",
            "noise": {
                "ar1_coefficient": cfg.ar_coef,
                "motion_fraction_of_variance": cfg.motion_fraction,
                "drift_percent": cfg.drift_percent,
                "drift_basis": f"cosine columns of the confounds ({HIGH_PASS_S:g} s high-pass)",
            },
            "trial_variability": cfg.trial_variability,
            "repetition_time": cfg.tr,
            "trial_interval": cfg.trial_interval,
            "trial_duration": cfg.trial_duration,
            "n_subjects": cfg.n_subjects,
            "n_runs": cfg.n_runs,
            "n_train": len(train_ids),
            "n_test": len(test_ids),
            "n_repeats": cfg.n_repeats,
            "semantic_features": semantic_source,
            "low_level_channels": list(LOW_LEVEL_CHANNELS),
            "low_level_grid": LOW_LEVEL_GRID,
            "roi_labels": {str(k): v for k, v in ROI_LABELS.items()},
            "preproc_equals_raw": True,
            "software": f"nipype-brainrecon {__version__}",
        },
    )

    for s_index, label in enumerate(labels, start=1):
        _simulate_subject(
            root, label, s_index, cfg, anat, semantic, low, files, train_ids, test_ids
        )


def _normalise_weights(
    raw_w: np.ndarray, feats: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Scale raw weights so each voxel's amplitudes have a chosen mean and spread over stimuli."""
    drive = feats @ raw_w.T  # stimuli × voxels
    sd = drive.std(axis=0)
    sd[sd == 0] = 1.0
    spread = rng.uniform(0.4, 0.8, raw_w.shape[0])  # % signal change
    mean = rng.uniform(0.5, 1.0, raw_w.shape[0])
    w = raw_w * (spread / sd)[:, None]
    intercept = mean - (feats @ w.T).mean(axis=0)
    return w, intercept


def _simulate_subject(
    root: Path,
    label: str,
    s_index: int,
    cfg: _Config,
    anat: dict[str, np.ndarray],
    semantic: np.ndarray,
    low: np.ndarray,
    files: list[str],
    train_ids: list[int],
    test_ids: list[int],
) -> None:
    rng = np.random.default_rng([cfg.seed, 3, s_index])
    flat_dseg = anat["dseg"].ravel()
    flat_mask = anat["mask"].ravel()
    vox = np.flatnonzero(flat_dseg > 0)  # responsive voxels, C order
    vox_label = flat_dseg[vox]
    early = vox_label == 1
    ventral = vox_label == 2
    n_early, n_ventral = int(early.sum()), int(ventral.sum())
    used = np.array(sorted(train_ids + test_ids))

    # early: pRFs pooling the low-level maps
    grid = LOW_LEVEL_GRID
    prf_x = rng.uniform(0.05, 0.95, n_early)
    prf_y = rng.uniform(0.05, 0.95, n_early)
    ecc = np.hypot(prf_x - 0.5, prf_y - 0.5)
    prf_sigma = (0.04 + 0.2 * ecc) * rng.uniform(0.8, 1.25, n_early)
    profiles = _prf_profiles(prf_x, prf_y, prf_sigma, grid)
    channel_w = np.column_stack(
        [
            rng.normal(0, 1, n_early),
            np.abs(rng.normal(0, 1, n_early)) + 0.5,
            rng.normal(0, 0.7, n_early),
            rng.normal(0, 0.7, n_early),
        ]
    )
    raw_early = (channel_w[:, :, None] * profiles[:, None, :]).reshape(n_early, -1)
    w_early, b_early = _normalise_weights(raw_early, low[used], rng)
    # ventral: semantic tuning, each voxel to about half of the semantic features
    raw_ventral = rng.normal(0, 1, (n_ventral, semantic.shape[1]))
    raw_ventral *= rng.random(raw_ventral.shape) < 0.5
    w_ventral, b_ventral = _normalise_weights(raw_ventral, semantic[used], rng)

    stim_amp = np.empty((len(files), len(vox)))  # % signal change, noiseless per stimulus
    stim_amp[:, early] = low @ w_early.T + b_early
    stim_amp[:, ventral] = semantic @ w_ventral.T + b_ventral
    specific_sd = stim_amp[used].std(axis=0)

    n_brain = int(flat_mask.sum())
    baseline = np.zeros(flat_dseg.size)
    baseline[flat_mask] = rng.normal(1000, 40, n_brain)
    baseline[anat["white_matter"].ravel()] *= 0.8
    baseline[anat["csf"].ravel()] *= 1.3
    baseline[~flat_mask] = 20.0
    vox_baseline = baseline[vox]

    runs = _schedule(test_ids, train_ids, cfg, rng)
    # The simulated "T1w" space is the BOLD grid itself, which every run shares.
    reference = f"bids:raw:sub-{label}/func/sub-{label}_task-{TASK}_run-01_bold.nii.gz"
    func = root / f"sub-{label}" / "func"
    prep = root / "derivatives" / "fmriprep" / f"sub-{label}" / "func"
    truth_dir = root / "derivatives" / "simulation" / f"sub-{label}"
    trials: list[pd.DataFrame] = []
    amplitudes: list[np.ndarray] = []
    noise_std, signal_std = [], []
    finite = math.isfinite(cfg.snr)

    for r, stim_ids in enumerate(runs, start=1):
        n_trials = len(stim_ids)
        onsets = _LEAD_IN_S + cfg.trial_interval * np.arange(n_trials)
        durations = np.full(n_trials, cfg.trial_duration)
        n_vols = int(math.ceil((onsets[-1] + cfg.trial_interval + _TAIL_S) / cfg.tr))
        frame_times = np.arange(n_vols) * cfg.tr
        design = trial_regressors(onsets, durations, frame_times)  # time × trials
        amp = stim_amp[stim_ids].copy()
        if cfg.trial_variability > 0:
            amp += rng.normal(0, 1, amp.shape) * (cfg.trial_variability * specific_sd)
        signal = design @ amp * (vox_baseline / 100.0)  # time × responsive voxels, BOLD units
        sig_sd = signal.std(axis=0)

        cosines = _cosine_basis(frame_times)
        motion = _motion(rng, n_vols)
        # motion regressors: the six traces and their derivatives, standardised
        mot_reg = np.column_stack([motion, np.vstack([np.zeros(6), np.diff(motion, axis=0)])])
        mot_reg = (mot_reg - mot_reg.mean(0)) / mot_reg.std(0)

        data = np.repeat(baseline[:, None], n_vols, axis=1)  # voxels × time
        brain_idx = np.flatnonzero(flat_mask)
        # slow drift within the cosine basis, larger at low frequencies
        k = np.arange(1, cosines.shape[1] + 1)
        drift_coef = rng.normal(0, 1, (n_brain, cosines.shape[1])) / k * math.sqrt(n_vols / 2)
        data[brain_idx] += (drift_coef @ cosines.T) * (
            baseline[brain_idx, None] * cfg.drift_percent / 100
        )
        data[vox] += signal.T

        if finite:
            ar = _ar1(rng, n_vols, n_brain, cfg.ar_coef)
            ar = (ar - ar.mean(0)) / ar.std(0)
            mot = mot_reg @ rng.normal(0, 1, (mot_reg.shape[1], n_brain))
            mot = (mot - mot.mean(0)) / mot.std(0)
            noise = math.sqrt(1 - cfg.motion_fraction) * ar + math.sqrt(cfg.motion_fraction) * mot
            noise /= noise.std(0)
            # responsive voxels: exact SNR; the rest: median noise relative to baseline
            rel = np.median(sig_sd / cfg.snr / vox_baseline)
            sd = rel * baseline[brain_idx]
            pos = np.searchsorted(brain_idx, vox)
            sd[pos] = sig_sd / cfg.snr
            data[brain_idx] += (noise * sd).T
            outside = np.flatnonzero(~flat_mask)
            # outside the head: magnitude of thermal noise (half the brain's noise level)
            thermal = 0.5 * rel * 1000.0
            data[outside] += np.abs(rng.normal(0, thermal, (outside.size, n_vols)))
            run_noise = sd[pos]
        else:
            run_noise = np.zeros(len(vox))
        noise_std.append(run_noise)
        signal_std.append(sig_sd)

        bold = data.reshape(*GRID_SHAPE, n_vols).astype(np.float32)
        stem = f"sub-{label}_task-{TASK}_run-{r:02d}"
        _nifti(func / f"{stem}_bold.nii.gz", bold, anat["affine"], cfg.tr)
        _json(
            func / f"{stem}_bold.json",
            {
                "TaskName": TASK,
                "RepetitionTime": cfg.tr,
                "SliceEncodingDirection": "k",
                "PhaseEncodingDirection": "j-",
                "TaskDescription": "Rapid event-related viewing of images",
            },
        )
        events = pd.DataFrame(
            {
                "onset": onsets,
                "duration": durations,
                "trial_type": "stimulus",
                "stim_file": [files[i] for i in stim_ids],
            }
        )
        _tsv(func / f"{stem}_events.tsv", events)

        _nifti(prep / f"{stem}_space-T1w_desc-preproc_bold.nii.gz", bold, anat["affine"], cfg.tr)
        _json(
            prep / f"{stem}_space-T1w_desc-preproc_bold.json",
            {
                "TaskName": TASK,
                "RepetitionTime": cfg.tr,
                "SkullStripped": False,
                "SpatialReference": reference,
                "Sources": [f"bids:raw:sub-{label}/func/{stem}_bold.nii.gz"],
                "Description": "Identical to the raw BOLD: the simulation has no spatial head "
                "motion to correct; motion-related signal remains, as after fMRIPrep",
            },
        )
        _nifti(
            prep / f"{stem}_space-T1w_desc-brain_mask.nii.gz",
            anat["mask"].astype(np.uint8),
            anat["affine"],
        )
        _json(
            prep / f"{stem}_space-T1w_desc-brain_mask.json",
            {"Type": "Brain", "SpatialReference": reference},
        )
        conf = _confounds(data, anat, motion, cosines)
        _tsv(prep / f"{stem}_desc-confounds_timeseries.tsv", conf)
        _json(prep / f"{stem}_desc-confounds_timeseries.json", _confounds_sidecar(conf))

        events = events.assign(run=r, stim_index=stim_ids)
        trials.append(events)
        amplitudes.append(amp)

    anat_dir = root / "derivatives" / "fmriprep" / f"sub-{label}" / "anat"
    dseg_name = f"sub-{label}_space-T1w_desc-visual_dseg"
    _nifti(anat_dir / f"{dseg_name}.nii.gz", anat["dseg"], anat["affine"])
    _json(
        anat_dir / f"{dseg_name}.json",
        {
            "SpatialReference": reference,
            "Description": "Simulated visual regions on the BOLD grid (desc-visual_dseg.tsv)",
        },
    )

    table = pd.concat(trials, ignore_index=True)
    ijk = np.column_stack(np.unravel_index(vox, GRID_SHAPE))
    truth_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        truth_dir / f"sub-{label}_task-{TASK}_groundtruth.npz",
        amplitudes=np.vstack(amplitudes),
        stimulus_amplitudes=stim_amp,
        trial_run=table["run"].to_numpy(),
        trial_onset=table["onset"].to_numpy(),
        trial_duration=table["duration"].to_numpy(),
        trial_stim_file=table["stim_file"].to_numpy().astype(str),
        trial_stim_index=table["stim_index"].to_numpy(),
        voxel_ijk=ijk,
        voxel_label=vox_label,
        voxel_roi=np.array([ROI_LABELS[int(v)] for v in vox_label]),
        baseline=vox_baseline,
        intercept=_merge(early, b_early, b_ventral),
        weights_early=w_early,
        weights_ventral=w_ventral,
        prf_x=prf_x,
        prf_y=prf_y,
        prf_sigma=prf_sigma,
        prf_channel_weights=channel_w,
        noise_std=np.vstack(noise_std),
        signal_std=np.vstack(signal_std),
    )
    _json(
        truth_dir / f"sub-{label}_task-{TASK}_groundtruth.json",
        {
            "Subject": label,
            "snr": cfg.snr if math.isfinite(cfg.snr) else "inf",
            "arrays": {
                "amplitudes": "trials × responsive voxels, % signal change; trials ordered by "
                "run then onset (trial_* arrays), voxels by voxel_ijk (C order of the grid)",
                "stimulus_amplitudes": "stimuli × voxels, noiseless amplitude of each stimulus",
                "voxel_ijk": "voxel indices on the BOLD grid",
                "voxel_label": "dseg label (1 early, 2 ventral)",
                "baseline": "voxel baseline (BOLD units)",
                "intercept": "% signal change common to every trial",
                "weights_early": "early voxels × low-level features (stimuli_features.npz)",
                "weights_ventral": "ventral voxels × semantic features (stimuli_features.npz)",
                "prf_x, prf_y, prf_sigma": "pRF centre and width of early voxels, fraction of "
                "the image (0, 0 = top left)",
                "prf_channel_weights": f"early voxels × {', '.join(LOW_LEVEL_CHANNELS)}",
                "noise_std, signal_std": "runs × voxels, BOLD units",
            },
        },
    )


def _merge(first: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(first.size)
    out[first] = a
    out[~first] = b
    return out


def _confounds_sidecar(conf: pd.DataFrame) -> dict:
    desc = {
        "global_signal": "Mean within the brain mask",
        "csf": "Mean within the simulated CSF compartment",
        "white_matter": "Mean within the simulated white-matter compartment",
        "csf_wm": "Mean within CSF and white matter together",
        "dvars": "RMS over brain voxels of the temporal derivative",
        "std_dvars": "dvars divided by its median (an approximation of the standardised DVARS)",
        "framewise_displacement": "Power framewise displacement (50 mm head radius), mm",
    }
    out = {}
    for col in conf.columns:
        base = col.split("_derivative1")[0].split("_power2")[0]
        if col.startswith("cosine"):
            out[col] = {"Method": "Cosine", "Description": f"DCT basis, {HIGH_PASS_S:g} s cut-off"}
        elif base in desc:
            out[col] = {"Description": desc[base]}
        else:
            unit = "mm" if base.startswith("trans") else "rad"
            out[col] = {"Description": f"Simulated head motion ({unit}), or its expansion"}
    return out


# ----------------------------------------------------------------------------- reading back


def load_ground_truth(dataset_dir: str | os.PathLike, subject: str) -> dict:
    """Read the ground truth of one subject of a simulated dataset.

    Parameters
    ----------
    dataset_dir : path
        The simulated dataset (its root).
    subject : str
        ``01`` or ``sub-01``.

    Returns
    -------
    dict
        The subject's arrays (see ``sub-XX_task-vision_groundtruth.json``), the stimulus features
        under ``stim_file``, ``split``, ``semantic``, ``semantic_names``, ``low_level``,
        ``low_level_channels``, and the simulation parameters under ``params``.

    Raises
    ------
    MissingInputError
        The dataset or subject has no ground truth.
    """
    root = Path(dataset_dir) / "derivatives" / "simulation"
    label = subject.removeprefix("sub-")
    path = root / f"sub-{label}" / f"sub-{label}_task-{TASK}_groundtruth.npz"
    if not path.is_file():
        raise MissingInputError(
            f"{path}: no ground truth; give a dataset written by brainrecon-simulate and a "
            "subject it has"
        )
    out: dict = {}
    with np.load(path, allow_pickle=False) as npz:
        out.update({k: npz[k] for k in npz.files})
    with np.load(root / "stimuli_features.npz", allow_pickle=False) as npz:
        for k in npz.files:
            out[k] = npz[k]
    params = json.loads((root / "simulation.json").read_text(encoding="utf-8"))
    params["snr"] = float(params["snr"])  # "inf" is stored as a string in JSON
    out["params"] = params
    return out


# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see brainrecon-simulate --help")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="brainrecon-simulate",
        description="Write a simulated BIDS dataset (raw + fMRIPrep-like derivatives + ground "
        "truth) for trying and testing nipype-brainrecon.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  brainrecon-simulate sim\n"
        "  brainrecon-simulate sim --subjects 1 --runs 2 --snr 1.0 --seed 3\n"
        "  brainrecon-simulate sim --snr inf                  # noiseless\n"
        "  brainrecon-simulate sim --stimuli my_images/       # images + captions.tsv\n\n"
        "exit codes: 0 ok, 64 bad option, 65 bad stimuli table, 66 missing stimuli, "
        "73 cannot create the output",
    )
    parser.add_argument("out", metavar="OUT", help="new output folder (absent or empty)")
    parser.add_argument(
        "--subjects", metavar="N", type=_positive_int, default=2, help="subjects (default 2)"
    )
    parser.add_argument(
        "--runs", metavar="N", type=_positive_int, default=3, help="runs per subject (default 3)"
    )
    parser.add_argument("--seed", metavar="S", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--snr",
        metavar="X",
        type=float,
        default=1.0,
        help="std of stimulus signal / std of noise per voxel and run; inf = noiseless (default 1)",
    )
    parser.add_argument(
        "--train",
        metavar="N",
        type=_positive_int,
        default=None,
        help=f"training images, shown once (default {DEFAULT_N_TRAIN}; with --stimuli: the rest)",
    )
    parser.add_argument(
        "--test",
        metavar="N",
        type=_positive_int,
        default=DEFAULT_N_TEST,
        help="test images (default 20)",
    )
    parser.add_argument(
        "--repeats",
        metavar="N",
        type=_positive_int,
        default=3,
        help="presentations per test image (default 3)",
    )
    parser.add_argument(
        "--tr", metavar="SECONDS", type=float, default=2.0, help="repetition time in s (default 2)"
    )
    parser.add_argument(
        "--stimuli",
        metavar="DIR",
        default=None,
        help="use these images (folder with captions.tsv: stim_file, caption) instead of "
        "generated scenes",
    )
    parser.add_argument(
        "--image-size",
        metavar="PX",
        type=_positive_int,
        default=128,
        help="side of generated images, and of user images for the simulated responses, px (default 128)",
    )
    parser.add_argument(
        "--captions",
        metavar="N",
        type=_positive_int,
        default=5,
        help="captions per generated image (default 5)",
    )
    parser.add_argument(
        "--trial-variability",
        metavar="X",
        type=float,
        default=0.1,
        help="trial-to-trial amplitude variability, relative (default 0.1)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``brainrecon-simulate``; returns the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        stimuli_dir = args.stimuli
        if stimuli_dir is not None and not Path(stimuli_dir).is_dir():
            raise MissingInputError(
                f"--stimuli {stimuli_dir}: folder not found; give an existing one"
            )
        out = simulate_dataset(
            args.out,
            n_subjects=args.subjects,
            n_runs=args.runs,
            seed=args.seed,
            snr=args.snr,
            n_train=args.train,
            n_test=args.test,
            n_repeats=args.repeats,
            tr=args.tr,
            stimuli_dir=stimuli_dir,
            image_size=args.image_size,
            n_captions=args.captions,
            trial_variability=args.trial_variability,
        )
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except BrainreconError as exc:
        print(f"brainrecon-simulate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if not args.quiet:
        print(f"brainrecon-simulate: wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
