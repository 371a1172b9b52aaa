"""Benchmark: vectorised single-trial betas against nilearn's FirstLevelModel fitted once per trial.

The reference is the usual least-squares-separate loop (one ``FirstLevelModel`` fit per trial with
that trial as one regressor and all other trials as another), on the same synthetic run, for the
'ols' and 'ar1' noise models. Reported: seconds per run, speed-up, peak memory (tracemalloc, in a
separate run so tracing does not slow the timed one) and agreement of the betas.

    python -m benchmarks.bench_betas [--quick] [--out FILE] [--threads N] [--repeats N]

Writes FILE (default ``benchmarks/results/betas.json``) and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from nipype_brainrecon.glm import CONFOUND_PRESETS, estimate_single_trial_betas, select_confounds
from nipype_brainrecon.io import atomic_write_text

FULL = {"n_vols": 300, "n_trials": 60, "shape": (20, 20, 20), "t_r": 2.0}
QUICK = {"n_vols": 120, "n_trials": 20, "shape": (10, 10, 10), "t_r": 2.0}
TARGETS = {"speedup": 30.0, "ols_max_rel": 1e-5, "ar1_corr": 0.999}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "betas.json"


def make_run(n_vols: int, n_trials: int, shape: tuple[int, int, int], t_r: float, seed: int = 0):
    """A synthetic run: Glover-HRF trial responses, AR(1) noise, drifts and motion effects."""
    from nilearn.glm.first_level import compute_regressor

    rng = np.random.default_rng(seed)
    frame_times = np.arange(n_vols) * t_r
    # Jittered trials (3 s on, 4-9 s apart) filling the run but ending 20 s before its end.
    span = n_vols * t_r - 30.0
    gaps = rng.uniform(4.0, 9.0, n_trials)
    onsets = 6.0 + np.cumsum(gaps) - gaps[0]
    onsets *= min(1.0, span / onsets[-1])
    durations = np.full(n_trials, 3.0)
    regs = np.stack(
        [
            compute_regressor(np.array([[o], [d], [1.0]]), "glover", frame_times)[0][:, 0]
            for o, d in zip(onsets, durations, strict=True)
        ],
        axis=1,
    )
    n_vox = int(np.prod(shape))
    amp = rng.normal(10.0, 5.0, (n_trials, n_vox))  # ~1% of a 1000 baseline
    motion = pd.DataFrame(
        rng.normal(0, 0.05, (n_vols, 6)).cumsum(0), columns=CONFOUND_PRESETS["motion"]
    )
    confounds = motion.copy()
    for col in motion.columns:
        confounds[f"{col}_derivative1"] = motion[col].diff()
    rho = rng.uniform(0.1, 0.5, n_vox)
    noise = np.empty((n_vols, n_vox))
    white = rng.normal(0, 8.0, (n_vols, n_vox))
    noise[0] = white[0]
    for t in range(1, n_vols):
        noise[t] = rho * noise[t - 1] + white[t]
    drift = np.outer(np.linspace(-1, 1, n_vols), rng.normal(0, 10, n_vox))
    y = 1000.0 + regs @ amp + noise + drift + motion.to_numpy() @ rng.normal(0, 20, (6, n_vox))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    # float64 so both sides compute in double precision (nilearn scales float32 data in float32).
    bold = nib.Nifti1Image(y.T.reshape(*shape, n_vols), affine)
    bold.header.set_xyzt_units("mm", "sec")
    bold.header.set_zooms((2.0, 2.0, 2.0, t_r))
    mask = nib.Nifti1Image(np.ones(shape, dtype=np.uint8), affine)
    events = pd.DataFrame(
        {
            "onset": onsets.round(3),
            "duration": durations,
            "stim_file": [f"stimuli/img{j:03d}.png" for j in range(n_trials)],
        }
    )
    return {"bold": bold, "mask": mask, "events": events, "confounds": confounds, "t_r": t_r}


def ours(run: dict, noise_model: str) -> np.ndarray:
    betas, _ = estimate_single_trial_betas(
        run["bold"], run["events"], run["confounds"], run["mask"], noise_model=noise_model
    )
    return np.asarray(betas.dataobj)[np.asarray(run["mask"].dataobj) > 0].T


def nilearn_lss(run: dict, noise_model: str) -> np.ndarray:
    """One FirstLevelModel per trial: the trial vs all other trials, same confounds and drifts."""
    from nilearn.glm.first_level import FirstLevelModel

    events = run["events"]
    confounds = select_confounds(run["confounds"])
    sel = np.asarray(run["mask"].dataobj) > 0
    out = []
    for j in range(len(events)):
        ev = events[["onset", "duration"]].assign(trial_type="other")
        ev.loc[j, "trial_type"] = "trial"
        model = FirstLevelModel(
            t_r=run["t_r"],
            hrf_model="glover",
            drift_model="cosine",
            high_pass=1 / 128,
            noise_model=noise_model,
            mask_img=run["mask"],
            minimize_memory=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(run["bold"], events=ev, confounds=confounds)
            effect = model.compute_contrast("trial", output_type="effect_size")
        out.append(np.asarray(effect.dataobj)[sel])
    return np.array(out)


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[list[float], np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _versions() -> dict[str, str]:
    import nilearn
    import scipy

    from nipype_brainrecon import __version__

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "nilearn": nilearn.__version__,
        "nipype_brainrecon": __version__,
    }


def run_benchmark(config: dict, repeats: int) -> list[dict]:
    run = make_run(**config)
    ours(run, "ols")  # warm imports and caches on both sides before timing
    nilearn_lss({**run, "events": run["events"].iloc[:2].reset_index(drop=True)}, "ols")
    rows = []
    for noise_model in ("ols", "ar1"):
        our_times, our_betas = timed(lambda nm=noise_model: ours(run, nm), repeats)
        ref_times, ref_betas = timed(lambda nm=noise_model: nilearn_lss(run, nm), 1)
        our_s, ref_s = statistics.median(our_times), statistics.median(ref_times)
        diff = np.abs(our_betas - ref_betas)
        rows.append(
            {
                "noise_model": noise_model,
                "ours_s": our_s,
                "ours_s_all": our_times,
                "nilearn_s": ref_s,
                "speedup": ref_s / our_s,
                "ours_peak_mib": peak_mib(lambda nm=noise_model: ours(run, nm)),
                "nilearn_peak_mib": peak_mib(lambda nm=noise_model: nilearn_lss(run, nm)),
                "max_rel_diff": float(diff.max() / np.abs(ref_betas).max()),
                "corr": float(np.corrcoef(our_betas.ravel(), ref_betas.ravel())[0, 1]),
            }
        )
        print(
            f"{noise_model}: ours {our_s:.3f} s, nilearn {ref_s:.2f} s "
            f"({rows[-1]['speedup']:.0f}x), max rel diff {rows[-1]['max_rel_diff']:.1e}, "
            f"r {rows[-1]['corr']:.8f}",
            flush=True,
        )
    return rows


def _verdicts(rows: list[dict], quick: bool) -> dict[str, bool]:
    by = {r["noise_model"]: r for r in rows}
    out = {
        "ols_identical": by["ols"]["max_rel_diff"] <= TARGETS["ols_max_rel"],
        "ar1_correlated": by["ar1"]["corr"] >= TARGETS["ar1_corr"],
    }
    if not quick:  # speed targets are for the full size
        out["ols_speedup"] = by["ols"]["speedup"] >= TARGETS["speedup"]
        out["ar1_speedup"] = by["ar1"]["speedup"] >= TARGETS["speedup"]
    return out


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [
        "# Single-trial betas (LSS) vs nilearn FirstLevelModel per trial",
        "",
        f"{cfg['n_vols']} volumes × {cfg['n_trials']} trials × {np.prod(cfg['shape'])} voxels, "
        f"TR {cfg['t_r']} s, Glover HRF, cosine drift 1/128 Hz, 12 motion confounds; "
        f"{result['threads']} BLAS thread(s), {result['machine']}.",
        "",
        "| noise model | ours (s) | nilearn (s) | speed-up | peak MiB ours | peak MiB nilearn "
        "| max rel diff | r |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['noise_model']} | {r['ours_s']:.3f} | {r['nilearn_s']:.2f} | "
            f"{r['speedup']:.0f}× | {r['ours_peak_mib']:.0f} | {r['nilearn_peak_mib']:.0f} | "
            f"{r['max_rel_diff']:.1e} | {r['corr']:.8f} |"
        )
    targets = ", ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in result["verdicts"].items())
    lines += [
        "",
        f"Targets (speed-up ≥ 30×, OLS max rel diff ≤ 1e-5, AR(1) r ≥ 0.999): {targets}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_betas", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (seconds), for CI")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON file")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of ours (median)")
    args = parser.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=args.threads):
            rows = run_benchmark(config, args.repeats)
    else:
        rows = run_benchmark(config, args.repeats)
    result = {
        "benchmark": "single-trial betas, LSS",
        "quick": args.quick,
        "config": {**config, "shape": list(config["shape"])},
        "threads": args.threads if threadpool_limits is not None else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": _versions(),
        "targets": TARGETS,
        "results": rows,
    }
    result["verdicts"] = _verdicts(rows, args.quick)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0 if all(result["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
