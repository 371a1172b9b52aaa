"""A miniature Natural Scenes Dataset in the release's formats, with its ground truth.

Same folders, file names, variables, columns and dtypes as the release (see docs/nsd.md): int16
betas x 300, 1-based 73k-/10k-IDs, ``nsd_expdesign.mat`` written by ``scipy.io.savemat``,
``nsd_stimuli.hdf5`` with ``imgBrick`` (N x 32 x 32 x 3 uint8), ``responses.tsv``,
``nsd_stim_info_merged.csv`` (``nsdId`` 0-based), COCO-style caption files, atlases and their
``.mgz.ctab`` tables. Subject 1 has 2 sessions x 2 runs (16 + 14 trials), 60 trials of 24 images
(6 shared), each shown 2 or 3 times; each image has a planted voxel pattern.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import scipy.io

GRID = (6, 7, 5)
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
N73K = 200  # images in the miniature imgBrick
N10K = 24  # images per subject (the first N_SHARED shared by all)
N_SHARED = 6
RUN_LENGTHS = (16, 14)  # stimulus trials of odd and even runs (63 and 62 in NSD)
N_SESSIONS = 2
STREAMS = {
    1: "early",
    2: "midventral",
    3: "midlateral",
    4: "midparietal",
    5: "ventral",
    6: "lateral",
    7: "parietal",
}
PRF = {1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v", 6: "V3d", 7: "hV4"}


@dataclass
class Truth:
    """What the conversion must recover for subject 1."""

    stim73k: np.ndarray  # per trial, 1-based
    session: np.ndarray
    run: np.ndarray
    trial: np.ndarray
    repetition: np.ndarray
    shared_ids: np.ndarray  # 73k-IDs (1-based) of the shared images
    psc: dict[int, np.ndarray] = field(default_factory=dict)  # session -> (x, y, z, n) float64
    patterns: dict[int, np.ndarray] = field(default_factory=dict)  # 73k-ID -> (x, y, z)
    captions: dict[int, list[str]] = field(default_factory=dict)  # 73k-ID -> captions
    coco: dict[int, tuple[int, str]] = field(default_factory=dict)  # 73k-ID -> (id, split)
    images: np.ndarray | None = None  # the whole imgBrick


def build_mini_nsd(root: Path, seed: int = 0) -> Truth:
    """Write the miniature release under ``root`` and return its truth."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, N73K + 1), size=N73K, replace=False)
    shared = ids[:N_SHARED]
    subjectim = np.zeros((8, N10K), dtype=np.int64)
    for s in range(8):
        own = ids[N_SHARED + s * (N10K - N_SHARED) : N_SHARED + (s + 1) * (N10K - N_SHARED)]
        subjectim[s] = np.concatenate([shared, own])
    # 12 images three times, 12 twice: 60 trials; the order is common to all subjects.
    order = np.concatenate([np.repeat(np.arange(1, 13), 3), np.repeat(np.arange(13, 25), 2)])
    order = rng.permutation(order)
    _write_expdesign(root, order, subjectim, shared)
    truth = _design_truth(order, subjectim[0], shared)
    truth.images = rng.integers(0, 256, size=(N73K, 32, 32, 3), dtype=np.uint8)
    _write_stimuli(root, truth.images)
    _write_stim_info(root, rng, truth, subjectim)
    _write_responses(root, truth, order)
    _write_betas(root, rng, truth)
    _write_atlases(root)
    return truth


def _write_expdesign(
    root: Path, order: np.ndarray, subjectim: np.ndarray, shared: np.ndarray
) -> None:
    path = root / "nsddata/experiments/nsd/nsd_expdesign.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    # MATLAB doubles, 1-based, row vectors as in the release.
    scipy.io.savemat(
        path,
        {
            "masterordering": order[None, :].astype(np.float64),
            "subjectim": subjectim.astype(np.float64),
            "sharedix": np.sort(shared)[None, :].astype(np.float64),
            "basiccnt": np.zeros((3, N_SESSIONS)),
        },
    )


def _design_truth(order: np.ndarray, subject_ids: np.ndarray, shared: np.ndarray) -> Truth:
    per_session = sum(RUN_LENGTHS)
    stim = subject_ids[order - 1]
    sessions, runs, trials = [], [], []
    for s in range(N_SESSIONS):
        for r, length in enumerate(RUN_LENGTHS, start=1):
            sessions += [s + 1] * length
            runs += [r] * length
            trials += list(range(1, length + 1))
    assert len(stim) == N_SESSIONS * per_session
    repetition = np.array([int(np.sum(stim[:k] == stim[k])) for k in range(len(stim))])
    return Truth(stim, np.array(sessions), np.array(runs), np.array(trials), repetition, shared)


def _write_stimuli(root: Path, images: np.ndarray) -> None:
    path = root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("imgBrick", data=images, chunks=(1, 32, 32, 3))


def _write_stim_info(
    root: Path, rng: np.random.Generator, truth: Truth, subjectim: np.ndarray
) -> None:
    coco_ids = rng.choice(np.arange(1000, 600000), size=N73K, replace=False)
    splits = np.where(rng.random(N73K) < 0.25, "val2017", "train2017")
    table = pd.DataFrame(
        {
            "cocoId": coco_ids,
            "cocoSplit": splits,
            "cropBox": ["(0, 0, 0.1, 0.1)"] * N73K,
            "loss": np.zeros(N73K),
            "nsdId": np.arange(N73K),
            "flagged": [False] * N73K,
            "BOLD5000": [False] * N73K,
            "shared1000": np.isin(np.arange(1, N73K + 1), truth.shared_ids),
        }
    )
    for s in range(8):
        table[f"subject{s + 1}"] = np.isin(np.arange(1, N73K + 1), subjectim[s]).astype(int)
    for rep in range(3):
        column = np.zeros(N73K, dtype=int)
        for k in np.flatnonzero(truth.repetition == rep):
            column[truth.stim73k[k] - 1] = k + 1
        table[f"subject1_rep{rep}"] = column
    path = root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv"
    table.to_csv(path)  # unnamed 0-based index column first, as in the release
    annotations = {"train2017": [], "val2017": []}
    next_id = 1
    for nsd_id in range(1, N73K + 1):
        coco_id, split = int(coco_ids[nsd_id - 1]), str(splits[nsd_id - 1])
        n = 4 + nsd_id % 3  # several captions per image, 4 to 6
        texts = [f"Image {nsd_id} caption {j}  with\nspaces " for j in range(n)]
        truth.coco[nsd_id] = (coco_id, split)
        truth.captions[nsd_id] = [" ".join(t.split()) for t in texts]
        for text in texts:
            annotations[split].append({"image_id": coco_id, "id": next_id, "caption": text})
            next_id += 1
    folder = root / "nsddata_stimuli/stimuli/nsd/annotations"
    folder.mkdir(parents=True)
    for split, rows in annotations.items():
        images = [
            {"id": c, "file_name": f"{c:012d}.jpg"} for c, sp in truth.coco.values() if sp == split
        ]
        rows = rows[::-1]  # annotation order is not caption order: the converter sorts by id
        content = {"info": {}, "licenses": [], "images": images, "annotations": rows}
        (folder / f"captions_{split}.json").write_text(json.dumps(content), encoding="utf-8")


def _write_responses(root: Path, truth: Truth, order: np.ndarray) -> None:
    n = len(truth.stim73k)
    table = pd.DataFrame(
        {
            "SUBJECT": 1,
            "SESSION": truth.session,
            "RUN": truth.run,
            "TRIAL": truth.trial,
            "73KID": truth.stim73k,
            "10KID": order,
            "TIME": 737000.5 + np.arange(n) / 86400.0,
            "ISOLD": (truth.repetition > 0).astype(int),
            "ISCORRECT": 1,
            "RT": np.where(np.arange(n) % 7 == 0, np.nan, 800.0),
            "CHANGEMIND": np.where(np.arange(n) % 7 == 0, np.nan, 0.0),
            "MEMORYRECENT": np.nan,
            "MEMORYFIRST": np.nan,
        }
    )
    path = root / "nsddata/ppdata/subj01/behav/responses.tsv"
    path.parent.mkdir(parents=True)
    table.to_csv(path, sep="\t", index=False)


def _write_betas(root: Path, rng: np.random.Generator, truth: Truth) -> None:
    folder = root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    folder.mkdir(parents=True)
    brain = np.ones(GRID, dtype=bool)
    brain[0] = False  # outside the liberal brain mask: zero, as in the release
    for nsd_id in np.unique(truth.stim73k):
        truth.patterns[int(nsd_id)] = rng.normal(0.0, 2.0, size=GRID) * brain
    for session in range(1, N_SESSIONS + 1):
        rows = np.flatnonzero(truth.session == session)
        signal = np.stack([truth.patterns[int(truth.stim73k[k])] for k in rows], axis=-1)
        noise = rng.normal(0.0, 0.5, size=signal.shape) * brain[..., None]
        raw = np.round((signal + noise) * 300.0).astype(np.int16)  # percent signal change x 300
        truth.psc[session] = raw.astype(np.float64) / 300.0
        image = nib.Nifti1Image(raw, AFFINE)
        image.header.set_data_dtype(np.int16)
        nib.save(image, folder / f"betas_session{session:02d}.nii.gz")


def _write_atlases(root: Path) -> None:
    roi = root / "nsddata/ppdata/subj01/func1pt8mm/roi"
    roi.mkdir(parents=True)
    x = np.arange(GRID[0])[:, None, None] * np.ones(GRID)
    streams = np.where(x >= 4, 1, np.where(x >= 2, 5, 0)).astype(np.int16)
    streams[0] = -1  # outside
    general = np.where(x >= 2, 1, 0).astype(np.int16)
    general[0] = -1
    prf = np.where(x >= 4, (np.arange(GRID[1])[None, :, None] % 7 + 1) * np.ones(GRID), 0)
    prf = prf.astype(np.int16)
    prf[0] = -1
    for name, data in (("streams", streams), ("nsdgeneral", general), ("prf-visualrois", prf)):
        nib.save(nib.Nifti1Image(data, AFFINE), roi / f"{name}.nii.gz")
    label = root / "nsddata/freesurfer/subj01/label"
    label.mkdir(parents=True)
    tables = {"streams": STREAMS, "nsdgeneral": {1: "nsdgeneral"}, "prf-visualrois": PRF}
    for name, labels in tables.items():
        lines = ["0 Unknown"] + [f"{v} {n}" for v, n in labels.items()]
        (label / f"{name}.mgz.ctab").write_text("\n".join(lines) + "\n", encoding="utf-8")
