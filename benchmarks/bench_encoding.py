"""Benchmark: fitting voxel-wise encoding models, ours against himalaya's RidgeCV.

An encoding model is the decoder's solver with the roles swapped: stimulus features are the
inputs (standardised) and voxels the targets, one cross-validated penalty per voxel. Both methods
fit the same float32 data with 5 folds, the default grid of 10 alphas (1e-2 .. 1e7) and an
intercept:

* ours: :func:`nipype_brainrecon.encoding.fit_encoding_model` (numpy backend);
* himalaya: ``StandardScaler`` + ``himalaya.ridge.RidgeCV(alphas, cv=5, fit_intercept=True)``
  on its numpy backend (the reference implementation the paper's authors used).

Sizes (trials x features x voxels): the SD v1 image latent z (4 x 40 x 40 = 6,400 features,
more features than trials: the kernel form) and the demo model's z (4 x 8 x 8 = 256 features:
the feature form), 1,000 training trials and 4,000 voxels each. Reported: seconds, himalaya /
ours ratio, the share of voxels choosing the same alpha and the largest prediction difference
on 200 held-out stimuli relative to the predictions' spread.

    python -m benchmarks.bench_encoding [--out FILE]

Writes FILE (default ``benchmarks/results/encoding.json``) and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import cpu_model as _cpu_model
from benchmarks._common import package_versions as _versions

SHAPES = {
    "z, SD v1 (4x40x40)": (1000, 6400, 4000),
    "z, demo model (4x8x8)": (1000, 256, 4000),
}
N_TEST = 200
N_FOLDS = 5
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "encoding.json"


def make_data(n: int, p: int, t: int, seed: int = 0):
    """Features with offsets and scales; voxels = features @ weights + noise (varied SNR)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + N_TEST, p), dtype=np.float32)
    weights = rng.standard_normal((p, t), dtype=np.float32)
    weights *= (np.logspace(-2, 0, t, dtype=np.float32) / np.sqrt(p))[None, :]
    Y = X @ weights + rng.standard_normal((n + N_TEST, t), dtype=np.float32)
    X *= rng.uniform(0.5, 2.0, p).astype(np.float32)
    X += rng.uniform(-1.0, 1.0, p).astype(np.float32)
    return X[:n], Y[:n], np.ascontiguousarray(X[n:])


def fit_ours(X, Y, X_test, alphas):
    from nipype_brainrecon.encoding import fit_encoding_model

    start = time.perf_counter()
    model = fit_encoding_model(X, Y, alphas=alphas, n_folds=N_FOLDS, backend="numpy")
    seconds = time.perf_counter() - start
    return seconds, model.predict(X_test), np.asarray(model.alphas), model.fit_info


def fit_himalaya(X, Y, X_test, alphas):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from sklearn.preprocessing import StandardScaler

    set_backend("numpy", on_error="raise")
    start = time.perf_counter()
    scaler = StandardScaler()
    Xs = scaler.fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RidgeCV(alphas=alphas, cv=N_FOLDS, fit_intercept=True).fit(Xs, Y)
    seconds = time.perf_counter() - start
    pred = np.asarray(model.predict(scaler.transform(X_test)), np.float32)
    return seconds, pred, np.asarray(model.best_alphas_, np.float64), {}


def run() -> dict[str, Any]:
    from nipype_brainrecon.ridge import DEFAULT_ALPHAS

    alphas = DEFAULT_ALPHAS
    rows = []
    warm = np.ones((512, 512), np.float32)
    warm @ warm  # BLAS thread start-up outside the timings
    for label, (n, p, t) in SHAPES.items():
        X, Y, X_test = make_data(n, p, t)
        ours = fit_ours(X, Y, X_test, alphas)
        ref = fit_himalaya(X, Y, X_test, alphas)
        spread = float(np.std(ref[1])) or 1.0
        rows.append(
            {
                "label": label,
                "n_trials": n,
                "n_features": p,
                "n_voxels": t,
                "ours_s": round(ours[0], 3),
                "himalaya_s": round(ref[0], 3),
                "speedup_vs_himalaya": round(ref[0] / ours[0], 2),
                "same_alpha_fraction": float(np.mean(np.isclose(ours[2], ref[2]))),
                "max_prediction_diff_rel": float(np.max(np.abs(ours[1] - ref[1])) / spread),
                "ours_form": ours[3].get("form"),
            }
        )
        print(
            f"{label}: ours {ours[0]:.2f} s, himalaya {ref[0]:.2f} s "
            f"(x{ref[0] / ours[0]:.1f}); same alpha {rows[-1]['same_alpha_fraction']:.3f}"
        )
    return {
        "benchmark": "encoding-model fitting (features -> voxels, CV alpha per voxel)",
        "settings": {
            "n_folds": N_FOLDS,
            "alphas": [float(a) for a in alphas],
            "fit_intercept": True,
            "dtype": "float32",
            "n_test": N_TEST,
        },
        "machine": {
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "python": platform.python_version(),
        },
        "versions": _versions(),
        "results": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Encoding-model fitting: ours vs himalaya RidgeCV",
        "",
        f"{report['benchmark']}. {report['settings']['n_folds']} folds, "
        f"{len(report['settings']['alphas'])} alphas (1e-2 .. 1e7), intercept, float32, numpy "
        f"backends, one process. Machine: {m['cpu']}, {m['cpus']} CPUs "
        f"(load average at the end {m['load_average'][0]:.1f}: shared, timings are noisy).",
        "",
        "| feature space | trials | features | voxels | ours (s) | himalaya (s) | himalaya / ours "
        "| same alpha | max pred. diff (rel.) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['label']} | {r['n_trials']} | {r['n_features']} | {r['n_voxels']} | "
            f"{r['ours_s']:.2f} | {r['himalaya_s']:.2f} | {r['speedup_vs_himalaya']:.1f} | "
            f"{r['same_alpha_fraction']:.3f} | {r['max_prediction_diff_rel']:.1e} |"
        )
    lines += ["", "Reproduce: `python -m benchmarks.bench_encoding`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from nipype_brainrecon.io import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    args = parser.parse_args(argv)
    report = run()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), markdown(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
