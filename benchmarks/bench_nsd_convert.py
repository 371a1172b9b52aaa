"""NSD conversion at the real func1pt8mm size: seconds per session and peak memory.

Writes a release-format NSD root for subject 1 with synthetic values but real sizes: betas on the
func1pt8mm grid (81 x 104 x 83; zero outside an ellipsoid "brain" of 40 % of the voxels), 750
trials per session in 12 runs of 63/62 trials, int16 percent signal change x 300, gzipped; the
real design sizes (73,000 images, 10,000 per subject, 1,000 shared, 30,000 trials in
``masterordering``), ``nsd_stim_info_merged.csv`` with 73,000 rows, ``nsd_stimuli.hdf5`` with an
``imgBrick`` of the real shape (73000 x 425 x 425 x 3 uint8, chunked by image; only the images
the subject sees are written, smooth synthetic pictures), COCO-style caption files of the real
COCO 2017 size (123,287 images, 5-6 captions each) and the three atlases with their tables.

Then it runs, each in its own child process whose peak resident memory comes from the kernel
(``os.wait4`` rusage ``ru_maxrss``):

* ours: :func:`nipype_brainrecon.datasets.nsd.nsd_to_bids` (what ``brainrecon-nsd`` runs), with
  the seconds of each session's betas taken from its log (``--zscore``: also with
  ``zscore_sessions=True``, which reads each session twice);
* the reference, whole-session loading as in the authors' ``make_subjmri.py`` (its
  ``nsd_access.read_betas`` returns a whole session; upstream ``nsd_access`` does
  ``nib.load(...).get_data()``): each session loaded whole, divided by 300 into float32 and
  written with ``nibabel.save``; ``asarray`` loads the int16 array (``np.asarray(img.dataobj)``,
  what ``get_data()`` gave) and divides in place, ``fdata`` does
  ``img.get_fdata().astype(np.float32) / 300`` (float64 first, as much later NSD code does).

The reference's output data are checked to be the same bytes as ours (SHA-256 of the
decompressed data block). The bound (issue 21): our peak RSS below one session's betas held in
memory as the release stores them, int16 81 x 104 x 83 x 750 x 2 bytes = 1.05 GB (2.10 GB as
float32); the script records whether it holds.

    python -m benchmarks.bench_nsd_convert [--sessions 2] [--reference asarray fdata]
        [--zscore] [--tiny] [--tmp DIR] [--out FILE]

``--tiny`` writes a small grid and design (seconds; used by the tests). Writes FILE (default
``benchmarks/results/nsd_convert.json``, ``nsd_convert_tiny.json`` with ``--tiny``) and a
Markdown table beside it. Every file is written under a temporary folder (``--tmp``, default the
system's) and removed at the end; the full size needs ~1 GB of disk plus ~1.6 GB per
session.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import cpu_model, package_versions, rss_kib, run_worker_child

RESULTS = Path(__file__).resolve().parent / "results"
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
BETA_SCALE = 300.0
STREAMS = ("early", "midventral", "midlateral", "midparietal", "ventral", "lateral", "parietal")
PRF = ("V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4")
REFERENCES = ("asarray", "fdata")
MIB = 2**20


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the synthetic release."""

    grid: tuple[int, int, int]
    run_lengths: tuple[int, ...]  # stimulus trials of each run of a session
    n73k: int  # images in imgBrick / rows of the stimulus table
    n10k: int  # images per subject
    n_shared: int
    coco_train: int  # images in captions_train2017.json
    coco_val: int
    image_size: int
    brain_fraction: float = 0.4

    @property
    def trials_per_session(self) -> int:
        return sum(self.run_lengths)

    def session_bytes(self, itemsize: int) -> int:
        """One session's betas in memory at ``itemsize`` bytes per value."""
        return int(np.prod(self.grid)) * self.trials_per_session * itemsize


#: NSD subject 1 at func1pt8mm (grid and design sizes of the release).
FULL = Config((81, 104, 83), (63, 62) * 6, 73000, 10000, 1000, 118287, 5000, 425)
#: Seconds: the script's own check.
TINY = Config((9, 11, 8), (3, 2) * 6, 1500, 150, 15, 1700, 100, 16)


# --------------------------------------------------------------------------------------------
# The synthetic release
# --------------------------------------------------------------------------------------------


def write_release(root: Path, cfg: Config, sessions: int, seed: int = 0) -> dict[str, Any]:
    """Write subject 1's release files for ``sessions`` sessions under ``root``."""
    rng = np.random.default_rng(seed)
    n_trials = sessions * cfg.trials_per_session
    if n_trials > 3 * cfg.n10k:
        raise SystemExit(f"--sessions {sessions}: the design holds {3 * cfg.n10k} trials")
    if cfg.n_shared + 8 * (cfg.n10k - cfg.n_shared) > cfg.n73k:
        raise SystemExit("the 8 subjects' images do not fit in the 73k images")
    start = time.perf_counter()
    ids = rng.permutation(np.arange(1, cfg.n73k + 1))
    shared = np.sort(ids[: cfg.n_shared])
    own = cfg.n10k - cfg.n_shared
    subjectim = np.stack(
        [np.concatenate([shared, ids[cfg.n_shared + s * own :][:own]]) for s in range(8)]
    )
    # Each of the subject's images three times, in a random order (10k-IDs, 1-based).
    order = rng.permutation(np.repeat(np.arange(1, cfg.n10k + 1), 3))
    _write_expdesign(root, order, subjectim, shared)
    stim = subjectim[0][order[:n_trials] - 1]
    _write_responses(root, cfg, stim, order[:n_trials], sessions)
    coco_ids, splits = _write_stim_info(root, cfg, rng, subjectim, shared)
    _write_captions(root, cfg, rng, coco_ids, splits)
    _write_stimuli(root, cfg, np.unique(stim))
    _write_atlases(root, cfg)
    betas = _write_betas(root, cfg, sessions, rng)
    return {
        "seconds": time.perf_counter() - start,
        "trials": n_trials,
        "images_seen": int(np.unique(stim).size),
        "shared_trials": int(np.isin(stim, shared).sum()),
        "betas_gz_bytes": betas,
    }


def _write_expdesign(root: Path, order: np.ndarray, subjectim: np.ndarray, shared: np.ndarray):
    import scipy.io

    path = root / "nsddata/experiments/nsd/nsd_expdesign.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        path,
        {
            "masterordering": order[None, :].astype(np.float64),
            "subjectim": subjectim.astype(np.float64),
            "sharedix": shared[None, :].astype(np.float64),
            "basiccnt": np.zeros((3, 40)),
        },
    )


def _write_responses(
    root: Path, cfg: Config, stim: np.ndarray, tenk: np.ndarray, sessions: int
) -> None:
    import pandas as pd

    n = len(stim)
    runs = np.concatenate([np.full(k, r + 1) for r, k in enumerate(cfg.run_lengths)])
    trial = np.concatenate([np.arange(1, k + 1) for k in cfg.run_lengths])
    seen_before = pd.Series(stim).groupby(stim).cumcount().to_numpy()
    table = pd.DataFrame(
        {
            "SUBJECT": 1,
            "SESSION": np.repeat(np.arange(1, sessions + 1), cfg.trials_per_session),
            "RUN": np.tile(runs, sessions),
            "TRIAL": np.tile(trial, sessions),
            "73KID": stim,
            "10KID": tenk,
            "TIME": 737000.5 + np.arange(n) / 86400.0,
            "ISOLD": (seen_before > 0).astype(int),
            "ISCORRECT": 1,
            "RT": 800.0,
            "CHANGEMIND": 0.0,
            "MEMORYRECENT": np.nan,
            "MEMORYFIRST": np.nan,
        }
    )
    path = root / "nsddata/ppdata/subj01/behav/responses.tsv"
    path.parent.mkdir(parents=True)
    table.to_csv(path, sep="\t", index=False)


def _write_stim_info(
    root: Path, cfg: Config, rng: np.random.Generator, subjectim: np.ndarray, shared: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The 73k table; returns every COCO image's id and split (the NSD images first)."""
    import pandas as pd

    n_coco = cfg.coco_train + cfg.coco_val
    coco_ids = rng.choice(np.arange(1, 6 * n_coco), size=n_coco, replace=False)
    splits = np.full(n_coco, "train2017")
    splits[rng.choice(n_coco, size=cfg.coco_val, replace=False)] = "val2017"
    nsd = np.arange(1, cfg.n73k + 1)
    table = pd.DataFrame(
        {
            "cocoId": coco_ids[: cfg.n73k],
            "cocoSplit": splits[: cfg.n73k],
            "cropBox": "(0, 0, 0.1, 0.1)",
            "loss": 0.0,
            "nsdId": nsd - 1,
            "flagged": False,
            "BOLD5000": False,
            "shared1000": np.isin(nsd, shared),
        }
    )
    for s in range(8):
        table[f"subject{s + 1}"] = np.isin(nsd, subjectim[s]).astype(int)
    for s in range(8):
        for rep in range(3):
            table[f"subject{s + 1}_rep{rep}"] = 0
    table.to_csv(root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv")
    return coco_ids, splits


def _write_captions(
    root: Path, cfg: Config, rng: np.random.Generator, coco_ids: np.ndarray, splits: np.ndarray
) -> None:
    """``captions_{train,val}2017.json``: 5 or 6 captions of ~50 characters per COCO image."""
    words = ("a", "man", "dog", "red", "table", "street", "near", "with", "two", "on", "the")
    annotations: dict[str, list[dict[str, Any]]] = {"train2017": [], "val2017": []}
    images: dict[str, list[dict[str, Any]]] = {"train2017": [], "val2017": []}
    picks = rng.integers(0, len(words), size=(len(coco_ids), 9))
    next_id = 1
    for k, (coco_id, split) in enumerate(zip(coco_ids.tolist(), splits.tolist(), strict=True)):
        images[split].append({"id": coco_id, "file_name": f"{coco_id:012d}.jpg"})
        text = " ".join(words[w] for w in picks[k])
        for j in range(5 + k % 2):
            annotations[split].append(
                {"image_id": coco_id, "id": next_id, "caption": f"Image {k} view {j}: {text}."}
            )
            next_id += 1
    folder = root / "nsddata_stimuli/stimuli/nsd/annotations"
    folder.mkdir(parents=True)
    for split in annotations:
        content = {"info": {}, "licenses": [], "images": images[split]}
        content["annotations"] = annotations[split]
        (folder / f"captions_{split}.json").write_text(json.dumps(content), encoding="utf-8")


def _write_stimuli(root: Path, cfg: Config, seen: np.ndarray) -> None:
    """``imgBrick`` of the real shape; only the seen images' chunks are written."""
    import h5py

    path = root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    size = cfg.image_size
    ramp = np.linspace(0, 1, size)
    base = np.stack([ramp[:, None] * np.ones(size), np.ones(size)[:, None] * ramp], -1)
    with h5py.File(path, "w") as handle:
        brick = handle.create_dataset(
            "imgBrick", shape=(cfg.n73k, size, size, 3), dtype=np.uint8, chunks=(1, size, size, 3)
        )
        for nsd_id in seen.tolist():
            colour = np.array([nsd_id % 251, nsd_id % 241, nsd_id % 239]) / 255.0
            picture = base[..., [0, 1, 0]] * 0.5 + colour * 0.5
            brick[nsd_id - 1] = np.round(picture * 255).astype(np.uint8)


def brain_mask(grid: tuple[int, int, int], fraction: float) -> np.ndarray:
    """An ellipsoid centred in ``grid`` holding about ``fraction`` of its voxels.

    >>> round(float(brain_mask((81, 104, 83), 0.4).mean()), 2)
    0.4
    """
    axes = [(np.arange(n) - (n - 1) / 2) / (n / 2) for n in grid]
    radius = (fraction / (np.pi / 6)) ** (1 / 3)
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return (x * x + y * y + z * z) <= radius * radius


def _write_atlases(root: Path, cfg: Config) -> None:
    import nibabel as nib

    mask = brain_mask(cfg.grid, cfg.brain_fraction)
    x = np.arange(cfg.grid[0])[:, None, None] / cfg.grid[0] * np.ones(cfg.grid)
    streams = np.where(mask, np.minimum((x * 8).astype(int), 7), -1).astype(np.int16)
    general = np.where(mask, (x < 0.5).astype(int), -1).astype(np.int16)
    prf = np.where(mask, np.where(x < 0.3, (x * 24).astype(int) % 7 + 1, 0), -1).astype(np.int16)
    roi = root / "nsddata/ppdata/subj01/func1pt8mm/roi"
    roi.mkdir(parents=True)
    label = root / "nsddata/freesurfer/subj01/label"
    label.mkdir(parents=True)
    tables = {"streams": STREAMS, "nsdgeneral": ("nsdgeneral",), "prf-visualrois": PRF}
    for name, data in (("streams", streams), ("nsdgeneral", general), ("prf-visualrois", prf)):
        nib.save(nib.Nifti1Image(data, AFFINE), roi / f"{name}.nii.gz")
        lines = ["0 Unknown"] + [f"{v} {n}" for v, n in enumerate(tables[name], start=1)]
        (label / f"{name}.mgz.ctab").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_betas(root: Path, cfg: Config, sessions: int, rng: np.random.Generator) -> list[int]:
    """``betas_sessionNN.nii.gz``: int16, N(0, 2) % signal change x 300 inside the brain."""
    import nibabel as nib

    folder = root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    folder.mkdir(parents=True)
    inside = np.flatnonzero(brain_mask(cfg.grid, cfg.brain_fraction).ravel(order="F"))
    volume = np.zeros(int(np.prod(cfg.grid)), dtype="<i2")
    sizes = []
    for session in range(1, sessions + 1):
        header = nib.Nifti1Header()
        header.set_data_shape((*cfg.grid, cfg.trials_per_session))
        header.set_data_dtype(np.int16)
        header.set_zooms((1.8, 1.8, 1.8, 1.0))
        header.set_qform(AFFINE, code=1)
        header.set_sform(AFFINE, code=1)
        header.set_xyzt_units(xyz="mm")
        path = folder / f"betas_session{session:02d}.nii.gz"
        with gzip.open(path, "wb", compresslevel=1) as handle:
            header.write_to(handle)  # 348 bytes + the 4-byte extension flag: vox_offset 352
            for _ in range(cfg.trials_per_session):
                values = rng.standard_normal(inside.size, dtype=np.float32) * (2 * BETA_SCALE)
                volume[inside] = np.clip(np.rint(values), -32768, 32767)
                handle.write(volume.tobytes())
        sizes.append(path.stat().st_size)
    return sizes


# --------------------------------------------------------------------------------------------
# The measured runs (child processes)
# --------------------------------------------------------------------------------------------


class _Stamps(logging.Handler):
    """Times of the converter's "session N: writing betas" log lines, and the largest resident
    memory seen between them (``VmRSS`` sampled every ``interval`` s by a thread)."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(logging.INFO)
        self.stamps: list[tuple[float, float, int]] = []  # wall, CPU, session
        self.phase_peaks: list[int] = [0]  # KiB: before the first session, then per session
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._note()

    def _note(self) -> None:
        self.phase_peaks[-1] = max(self.phase_peaks[-1], rss_kib())

    def emit(self, record: logging.LogRecord) -> None:
        if "writing betas" in record.getMessage():
            self._note()
            session = int(record.args[1])  # type: ignore[index]
            self.stamps.append((time.perf_counter(), time.process_time(), session))
            self.phase_peaks.append(rss_kib())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._note()


def run_ours(root: Path, out: Path, zscore: bool = False) -> dict[str, Any]:
    """Convert with ``nsd_to_bids``; seconds per session from the log's time stamps."""
    from nipype_brainrecon.datasets.nsd import nsd_to_bids

    handler = _Stamps()
    log = logging.getLogger("nipype_brainrecon.datasets.nsd.writer")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        nsd_to_bids(root, out, subject=1, zscore_sessions=zscore)
    finally:
        handler.stop()
    end, cpu_end = time.perf_counter(), time.process_time()
    times = [t for t, _, _ in handler.stamps] + [end]
    cpu = [c for _, c, _ in handler.stamps] + [cpu_end]
    return {
        "seconds": end - start,
        "setup_seconds": times[0] - start,  # design, stimuli, captions, atlases
        "setup_cpu_seconds": cpu[0] - cpu_start,
        "sessions": [s for _, _, s in handler.stamps],
        "seconds_per_session": [b - a for a, b in zip(times, times[1:], strict=False)],
        "cpu_seconds_per_session": [b - a for a, b in zip(cpu, cpu[1:], strict=False)],
        # Sampled (may miss a peak shorter than the interval; the kernel's figure is peak_rss).
        "sampled_rss_peak_setup_bytes": handler.phase_peaks[0] * 1024,
        "sampled_rss_peak_per_session_bytes": [k * 1024 for k in handler.phase_peaks[1:]],
    }


def run_reference(root: Path, out: Path, how: str) -> dict[str, Any]:
    """Each session loaded whole, divided by 300 into float32, written by ``nibabel.save``."""
    import nibabel as nib

    out.mkdir(parents=True)
    folder = root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    sessions, seconds, cpu = [], [], []
    start = time.perf_counter()
    for path in sorted(folder.glob("betas_session*.nii.gz")):
        begin, cpu_begin = time.perf_counter(), time.process_time()
        image = nib.load(path)
        if how == "asarray":  # what nsd_access's get_data() returned: the int16 array
            psc = np.asarray(image.dataobj).astype(np.float32)
            psc /= np.float32(BETA_SCALE)
        else:
            psc = image.get_fdata().astype(np.float32) / BETA_SCALE
        nib.save(nib.Nifti1Image(psc, image.affine), out / path.name)
        del psc, image
        sessions.append(int(path.name[13:15]))
        seconds.append(time.perf_counter() - begin)
        cpu.append(time.process_time() - cpu_begin)
    return {
        "seconds": time.perf_counter() - start,
        "sessions": sessions,
        "seconds_per_session": seconds,
        "cpu_seconds_per_session": cpu,
    }


def _worker_main(spec_json: str) -> int:
    import resource

    spec = json.loads(spec_json)
    root, out = Path(spec["root"]), Path(spec["out"])
    if spec["method"].startswith("ours"):
        result = run_ours(root, out, zscore=spec["method"] == "ours_zscore")
    else:
        result = run_reference(root, out, spec["method"])
    result["self_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one method in a child process; its peak RSS from the kernel (``os.wait4``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    load_start = list(os.getloadavg())
    result, wall, usage = run_worker_child("benchmarks.bench_nsd_convert", spec, env, timeout)
    if "error" in result:
        return result
    per, cpu = result["seconds_per_session"], result["cpu_seconds_per_session"]
    result.update(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        mean_seconds_per_session=sum(per) / len(per),
        mean_cpu_seconds_per_session=sum(cpu) / len(cpu),
        peak_rss_bytes=usage.ru_maxrss * 1024,
        peak_rss_gib=usage.ru_maxrss / MIB,
        load_average_start=load_start,
        load_average_end=list(os.getloadavg()),
    )
    return result


def data_digest(path: Path) -> str:
    """SHA-256 of a NIfTI's decompressed data block (from its ``vox_offset``), and its dtype."""
    import nibabel as nib

    image = nib.load(path)
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as handle:
        handle.seek(int(image.dataobj.offset))
        while chunk := handle.read(16 * MIB):
            digest.update(chunk)
    return f"{image.get_data_dtype()}:{'x'.join(map(str, image.shape))}:{digest.hexdigest()}"


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "load_average_before": list(os.getloadavg()),
        "python": platform.python_version(),
        "versions": package_versions(("numpy", "nibabel", "h5py", "nipype-brainrecon")),
    }


def _bound(cfg: Config) -> dict[str, Any]:
    return {
        "rule": "ours peak RSS < one session's betas in memory as stored (int16)",
        "session_int16_bytes": cfg.session_bytes(2),
        "session_float32_bytes": cfg.session_bytes(4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = TINY if args.tiny else FULL
    report: dict[str, Any] = {
        "benchmark": "NSD conversion (brainrecon-nsd) at the func1pt8mm size, synthetic values",
        "tiny": args.tiny,
        "config": {**dataclasses.asdict(cfg), "sessions": args.sessions},
        "bound": _bound(cfg),
        "machine": _machine(),
    }
    with tempfile.TemporaryDirectory(prefix="brainrecon-nsd-bench-", dir=args.tmp) as tmp:
        root, bids = Path(tmp) / "nsd", Path(tmp) / "bids"
        print(f"writing the synthetic release under {root} ...", file=sys.stderr, flush=True)
        report["fixture"] = write_release(root, cfg, args.sessions)
        print(f"  {report['fixture']}\nours ...", file=sys.stderr, flush=True)
        ours = run_child({"method": "ours", "root": str(root), "out": str(bids)}, args.timeout)
        report["ours"] = ours
        if "error" not in ours:
            ours.update(_outputs(bids))
        print(f"  {ours}", file=sys.stderr, flush=True)
        if args.zscore:
            print("ours with --zscore-sessions ...", file=sys.stderr, flush=True)
            out = Path(tmp) / "bids-zscore"
            spec = {"method": "ours_zscore", "root": str(root), "out": str(out)}
            report["ours_zscore"] = run_child(spec, args.timeout)
            shutil.rmtree(out, ignore_errors=True)
            print(f"  {report['ours_zscore']}", file=sys.stderr, flush=True)
        report["reference"] = {}
        for how in args.reference:
            print(f"reference ({how}) ...", file=sys.stderr, flush=True)
            out = Path(tmp) / f"reference-{how}"
            ref = run_child({"method": how, "root": str(root), "out": str(out)}, args.timeout)
            if "error" not in ref and "error" not in ours:
                digests = [data_digest(p) for p in sorted(out.glob("*.nii.gz"))]
                ref["data_identical_to_ours"] = digests == ours["betas_data_digests"]
            shutil.rmtree(out, ignore_errors=True)
            report["reference"][how] = ref
            print(f"  {ref}", file=sys.stderr, flush=True)
    report["machine"]["load_average_after"] = list(os.getloadavg())
    report["checks"] = _checks(report)
    return report


def _outputs(bids: Path) -> dict[str, Any]:
    betas = sorted(bids.rglob("*_betas.nii.gz"))
    return {
        "files": {
            "betas": len(betas),
            "trials_tsv": len(list(bids.rglob("*_trials.tsv"))),
            "stimuli_png": len(list((bids / "stimuli").glob("*.png"))),
            "dseg": len(list(bids.rglob("*_dseg.nii.gz"))),
        },
        "output_betas_bytes": [p.stat().st_size for p in betas],
        "betas_data_digests": [data_digest(p) for p in betas],
    }


def _checks(report: dict[str, Any]) -> dict[str, Any]:
    ours, bound = report["ours"], report["bound"]
    checks: dict[str, Any] = {}
    if "peak_rss_bytes" in ours:
        checks["ours_below_one_session_int16"] = (
            ours["peak_rss_bytes"] < bound["session_int16_bytes"]
        )
        checks["ours_peak_fraction_of_session_int16"] = (
            ours["peak_rss_bytes"] / bound["session_int16_bytes"]
        )
    zscore = report.get("ours_zscore", {})
    if "peak_rss_bytes" in zscore:
        checks["ours_zscore_below_one_session_int16"] = (
            zscore["peak_rss_bytes"] < bound["session_int16_bytes"]
        )
    for how, ref in report["reference"].items():
        if "peak_rss_bytes" in ref and "peak_rss_bytes" in ours:
            checks[f"{how}_time_ratio"] = (
                ref["mean_seconds_per_session"] / ours["mean_seconds_per_session"]
            )
            checks[f"{how}_cpu_time_ratio"] = (
                ref["mean_cpu_seconds_per_session"] / ours["mean_cpu_seconds_per_session"]
            )
            checks[f"{how}_memory_ratio"] = ref["peak_rss_bytes"] / ours["peak_rss_bytes"]
            checks[f"{how}_data_identical_to_ours"] = ref.get("data_identical_to_ours")
    return checks


def _gb(value: Any) -> str:
    return "–" if value is None else f"{value / 1e9:.3g} GB"


def markdown(report: dict[str, Any]) -> str:
    m, cfg, bound = report["machine"], report["config"], report["bound"]
    grid = " × ".join(map(str, cfg["grid"]))
    lines = [
        f"# {report['benchmark']}",
        "",
        f"{cfg['sessions']} session(s) of {sum(cfg['run_lengths'])} trials "
        f"({len(cfg['run_lengths'])} runs), grid {grid}, int16 × 300, "
        f"{cfg['brain_fraction']:.0%} of voxels non-zero; {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB. Load average before/after: {m['load_average_before'][0]:.1f}/"
        f"{m.get('load_average_after', [float('nan')])[0]:.1f}.",
        f"Bound: peak RSS < one session's betas as int16 = {_gb(bound['session_int16_bytes'])} "
        f"(as float32: {_gb(bound['session_float32_bytes'])}).",
        "",
        "| method | s per session (mean) | CPU s per session | sessions' s | total s | peak RSS "
        "| below the bound | same data as ours | load start/end |",
        "|---|---:|---:|---|---:|---:|---|---|---|",
    ]
    runs = [("ours: nsd_to_bids (brainrecon-nsd)", report["ours"])]
    if "ours_zscore" in report:
        runs.append(("ours, --zscore-sessions", report["ours_zscore"]))
    runs += [(f"whole session ({how}) + nibabel.save", r) for how, r in report["reference"].items()]
    for name, r in runs:
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | | | | |")
            continue
        per = ", ".join(f"{s:.1f}" for s in r["seconds_per_session"])
        below = r["peak_rss_bytes"] < bound["session_int16_bytes"]
        same = r.get("data_identical_to_ours", "–")
        load = [r.get(f"load_average_{k}", [float("nan")])[0] for k in ("start", "end")]
        lines.append(
            f"| {name} | {r['mean_seconds_per_session']:.1f} | "
            f"{r.get('mean_cpu_seconds_per_session', float('nan')):.1f} | {per} | {r['seconds']:.1f} | "
            f"{_gb(r['peak_rss_bytes'])} ({r['peak_rss_gib']:.2f} GiB) | "
            f"{'yes' if below else 'no'} | {same} | {load[0]:.1f}/{load[1]:.1f} |"
        )
    ours = report["ours"]
    if "setup_seconds" in ours:
        lines += [
            "",
            f"Ours: {ours['setup_seconds']:.1f} s before the first session (design, "
            f"{ours['files']['stimuli_png']} images, captions, atlases); peak RSS of the "
            "converting process from the kernel (`os.wait4`), all of its life included. "
            "Wall seconds on a shared machine vary with its load (recorded per method); CPU "
            "seconds (the process's user + system time) vary less.",
        ]
    if "sampled_rss_peak_setup_bytes" in ours:
        lines[-1] += (
            " Resident memory sampled every 0.05 s: largest before the first session "
            f"{_gb(ours['sampled_rss_peak_setup_bytes'])}, during each session "
            + ", ".join(_gb(b) for b in ours["sampled_rss_peak_per_session_bytes"])
            + "."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=2, help="sessions to write (default 2)")
    parser.add_argument(
        "--reference", nargs="*", choices=REFERENCES, default=list(REFERENCES), help="references"
    )
    parser.add_argument(
        "--zscore", action="store_true", help="also time ours with --zscore-sessions"
    )
    parser.add_argument("--tiny", action="store_true", help="small grid and design (seconds)")
    parser.add_argument("--tmp", help="folder for the temporary files (default the system's)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    parser.add_argument("--out", type=Path, help="results JSON (Markdown written beside it)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args.worker)
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    out = args.out or RESULTS / ("nsd_convert_tiny.json" if args.tiny else "nsd_convert.json")
    report = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {out} and {out.with_suffix('.md')}")
    failed = "error" in report["ours"] or any("error" in r for r in report["reference"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
