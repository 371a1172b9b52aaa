"""Benchmark: one NSD-scale subject's two ridge decoders, time and peak memory.

The decoders of Takagi & Nishimoto on NSD subject 1, with the project's solver
(:func:`nipype_brainrecon.ridge.fit_ridge_cv`, the paper's 7 alphas, 5 folds, float32, no
intercept on standardised voxels as in the paper):

* z decoder: 24,980 trials x 5,917 early-visual voxels -> 6,400 targets (4 x 40 x 40 VAE latent);
* c decoder: 24,980 trials x 7,604 ventral voxels -> 59,136 targets (77 x 768 CLIP text embedding).

Each fit runs in its own child process on synthetic float32 data of that shape (voxels with
offsets and scales; targets a low-rank function of the voxels plus noise). Reported: seconds of
the fit, seconds of data generation, and peak resident memory of the whole child (inputs
included) from the kernel (``os.wait4`` rusage ``ru_maxrss``, measured by this parent; the child
also reports the RSS with its inputs loaded and, on CUDA, torch's peak GPU memory). Goal (issue 7):
the c decoder in at most 20 minutes and 12 GB peak on a 2-core, 24 GB machine.

The reference, himalaya's ``RidgeCV`` (numpy backend, with scikit-learn's ``StandardScaler``),
runs beside ours with ``--methods ours himalaya`` when its memory, estimated from 42 GiB at the
full c-decoder size (issue 7), fits in 80 % of the available memory; otherwise it is recorded as
skipped with that estimate. ``--scale`` multiplies all three sizes (0.02: seconds, to check the
script); the full size is ``--scale 1`` (minutes to hours; run it on a quiet machine).

    python -m benchmarks.bench_nsd_scale [--scale 1.0] [--targets z c] [--methods ours himalaya]
        [--backend numpy|torch|auto] [--device cuda] [--threads N] [--out FILE]

Writes FILE (default ``benchmarks/results/nsd_scale.json``; ``nsd_scale_torch_cuda.json`` for
``--backend torch --device cuda``, ``..._<scale>.json`` for a reduced scale) and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import cpu_model, package_versions, rss_kib, run_worker_child

#: (trials, voxels, targets) of NSD subject 1 in the paper.
SHAPES = {"z": (24980, 5917, 6400), "c": (24980, 7604, 59136)}
PAPER_ALPHAS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
N_FOLDS = 5
GOALS = {"c": {"seconds": 20 * 60, "peak_gb": 12.0}}
#: himalaya RidgeCV's estimated peak at the full c-decoder size (issue 7), scaled by n x t.
HIMALAYA_FULL_C_GIB = 42.0
#: Rank of the synthetic targets' dependence on the voxels (keeps data generation cheap).
SIGNAL_RANK = 64
RESULTS = Path(__file__).resolve().parent / "results"


def scaled_shape(target: str, scale: float) -> tuple[int, int, int]:
    """The (n, p, t) of ``target`` with every size multiplied by ``scale`` (at least 8 each).

    >>> scaled_shape("c", 0.02)
    (500, 152, 1183)
    """
    return tuple(max(8, round(s * scale)) for s in SHAPES[target])  # type: ignore[return-value]


def himalaya_estimate_gib(n: int, t: int) -> float:
    """himalaya's peak memory, scaled from the full c decoder by the size of Y (n x t).

    >>> round(himalaya_estimate_gib(24980, 6400), 1)
    4.5
    """
    full_n, _, full_t = SHAPES["c"]
    return HIMALAYA_FULL_C_GIB * (n * t) / (full_n * full_t)


def make_data(n: int, p: int, t: int, seed: int = 0):
    """float32 voxels with offsets and scales; targets a rank-64 function of them plus noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p), dtype=np.float32)
    k = min(SIGNAL_RANK, p)
    W = rng.standard_normal((k, t), dtype=np.float32)
    W *= (np.logspace(-2, 0, t, dtype=np.float32) / np.sqrt(k))[None, :]
    Y = np.empty((n, t), np.float32)
    step = 4096
    for i in range(0, n, step):
        rows = slice(i, min(n, i + step))
        Y[rows] = X[rows, :k] @ W
        Y[rows] += rng.standard_normal((rows.stop - rows.start, t), dtype=np.float32)
    del W
    X *= rng.uniform(0.5, 2.0, p).astype(np.float32)
    X += rng.uniform(-1.0, 1.0, p).astype(np.float32)
    return X, Y


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Generate one decoder's data and fit it (in a child process); print nothing else."""
    import warnings

    import numpy as np

    n, p, t = spec["shape"]
    method = spec["method"]
    alphas = np.asarray(PAPER_ALPHAS)
    start = time.perf_counter()
    X, Y = make_data(n, p, t)
    gen_s = time.perf_counter() - start
    base_kib = rss_kib()
    info: dict[str, Any] = {}
    gpu_peak = None
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "ours":
            from nipype_brainrecon.ridge import fit_ridge_cv

            if spec.get("device", "").startswith("cuda"):
                import torch

                torch.cuda.reset_peak_memory_stats()
            dec = fit_ridge_cv(
                X,
                Y,
                alphas=alphas,
                n_folds=N_FOLDS,
                fit_intercept=False,
                backend=spec["backend"],
                device=spec.get("device") or None,
                dtype=np.float32,
            )
            if spec.get("device", "").startswith("cuda"):
                import torch

                torch.cuda.synchronize()
                gpu_peak = torch.cuda.max_memory_allocated() / 2**30
            chosen = np.asarray(dec.alphas, np.float64)
            info = {k: v for k, v in dict(dec.fit_info).items() if _jsonable(v)}
        else:
            from himalaya.backend import set_backend
            from himalaya.ridge import RidgeCV
            from sklearn.preprocessing import StandardScaler

            set_backend("numpy", on_error="raise")
            Xs = StandardScaler().fit_transform(X)
            model = RidgeCV(alphas=alphas, cv=N_FOLDS, fit_intercept=False).fit(Xs, Y)
            chosen = np.asarray(model.best_alphas_, np.float64)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "generate_s": gen_s,
        "input_gib": (X.nbytes + Y.nbytes) / 2**30,
        "rss_with_inputs_gib": base_kib / 2**20,
        "gpu_peak_gib": gpu_peak,
        "alpha_counts": {f"{a:g}": int(np.isclose(chosen, a).sum()) for a in alphas},
        "fit_info": info,
    }


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def run_child(spec: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    """Run one fit in a child process; its peak RSS from the kernel (``os.wait4`` rusage)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    result, wall, usage = run_worker_child("benchmarks.bench_nsd_scale", spec, env, timeout)
    if "error" in result:
        return result
    result["wall_s"] = wall
    result["peak_rss_gib"] = usage.ru_maxrss / 2**20
    return result


def _worker_main(spec_json: str) -> int:
    import resource

    spec = json.loads(spec_json)
    result = run_worker(spec)
    # The child's own view of its peak (the parent's wait4 figure is the one reported).
    result["self_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(result))
    return 0


def _machine(threads: int, device: str | None) -> dict[str, Any]:
    cpu = cpu_model()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = package_versions(("numpy", "torch", "himalaya", "nipype-brainrecon"))
    gpu = None
    if device and device.startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(torch.device(device))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "threads": threads,
        "gpu": gpu,
        "load_average_before": list(os.getloadavg()),
        "python": platform.python_version(),
        "versions": versions,
    }


def _available_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = args.device
    report: dict[str, Any] = {
        "benchmark": "NSD-scale ridge decoders (5-fold CV, paper alphas, float32)",
        "scale": args.scale,
        "backend": args.backend,
        "device": device or "cpu",
        "machine": _machine(args.threads, device),
        "goals": GOALS,
        "results": [],
    }
    for target in args.targets:
        n, p, t = scaled_shape(target, args.scale)
        row: dict[str, Any] = {"target": target, "shape": {"n": n, "p": p, "t": t}}
        for method in args.methods:
            if method == "himalaya":
                estimate = himalaya_estimate_gib(n, t)
                if estimate > 0.8 * _available_gib():
                    row[method] = {
                        "skipped": f"estimated {estimate:.0f} GiB > 80% of the "
                        f"{_available_gib():.0f} GiB available",
                        "estimated_peak_gib": estimate,
                    }
                    continue
            spec = {"shape": [n, p, t], "method": method, "backend": args.backend}
            if device and method == "ours":
                spec["device"] = device
            print(f"{target} decoder {n}x{p}->{t}: {method} ...", file=sys.stderr, flush=True)
            row[method] = run_child(spec, args.threads, args.timeout)
            print(f"  {row[method]}", file=sys.stderr, flush=True)
        ours, ref = row.get("ours", {}), row.get("himalaya", {})
        if "seconds" in ours and "seconds" in ref:
            row["speedup_vs_himalaya"] = ref["seconds"] / ours["seconds"]
            row["memory_ratio_himalaya_over_ours"] = ref["peak_rss_gib"] / ours["peak_rss_gib"]
        goal = GOALS.get(target)
        if goal and "seconds" in ours and args.scale == 1.0:
            row["meets_goal"] = (
                ours["seconds"] <= goal["seconds"] and ours["peak_rss_gib"] * 2**30 / 1e9
                <= goal["peak_gb"]
            )  # fmt: skip
        report["results"].append(row)
    report["machine"]["load_average_after"] = list(os.getloadavg())
    return report


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# {report['benchmark']}",
        "",
        f"Scale {report['scale']} of NSD subject 1; backend {report['backend']} on "
        f"{report['device']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['threads']} BLAS threads" + (f"; GPU {m['gpu']}" if m.get("gpu") else "") + ".",
        f"Load average before/after: {m['load_average_before'][0]:.1f}/"
        f"{m.get('load_average_after', [float('nan')])[0]:.1f}.",
        "",
        "| decoder | n × p → t | ours s | ours peak RSS GiB | himalaya s | himalaya peak GiB "
        "| speed-up | input GiB | data generation s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        s = row["shape"]
        ours, ref = row.get("ours", {}), row.get("himalaya", {})
        gpu = f" (GPU {ours['gpu_peak_gib']:.2f})" if ours.get("gpu_peak_gib") else ""
        if "skipped" in ref:
            ref_s, ref_mem = "not run", f"~{ref['estimated_peak_gib']:.0f} (est.)"
        else:
            ref_s, ref_mem = _fmt(ref.get("seconds")), _fmt(ref.get("peak_rss_gib"), ".2f")
        lines.append(
            f"| {row['target']} | {s['n']:,} × {s['p']:,} → {s['t']:,} | "
            f"{_fmt(ours.get('seconds')) if 'error' not in ours else ours['error']} | "
            f"{_fmt(ours.get('peak_rss_gib'), '.2f')}{gpu} | {ref_s} | {ref_mem} | "
            f"{_fmt(row.get('speedup_vs_himalaya'), '.1f')}{'×' if 'speedup_vs_himalaya' in row else ''}"
            f" | {_fmt(ours.get('input_gib'), '.2f')} | {_fmt(ours.get('generate_s'))} |"
        )
    lines += [
        "",
        "Peak RSS: the kernel's maximum resident set of the child process that generated the "
        "data and fitted (inputs included). Goal (issue 7, full scale): the c decoder in ≤ 20 min "
        "and ≤ 12 GB. himalaya's estimate scales 42 GiB at the full c decoder by n × t.",
    ]
    return "\n".join(lines) + "\n"


def default_out(scale: float, device: str | None, backend: str = "numpy") -> Path:
    """Results file name from the settings.

    >>> default_out(0.02, None).name, default_out(1.0, "cuda", "torch").name
    ('nsd_scale_0.02.json', 'nsd_scale_torch_cuda.json')
    """
    name = "nsd_scale"
    if backend != "numpy":
        name += f"_{backend}"
    if device and device.startswith("cuda"):
        name += "_" + device.replace(":", "")
    if scale != 1.0:
        name += f"_{scale:g}"
    return RESULTS / f"{name}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (1 = NSD)")
    parser.add_argument("--targets", nargs="+", choices=sorted(SHAPES), default=["z", "c"])
    parser.add_argument(
        "--methods", nargs="+", choices=["ours", "himalaya"], default=["ours", "himalaya"]
    )
    parser.add_argument("--backend", choices=["numpy", "torch", "auto"], default="numpy")
    parser.add_argument("--device", help="torch device for --backend torch (e.g. cuda)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="BLAS threads")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0, help="seconds per fit")
    parser.add_argument("--out", type=Path, help="results JSON (Markdown written beside it)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args.worker)
    if args.device and args.backend == "numpy":
        args.backend = "torch"
    out = args.out or default_out(args.scale, args.device, args.backend)
    report = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
