"""Benchmark: the ridge decoder solver against himalaya's and scikit-learn's RidgeCV.

All three fit float32 data with 5 folds and the paper's 7 alphas, without intercept on
standardised voxels (the paper's setting: ``StandardScaler`` + himalaya ``RidgeCV`` defaults):

* ours: :func:`nipype_brainrecon.ridge.fit_ridge_cv` (numpy backend on CPU);
* himalaya: ``StandardScaler`` + ``himalaya.ridge.RidgeCV(alphas, cv=5)``, numpy backend, the
  authors' tool;
* scikit-learn: ``StandardScaler`` + ``sklearn.linear_model.RidgeCV(alphas, cv=5)``. With an
  explicit ``cv`` scikit-learn runs a grid search over ``KFold(5)`` and picks one alpha shared
  by all targets (``alpha_per_target`` needs its default leave-one-out mode, a different CV).

Every method runs in its own subprocess with the same BLAS thread count and fits twice there
(``--fits``): the first fit in the fresh process, whose extra memory is measured, and the same
fit repeated, timed on its own. Reported per shape:
seconds, speed-up (reference / ours), agreement with himalaya (same alpha fraction, max
relative prediction difference on held-out samples), ours' FLOPs and their rate as a fraction
of this machine's float32 GEMM rate (measured in the same run), and extra peak memory (peak
RSS during the fit minus the RSS with inputs loaded; the kernel's peak-RSS counter is reset
before the fit, with a sampling thread as a fallback). An extrapolation to the full NSD
c-decoder (n=24,980, p=7,604, t=59,136) uses costs fitted to the measured runs.

    python -m benchmarks.bench_ridge [--quick] [--out FILE] [--threads N] [--methods ...]

Writes FILE (default ``benchmarks/results/ridge.json``) and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import cpu_model as _cpu_model
from benchmarks._common import package_versions as _versions
from benchmarks._common import rss_kib as _rss_kib

FULL_SHAPES = [(6000, 1500, 6400), (6000, 1500, 16384), (12000, 3000, 6400)]
QUICK_SHAPES = [(600, 150, 640), (600, 150, 1638), (1200, 300, 640)]
NSD_C = (24980, 7604, 59136)
N_TEST = 200
N_FOLDS = 5
PAPER_ALPHAS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
#: Himalaya RidgeCV seconds on the issue author's machine, for the same shapes.
HIMALAYA_REFERENCE_S = {
    (6000, 1500, 6400): 28.6,
    (6000, 1500, 16384): 65.9,
    (12000, 3000, 6400): 158,
}
GOALS = {"speedup_vs_himalaya": 5.0, "gemm_fraction": 0.70}
METHODS = ("ours", "himalaya", "sklearn")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ridge.json"


# --------------------------------------------------------------------------------------------
# Cost models
# --------------------------------------------------------------------------------------------


def ours_flops(
    n: int,
    p: int,
    t: int,
    a: int = 7,
    k: int = N_FOLDS,
    products: float | None = None,
    refit: str = "cholesky",
    distinct: int = 1,
    held: float = 0.0,
    series: float = 0.0,
    inverse_targets: Sequence[int] = (),
) -> dict[str, float]:
    """FLOPs of :func:`fit_ridge_cv` in its voxel-basis form (each fold has >= p samples).

    Matrix products count 2 m n k (a symmetric rank-k update, syrk, half of that); each float64
    eigendecomposition (LAPACK syevd) counts
    4 p^3 (4/3 p^3 tridiagonal reduction, 2 p^3 back-transformation, ~2/3 p^3 merging).
    ``products`` is the mean number of held-out products per fold (``a`` without low-rank
    weights). ``refit`` is the decoder's ``fit_info["refit"]``: "cholesky" counts one float64
    factorisation (p^3/3) per ``distinct`` chosen alpha and the triangular solves (2 p^2 per
    target) in float64, except for the alphas of ``inverse_targets`` (their targets each; the
    decoder's ``fit_info["inverse_refit_targets"]``): the inverse from the factor (2 p^3/3)
    and a float32 product (2 p^2 per target); "eigh" one more decomposition and two float32
    products per target. ``held`` is the fraction of folds scored through held-out operators
    (``products`` operators of ``n_test x p`` per fold, built once; no ``p x p`` product per
    target). ``series`` is the fraction of those folds taking the Neumann series instead of an
    eigendecomposition: two float64 Cholesky factorisations (the fold Gram and the proof of its
    eigenvalue floor, p^3/3 each), the inverse from the factor (2 p^3/3) and chained operators
    (``products`` GEMMs of ``n_test x p x p``, no eigen-basis product). Element-wise work
    (scaling, residuals, squared norms) and the power iterations (2 p^2 each) are not counted.
    """
    products = a if products is None else products
    gram64 = n * p * p * 2  # full Gram + the held-out folds' Grams, float64 syrk
    eigh64 = (1 - series) * k * 4 * p**3
    gram64 += series * k * (2 * p**3 / 3 + 2 * p**3 / 3)  # Cholesky x2, inverse from factor
    test_ops = (1 - series) * 2 * n * p * p  # held-out voxels in each fold's eigen-basis
    per_target = (
        2 * n * p  # X^T Y, once (kept in the output array)
        + 2 * n * p  # held-out correction of every fold: (X_f B_f)^T Y_f
        + (1 - held) * k * 2 * p * p  # training cross-products in each fold's eigen-basis
        + products * 2 * n * p  # held-out predictions (one product per alpha or per factor)
    )
    if refit == "cholesky":
        # Alphas with many targets multiply by the explicit inverse (potri, 2/3 p^3 more) in
        # float32; the others solve with the factor in float64.
        by_inverse = sum(inverse_targets)
        gram64 += distinct * p**3 / 3 + len(inverse_targets) * 2 * p**3 / 3
        gram64 += (t - by_inverse) * 2 * p * p
        gemm32_refit = by_inverse * 2 * p * p
    else:
        gemm32_refit = 0
        eigh64 += 4 * p**3
        per_target += 2 * 2 * p * p  # into the eigen-basis and back
    operators = held * products * 2 * n * p * p  # A_f diag(w_j) B_f^T, per fold and product
    gemm32 = test_ops + operators + t * per_target + gemm32_refit
    return {"gemm32": float(gemm32), "gemm64": float(gram64), "eigh64": float(eigh64)}


def _ours_flops_of(row: dict[str, Any], n: int, p: int, t: int) -> dict[str, float]:
    """ours_flops for a measured result (its products, refit and distinct chosen alphas)."""
    info = row.get("fit_info", {})
    prods = info.get("products_per_fold") or [7]
    distinct = sum(1 for v in row.get("alpha_counts", {}).values() if v) or 1
    flags = info.get("held_out_operators") or [False]
    series = info.get("series_folds") or [False]
    return ours_flops(
        n,
        p,
        t,
        products=sum(prods) / len(prods),
        refit=info.get("refit", "eigh"),
        distinct=distinct,
        held=sum(flags) / len(flags),
        series=sum(series) / len(series),
        inverse_targets=info.get("inverse_refit_targets") or (),
    )


def himalaya_flops(n: int, p: int, t: int, a: int = 7, k: int = N_FOLDS) -> dict[str, float]:
    """FLOPs of himalaya's ``solve_ridge_cv_svd`` (float32): per fold an SVD of the training
    voxels, the (alphas, p, n_train) resolution matrices, their product with the held-out
    voxels and with the training targets; then the same on all samples for the refit, with
    every alpha used (the paper's grid leaves near-ties, so all of them are)."""
    n_tr = n * (k - 1) / k
    svd = k * (4 * n_tr * p * p + 8 * p**3) + (4 * n * p * p + 8 * p**3)
    gemm = k * (a * 2 * p * p * n_tr + a * 2 * (n / k) * p * n_tr + a * 2 * (n / k) * n_tr * t)
    gemm += a * 2 * p * p * n + a * 2 * p * n * t
    return {"gemm32": float(gemm), "svd32": float(svd)}


def ours_extra_bytes(n: int, p: int, t: int, k: int = N_FOLDS) -> float:
    """Peak working memory of fit_ridge_cv beyond its inputs (voxel form, float32, default
    budget), output coefficients included. Folds run one at a time: the full float64 Gram
    stays resident; the first pass may hold all standardised voxels (when they take at most the
    budget and 16 p^2 bytes) and a widening buffer; while a fold's Gram is decomposed it, the
    fold's Gram, the syevd workspace (2 p^2 float64) and the fold's held-out rows are alive;
    while targets stream through a fold, the Gram, one float32 basis, the fold's held-out voxels
    and one chunk."""
    from nipype_brainrecon.ridge import DEFAULT_BUDGET, WIDEN_BYTES
    from nipype_brainrecon.ridge.primal_pass import keeps_standardised_voxels

    budget = min(DEFAULT_BUDGET, 4 * n * (p + t) // 4)
    voxels = 4 * n * p if keeps_standardised_voxels(n, p, 4, budget) else 0
    first_pass = 8 * p * p + voxels + WIDEN_BYTES
    decomposing = 8 * p * p * 4 + 4 * (n // k + 1) * p  # the fold's standardised rows too
    streaming = 8 * p * p + 4 * p * p + 4 * (n // k + 1) * p + budget
    return float(4 * p * t + max(first_pass, decomposing, streaming))


# --------------------------------------------------------------------------------------------
# Worker (one method, one shape, in its own process)
# --------------------------------------------------------------------------------------------


class _PeakSampler(threading.Thread):
    """Samples VmRSS every few milliseconds (fallback when VmHWM cannot be reset)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_kib()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.005):
            self.peak = max(self.peak, _rss_kib())

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return max(self.peak, _rss_kib())


def make_data(n: int, p: int, t: int, seed: int = 0):
    """float32 voxels with offsets and scales, targets = voxels @ weights + noise (varied SNR)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + N_TEST, p), dtype=np.float32)
    weights = rng.standard_normal((p, t), dtype=np.float32)
    weights *= (np.logspace(-2, 0, t, dtype=np.float32) / np.sqrt(p))[None, :]
    Y = X @ weights
    del weights
    Y += rng.standard_normal(Y.shape, dtype=np.float32)
    X *= rng.uniform(0.5, 2.0, p).astype(np.float32)
    X += rng.uniform(-1.0, 1.0, p).astype(np.float32)
    return X[:n], Y[:n], np.ascontiguousarray(X[n:])


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import warnings

    import numpy as np

    n, p, t = spec["shape"]
    method = spec["method"]
    alphas = np.asarray(PAPER_ALPHAS)
    # Imports and BLAS thread buffers before the baseline, so only the fit's memory counts.
    import scipy.linalg  # noqa: F401

    if method == "ours":
        from nipype_brainrecon.ridge import fit_ridge_cv
    elif method == "himalaya":
        from himalaya.backend import set_backend
        from himalaya.ridge import RidgeCV as HRidgeCV
        from sklearn.preprocessing import StandardScaler

        set_backend("numpy", on_error="raise")
    else:
        from sklearn.linear_model import RidgeCV as SRidgeCV
        from sklearn.preprocessing import StandardScaler
    info: dict[str, Any] = {}
    warm = np.ones((512, 512), np.float32)
    warm @ warm
    scipy.linalg.eigh(warm[:64, :64] + np.eye(64, dtype=np.float32))

    X, Y, X_test = make_data(n, p, t)
    X = np.ascontiguousarray(X)
    Y = np.ascontiguousarray(Y)
    base = _rss_kib()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    sampler = _PeakSampler()
    sampler.start()

    def fit() -> tuple[float, Any, Any]:
        """Seconds, predictions on the test rows and chosen alphas of one fit."""
        nonlocal info
        start = time.perf_counter()
        if method == "ours":
            dec = fit_ridge_cv(
                X, Y, alphas=alphas, n_folds=N_FOLDS, fit_intercept=False, backend="numpy"
            )
            seconds = time.perf_counter() - start
            info = dec.fit_info
            return seconds, dec.predict(X_test), dec.alphas
        scaler = StandardScaler()
        Xs = scaler.fit_transform(X)
        if method == "himalaya":
            model = HRidgeCV(alphas=alphas, cv=N_FOLDS, fit_intercept=False).fit(Xs, Y)
            chosen = np.asarray(model.best_alphas_, np.float64)
        else:
            model = SRidgeCV(alphas=alphas, cv=N_FOLDS, fit_intercept=False).fit(Xs, Y)
            chosen = np.full(t, float(model.alpha_))
        del Xs
        seconds = time.perf_counter() - start
        return seconds, model.predict(scaler.transform(X_test)), chosen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, pred, chosen = fit()
        peak = sampler.stop()
        if hwm_reset:
            peak = max(peak, _rss_kib("VmHWM"))
        # The same fit again in this process: its memory pages are no longer new to it, as in
        # the sgemm measurement (best of three after a warm-up product).
        repeats = [fit()[0] for _ in range(max(0, spec.get("fits", 1) - 1))]
    out = Path(spec["out_dir"])
    np.save(out / f"{method}_pred.npy", np.asarray(pred, np.float32))
    np.save(out / f"{method}_alphas.npy", np.asarray(chosen, np.float64))
    return {
        "seconds": seconds,
        "seconds_repeat": min(repeats) if repeats else None,
        "fit_info": info,
        "alpha_counts": {f"{a:g}": int((np.isclose(chosen, a)).sum()) for a in alphas},
        "extra_peak_mib": (peak - base) / 1024,
        "input_mib": (X.nbytes + Y.nbytes) / 2**20,
        "peak_method": "VmHWM reset" if hwm_reset else "sampled VmRSS",
    }


def measure_sgemm(size: int) -> dict[str, float]:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return {"size": size, "seconds": best, "gflops": 2 * size**3 / best / 1e9}


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _subprocess(spec: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_ridge", "--worker", json.dumps(spec)]
    root = Path(__file__).resolve().parents[1]
    try:
        proc = subprocess.run(
            cmd, env=_thread_env(threads), cwd=root, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fit_costs(rows: list[tuple[dict[str, float], float]], keys: list[str]) -> dict[str, float]:
    """Seconds per FLOP of each cost component, by non-negative least squares over runs."""
    import numpy as np
    from scipy.optimize import nnls

    A = np.array([[flops[k] for k in keys] for flops, _ in rows])
    b = np.array([seconds for _, seconds in rows])
    scale = A.max(0)
    scale[scale <= 0] = 1.0  # a component no run had (e.g. no eigendecomposition): cost 0
    coef, _ = nnls(A / scale, b)
    return {k: float(c / s) for k, c, s in zip(keys, coef, scale, strict=True)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from nipype_brainrecon.io import atomic_write_text

    shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
    threads = args.threads
    started = time.time()
    load_before = os.getloadavg()
    sgemm_size = 2048 if args.quick else 4096
    sgemm = _sgemm_subprocess(sgemm_size, threads)
    sgemm_seen = [sgemm["gflops"]]
    print(f"sgemm {sgemm['size']}: {sgemm['gflops']:.0f} GFLOP/s ({threads} threads)", flush=True)
    results = []
    for shape in shapes:
        n, p, t = shape
        row: dict[str, Any] = {"shape": {"n": n, "p": p, "t": t}}
        with tempfile.TemporaryDirectory() as tmp:
            # Every method alike, runs interleaved (ours, himalaya, sklearn, ours, ...) so that a
            # change in the machine's speed hits all of them; the best time of each is kept.
            times: dict[str, list[float]] = {m: [] for m in args.methods}
            repeat_times: dict[str, list[float]] = {m: [] for m in args.methods}
            paired: list[float] = []  # sgemm measured just before each of ours' runs
            errors: dict[str, dict[str, Any]] = {}
            for _ in range(max(1, args.repeats)):
                for method in args.methods:
                    if method == "ours":
                        rate = _sgemm_subprocess(sgemm_size, threads)["gflops"]
                        sgemm_seen.append(rate)
                    spec = {
                        "method": method,
                        "shape": shape,
                        "out_dir": tmp,
                        "fits": args.fits,
                    }
                    res = _subprocess(spec, threads, args.timeout)
                    print(f"{shape} {method}: {res}", flush=True)
                    if "error" in res:
                        errors.setdefault(method, res)
                        continue
                    times[method].append(res["seconds"])
                    if res.get("seconds_repeat") is not None:
                        repeat_times[method].append(res["seconds_repeat"])
                    if method == "ours":
                        paired.append(rate)
                    row.setdefault(method, res)
            for method in args.methods:
                if times[method]:
                    row[method]["seconds_all"] = times[method]
                    row[method]["seconds"] = min(times[method])
                    row[method]["seconds_repeat_all"] = repeat_times[method]
                    row[method]["seconds_repeat"] = (
                        min(repeat_times[method]) if repeat_times[method] else None
                    )
                else:
                    row[method] = errors[method]
            if times.get("ours"):
                row["ours"]["sgemm_before_runs"] = paired
                row["ours"]["sgemm_before_best"] = paired[int(np.argmin(times["ours"]))]
                if len(repeat_times["ours"]) == len(paired):
                    best_repeat = int(np.argmin(repeat_times["ours"]))
                    row["ours"]["sgemm_before_best_repeat"] = paired[best_repeat]
            ref_alphas = Path(tmp) / "himalaya_alphas.npy"
            for method in args.methods:
                res = row[method]
                if "error" in res:
                    continue
                if ref_alphas.exists() and method != "himalaya":
                    a_ref = np.load(ref_alphas)
                    a_m = np.load(Path(tmp) / f"{method}_alphas.npy")
                    pred_ref = np.load(Path(tmp) / "himalaya_pred.npy").astype(np.float64)
                    pred_m = np.load(Path(tmp) / f"{method}_pred.npy").astype(np.float64)
                    res["same_alpha_fraction_vs_himalaya"] = float(
                        np.mean(np.isclose(a_m, a_ref, rtol=1e-3))
                    )
                    res["max_rel_pred_diff_vs_himalaya"] = float(
                        np.abs(pred_m - pred_ref).max() / np.abs(pred_ref).max()
                    )
                if method != "ours" and "error" not in row.get("ours", {"error": 1}):
                    res["speedup_of_ours"] = res["seconds"] / row["ours"]["seconds"]
                    if res.get("seconds_repeat") and row["ours"].get("seconds_repeat"):
                        res["speedup_of_ours_repeat"] = (
                            res["seconds_repeat"] / row["ours"]["seconds_repeat"]
                        )
        _derive_ours(row, sgemm)  # provisional; redone below with the run's fastest sgemm
        if shape in HIMALAYA_REFERENCE_S and "ours" in row and "error" not in row["ours"]:
            row["himalaya_reference_s"] = HIMALAYA_REFERENCE_S[shape]
            row["speedup_vs_reference_himalaya"] = (
                HIMALAYA_REFERENCE_S[shape] / row["ours"]["seconds"]
            )
        results.append(row)
        if args.out is not None:  # partial results survive an interrupted run
            atomic_write_text(args.out.with_suffix(".partial.json"), json.dumps(results, indent=2))

    report: dict[str, Any] = {
        "benchmark": "ridge decoder solver (5-fold CV, paper alphas, float32)",
        "quick": bool(args.quick),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "threads": threads,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "python": platform.python_version(),
            "versions": _versions(),
        },
        "sgemm": {**sgemm, "gflops_seen": sgemm_seen, "gflops_max": max(sgemm_seen)},
        "goals": GOALS,
        "results": results,
        "wall_seconds": time.time() - started,
    }
    for row in results:
        _derive_ours(row, report["sgemm"])
    report["extrapolation_nsd_c"] = _extrapolate(results)
    return report


def _sgemm_subprocess(size: int, threads: int) -> dict[str, float]:
    """The float32 GEMM rate, measured in a fresh process with the benchmark's threads."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_ridge", "--sgemm", str(size)],
        env=_thread_env(threads),
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _derive_ours(row: dict[str, Any], sgemm: dict[str, Any]) -> None:
    """FLOPs, rates and memory ratio of ours in a result row, from its measured seconds.

    The float32 GEMM rate of this machine changed by up to a fifth within a run, so the
    fraction of sgemm is taken against the rate measured just before ours' best run
    (``gemm_fraction``) and, strictest, against the fastest sgemm of the whole run
    (``gemm_fraction_of_fastest``). Older reports had one sgemm measurement: both use it.
    The same rates of the repeated fit (``*_repeat``) are against the sgemm measured before
    the run that gave its best time."""
    sh = row["shape"]
    n, p, t = sh["n"], sh["p"], sh["t"]
    if "ours" in row and "error" not in row["ours"]:
        paired = row["ours"].get("sgemm_before_best", sgemm["gflops"])
        fastest = max(sgemm.get("gflops_max", sgemm["gflops"]), paired)
        flops = _ours_flops_of(row["ours"], n, p, t)
        total = sum(flops.values())
        rate = total / row["ours"]["seconds"] / 1e9
        # The same algorithm with one held-out product per alpha (no low-rank weights).
        info = row["ours"]["fit_info"]
        refit = info.get("refit", "eigh")
        inverse = info.get("inverse_refit_targets") or ()
        equivalent = sum(ours_flops(n, p, t, refit=refit, inverse_targets=inverse).values())
        equivalent /= row["ours"]["seconds"] * 1e9
        row["ours"].update(
            {
                "flops": flops,
                "gflops_per_s": rate,
                "gemm_fraction": rate / paired,
                "gemm_fraction_of_fastest": rate / fastest,
                "equivalent_gflops_per_s": equivalent,
                "equivalent_gemm_fraction": equivalent / paired,
                "extra_over_input": row["ours"]["extra_peak_mib"] / row["ours"]["input_mib"],
                # The fitted coefficients (p x t float32) are the result, not working memory.
                "output_mib": 4 * p * t / 2**20,
                "extra_excluding_output_mib": row["ours"]["extra_peak_mib"] - 4 * p * t / 2**20,
            }
        )
        repeat = row["ours"].get("seconds_repeat")
        if repeat:
            paired_repeat = row["ours"].get("sgemm_before_best_repeat", paired)
            rate_repeat = total / repeat / 1e9
            row["ours"].update(
                {
                    "gflops_per_s_repeat": rate_repeat,
                    "gemm_fraction_repeat": rate_repeat / paired_repeat,
                    "gemm_fraction_of_fastest_repeat": rate_repeat / max(fastest, paired_repeat),
                }
            )


def _grouped(method: str, flops: dict[str, float]) -> dict[str, float]:
    """Cost groups fitted from the runs: GEMM-like work (float64 counted twice) and the
    LAPACK decompositions, whose rate differs."""
    if method == "ours":
        return {"gemm": flops["gemm32"] + 2 * flops["gemm64"], "eigh": flops["eigh64"]}
    return {"gemm": flops["gemm32"], "svd": flops["svd32"]}


def _inverse_share(results: list[dict[str, Any]]) -> float:
    """Mean fraction of targets that ours refitted through the explicit inverse."""
    runs = [r for r in results if "ours" in r and "error" not in r["ours"]]
    shares = [
        sum(r["ours"].get("fit_info", {}).get("inverse_refit_targets") or ()) / r["shape"]["t"]
        for r in runs
    ]
    return sum(shares) / len(shares) if shares else 0.0


def _extrapolate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds for the NSD c-decoder from per-FLOP costs fitted to the measured runs. Ours is
    counted on the path the runs took (their mean products per fold, held-out operator and
    series-fold fractions): which path a fold takes depends on the data's spectrum."""
    out: dict[str, Any] = {"shape": dict(zip("npt", NSD_C, strict=True))}
    n, p, t = NSD_C
    for method in ("ours", "himalaya"):
        rows = []
        for r in results:
            if method not in r or "error" in r[method]:
                continue
            sh = r["shape"]
            if method == "ours":
                flops = _ours_flops_of(r[method], sh["n"], sh["p"], sh["t"])
            else:
                flops = himalaya_flops(sh["n"], sh["p"], sh["t"])
            rows.append((_grouped(method, flops), r[method]["seconds"]))
        if len(rows) < 2:
            continue
        keys = list(rows[0][0])
        costs = _fit_costs(rows, keys)
        if method == "ours":
            infos = [r["ours"].get("fit_info", {}) for r in results if "error" not in r["ours"]]

            def mean_of(key: str, default: float, infos: list = infos) -> float:
                values = [float(v) for info in infos for v in (info.get(key) or [default])]
                return sum(values) / len(values)

            target_flops = ours_flops(
                n,
                p,
                t,
                products=mean_of("products_per_fold", 7),
                held=mean_of("held_out_operators", 0),
                series=mean_of("series_folds", 0),
                # The refit as measured: the share of targets refitted through the inverse.
                inverse_targets=[t * _inverse_share(results)],
            )
        else:
            target_flops = himalaya_flops(n, p, t)
        target = _grouped(method, target_flops)
        out[method] = {
            "seconds": sum(costs[k] * target[k] for k in keys),
            "seconds_per_gflop": {k: v * 1e9 for k, v in costs.items()},
            "flops": target_flops,
        }
    if "ours" in out:
        out["ours"]["extra_memory_gib_model"] = ours_extra_bytes(n, p, t) / 2**30
        out["ours"]["input_gib"] = 4 * n * (p + t) / 2**30
    if "ours" in out and "himalaya" in out:
        out["speedup"] = out["himalaya"]["seconds"] / out["ours"]["seconds"]
    return out


def markdown(report: dict[str, Any]) -> str:
    sg = report["sgemm"]
    m = report["machine"]
    lines = [
        "# Ridge decoder solver benchmark",
        "",
        f"float32, {N_FOLDS}-fold CV, paper alphas {PAPER_ALPHAS}; {m['cpu']}, {m['threads']} "
        f"threads; float32 GEMM rate {sg['gflops']:.0f} GFLOP/s at the start (sgemm {sg['size']})"
        + (
            f", {min(sg['gflops_seen']):.0f}–{max(sg['gflops_seen']):.0f} over the run "
            "(measured again before each of ours' runs). "
            if "gflops_seen" in sg
            else ". "
        )
        + f"Load average before/after: {m['load_average_before'][0]:.1f}/"
        f"{m['load_average_after'][0]:.1f}.",
        "",
        "| n | p | t | ours s | himalaya s | sklearn s | speed-up vs himalaya | vs sklearn "
        "| same alphas | max rel. diff | products/fold | GFLOP/s (of sgemm before / fastest) "
        "| repeated fit: GFLOP/s (of sgemm before / fastest) "
        "| per-alpha-equivalent GFLOP/s (of sgemm) | extra MiB (ours/him/skl) | input MiB "
        "| ours' output MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def get(d: dict[str, Any], key: str, fmt: str) -> str:
        return format(d[key], fmt) if d.get(key) is not None else "–"

    def both(d: dict[str, Any], key: str, fmt: str, unit: str = "") -> str:
        """First fit in a fresh process / repeated fit (when measured)."""
        first = get(d, key, fmt) + (unit if key in d else "")
        if d.get(f"{key}_repeat") is None:
            return first
        return f"{first} / {get(d, f'{key}_repeat', fmt)}{unit}"

    for r in report["results"]:
        o = r.get("ours", {})
        h = r.get("himalaya", {})
        s = r.get("sklearn", {})
        sh = r["shape"]
        mem = "/".join(get(x, "extra_peak_mib", ".0f") for x in (o, h, s))
        info = o.get("fit_info", {})
        series = info.get("series_folds") or [False] * len(info.get("products_per_fold", []))
        prods = (
            ",".join(
                f"{v}{'s' if by_series else ''}"
                for v, by_series in zip(info.get("products_per_fold", []), series, strict=False)
            )
            or "–"
        )
        lines.append(
            f"| {sh['n']} | {sh['p']} | {sh['t']} | {both(o, 'seconds', '.2f')} | "
            f"{both(h, 'seconds', '.2f')} | {both(s, 'seconds', '.2f')} | "
            f"{both(h, 'speedup_of_ours', '.1f', '×')} | {both(s, 'speedup_of_ours', '.1f', '×')} | "
            f"{get(o, 'same_alpha_fraction_vs_himalaya', '.3f')} | "
            f"{get(o, 'max_rel_pred_diff_vs_himalaya', '.1e')} | {prods} | "
            f"{get(o, 'gflops_per_s', '.0f')} ({get(o, 'gemm_fraction', '.0%')} / "
            f"{get(o, 'gemm_fraction_of_fastest', '.0%')}) | "
            f"{get(o, 'gflops_per_s_repeat', '.0f')} ({get(o, 'gemm_fraction_repeat', '.0%')} / "
            f"{get(o, 'gemm_fraction_of_fastest_repeat', '.0%')}) | "
            f"{get(o, 'equivalent_gflops_per_s', '.0f')} "
            f"({get(o, 'equivalent_gemm_fraction', '.0%')}) | {mem} | {get(o, 'input_mib', '.0f')} "
            f"| {4 * sh['p'] * sh['t'] / 2**20:.0f} |"
        )
    ex = report.get("extrapolation_nsd_c", {})
    if "ours" in ex:
        lines += [
            "",
            f"Extrapolated full NSD c-decoder (n={NSD_C[0]}, p={NSD_C[1]}, t={NSD_C[2]}) on this "
            f"CPU: ours {ex['ours']['seconds'] / 60:.1f} min"
            + (f", himalaya {ex['himalaya']['seconds'] / 60:.1f} min" if "himalaya" in ex else "")
            + f"; ours' extra memory ≈ {ex['ours']['extra_memory_gib_model']:.1f} GiB for "
            f"{ex['ours']['input_gib']:.1f} GiB of inputs.",
        ]
    lines += [
        "",
        "Seconds and speed-ups: the first fit in a fresh process / the same fit repeated in "
        "that process (best over runs each). The first fit also pays for touching its "
        "working memory for the first time (slow on this virtual machine: see docs/ridge.md); the "
        "sgemm rate is measured like the repeated fit (best of three after a warm-up product). "
        "Same alphas / max rel. diff: ours against himalaya (held-out predictions). scikit-learn "
        "with `cv=5` picks one alpha for all targets. Products/fold: held-out matrix products "
        "per fold and target chunk (7 = one per alpha; fewer when the fold's ridge weights have "
        "a low numerical rank; 's': the fold was scored through the Neumann series of "
        "(G + alpha I)^-1, without an eigendecomposition). GFLOP/s counts the FLOPs done, as a "
        "fraction of the sgemm rate measured just before ours' best run and of the fastest "
        "sgemm of the whole run (the stricter); the per-alpha-equivalent rate "
        "counts those of one product per alpha. Extra MiB: peak RSS during the fit minus RSS "
        "with the inputs loaded; it includes the fitted coefficients (ours' output MiB: p × t "
        "float32), which are the result rather than working memory. Goals: ≥ 5× faster than "
        "himalaya, ≥ 70 % of sgemm, extra memory ≤ inputs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, seconds")
    parser.add_argument(
        "--out", type=Path, help=f"JSON output file (default {DEFAULT_OUT.name}, quick: _quick)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per method run")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of every method (the best time of each is kept)",
    )
    parser.add_argument(
        "--fits",
        type=int,
        default=2,
        help="fits per method run: the first in a fresh process (its memory is measured), "
        "the others repeat it in that process (the best of them is kept)",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        help="n,p,t triples instead of the preset shapes (e.g. 6000,1500,6400)",
    )
    parser.add_argument(
        "--render", type=Path, help="recompute the extrapolation and Markdown of a results JSON"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sgemm", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    if args.sgemm:
        print(json.dumps(measure_sgemm(args.sgemm)))
        return 0
    from nipype_brainrecon.io import atomic_write_text

    if args.render:
        report = json.loads(args.render.read_text())
        for row in report["results"]:
            _derive_ours(row, report["sgemm"])
        report["extrapolation_nsd_c"] = _extrapolate(report["results"])
        atomic_write_text(args.render, json.dumps(report, indent=2) + "\n")
        atomic_write_text(args.render.with_suffix(".md"), markdown(report))
        print(markdown(report))
        return 0
    if "ours" not in args.methods:
        parser.error("--methods must include 'ours'")
    if args.out is None:
        args.out = DEFAULT_OUT.with_name("ridge_quick.json") if args.quick else DEFAULT_OUT
    report = run(args)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)
    md = markdown(report)
    atomic_write_text(args.out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
