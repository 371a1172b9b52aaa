"""GPU benchmark: the ridge decoder solver (torch backend) at NSD scale, beside himalaya.

Two shapes of one NSD subject (the paper's setting: standardised voxels, no intercept, the
paper's 7 alphas, 5 folds, float32):

* z decoder: 24,980 trials x 5,917 early-visual voxels -> 6,400 targets (4 x 40 x 40);
* c decoder: 24,980 trials x 7,604 ventral voxels -> 59,136 targets (77 x 768).

Ours is :func:`nipype_brainrecon.ridge.fit_ridge_cv` with ``backend="torch", device="cuda"``;
the reference is ``himalaya.ridge.RidgeCV`` on himalaya's ``torch_cuda`` backend, timed on the
same data in the same run (the z decoder always; the c decoder unless ``--skip-himalaya-c``),
with the chosen alphas and held-out predictions compared. Synthetic data as in
``benchmarks.bench_ridge`` (targets = voxels @ weights + noise at varied SNR).

    python -m benchmarks.gpu_ridge [--scale 1.0] [--out FILE]
    python -m benchmarks.gpu_ridge --device cpu --scale 0.02   # checks the script

Writes FILE (default ``benchmarks/results/gpu_ridge.json``) and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_nsd_scale import N_FOLDS, PAPER_ALPHAS, SHAPES

RESULTS = Path(__file__).resolve().parent / "results"
N_TEST = 500


def make_data(n: int, p: int, t: int, device: str, seed: int = 0):
    """Synthetic voxels and targets, generated on ``device``, returned as host float32 arrays."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    X = torch.randn(n + N_TEST, p, generator=g, device=device)
    W = torch.randn(p, t, generator=g, device=device)
    W *= (torch.logspace(-2, 0, t, device=device) / p**0.5)[None, :]
    Y = X @ W
    del W
    Y += torch.randn(Y.shape, generator=g, device=device)
    X *= torch.rand(p, generator=g, device=device) * 1.5 + 0.5
    X += torch.rand(p, generator=g, device=device) * 2 - 1
    X, Y = X.cpu().numpy(), Y.cpu().numpy()
    return X[:n], np.ascontiguousarray(Y[:n]), np.ascontiguousarray(X[n:])


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return None


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def fit_ours(X, Y, X_test, device: str) -> dict[str, Any]:
    from nipype_brainrecon.ridge import fit_ridge_cv

    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dec = fit_ridge_cv(
            X, Y, alphas=np.asarray(PAPER_ALPHAS), n_folds=N_FOLDS, fit_intercept=False,
            backend="torch", device=device,
        )  # fmt: skip
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_gpu_gib": _peak_gib(device),
        "fit_info": dec.fit_info,
        "alphas": np.asarray(dec.alphas, np.float64),
        "pred": np.asarray(dec.predict(X_test), np.float32),
    }


def fit_himalaya(X, Y, X_test, device: str) -> dict[str, Any]:
    import torch
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    backend = set_backend("torch_cuda" if device.startswith("cuda") else "torch")
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    # The paper's pipeline: StandardScaler (ddof 0), then RidgeCV without intercept.
    Xt = torch.as_tensor(X, device=device)
    mean, std = Xt.mean(0), Xt.std(0, unbiased=False)
    Xs = (Xt - mean) / std
    model = RidgeCV(alphas=np.asarray(PAPER_ALPHAS), cv=N_FOLDS, fit_intercept=False)
    model.fit(Xs, torch.as_tensor(Y, device=device))
    _sync(device)
    seconds = time.perf_counter() - start
    pred = model.predict((torch.as_tensor(X_test, device=device) - mean) / std)
    out = {
        "seconds": seconds,
        "peak_gpu_gib": _peak_gib(device),
        "alphas": np.asarray(backend.to_numpy(model.best_alphas_), np.float64),
        "pred": np.asarray(backend.to_numpy(pred), np.float32),
    }
    del model, Xs, Xt
    return out


def compare(ours: dict[str, Any], ref: dict[str, Any]) -> dict[str, float]:
    scale = np.abs(ref["pred"]).max()
    return {
        "same_alpha_fraction": float(np.isclose(ours["alphas"], ref["alphas"]).mean()),
        "max_rel_pred_diff": float(np.abs(ours["pred"] - ref["pred"]).max() / scale),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    rows = []
    for name, (n, p, t) in SHAPES.items():
        n, p, t = (max(N_FOLDS * 4, round(v * args.scale)) for v in (n, p, t))
        start = time.perf_counter()
        X, Y, X_test = make_data(n, p, t, args.device)
        row: dict[str, Any] = {"decoder": name, "n": n, "p": p, "t": t}
        row["data_s"] = time.perf_counter() - start
        print(f"[{name}] n={n} p={p} t={t}: data in {row['data_s']:.1f} s", flush=True)
        fit_ours(X[:200], Y[:200, :64], X_test, args.device)  # warm-up (CUDA context, kernels)
        ours = fit_ours(X, Y, X_test, args.device)
        row["ours_s"] = ours["seconds"]
        row["ours_peak_gpu_gib"] = ours["peak_gpu_gib"]
        row["ours_fit_info"] = {
            k: v
            for k, v in ours["fit_info"].items()
            if np.isscalar(v) or (isinstance(v, list) and all(np.isscalar(x) for x in v))
        }
        print(f"[{name}] ours: {ours['seconds']:.1f} s", flush=True)
        if name == "z" or not args.skip_himalaya_c:
            ref = fit_himalaya(X, Y, X_test, args.device)
            row["himalaya_s"] = ref["seconds"]
            row["himalaya_peak_gpu_gib"] = ref["peak_gpu_gib"]
            row["speedup_vs_himalaya"] = ref["seconds"] / ours["seconds"]
            row.update(compare(ours, ref))
            print(
                f"[{name}] himalaya: {ref['seconds']:.1f} s; speed-up {row['speedup_vs_himalaya']:.2f}x; "
                f"same alphas {row['same_alpha_fraction']:.4f}, max rel pred diff "
                f"{row['max_rel_pred_diff']:.2e}",
                flush=True,
            )
            del ref
        del ours, X, Y, X_test
        rows.append(row)
    import himalaya

    return {
        "benchmark": "gpu_ridge",
        "scale": args.scale,
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "himalaya": himalaya.__version__,
        "python": platform.python_version(),
        "alphas": list(PAPER_ALPHAS),
        "folds": N_FOLDS,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Ridge decoders at NSD scale on a GPU",
        "",
        f"Device: {result['device']}; torch {result['torch']} (CUDA {result['cuda']}), himalaya "
        f"{result['himalaya']}; float32, the paper's 7 alphas, {result['folds']} folds, scale "
        f"{result['scale']}.",
        "",
        "| decoder | n | p | t | ours s | himalaya s | speed-up | same alphas | max rel. pred diff "
        "| ours peak GPU GiB | himalaya peak GPU GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(row: dict[str, Any], key: str, spec: str) -> str:
        value = row.get(key)
        return "n/a" if value is None else format(value, spec)

    for r in result["rows"]:
        lines.append(
            f"| {r['decoder']} | {r['n']} | {r['p']} | {r['t']} | {r['ours_s']:.1f} | "
            f"{fmt(r, 'himalaya_s', '.1f')} | {fmt(r, 'speedup_vs_himalaya', '.2f')} | "
            f"{fmt(r, 'same_alpha_fraction', '.4f')} | {fmt(r, 'max_rel_pred_diff', '.1e')} | "
            f"{fmt(r, 'ours_peak_gpu_gib', '.1f')} | {fmt(r, 'himalaya_peak_gpu_gib', '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every dimension")
    parser.add_argument("--skip-himalaya-c", action="store_true", help="himalaya on z only")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_ridge: no CUDA GPU found; use --device cpu to check the script", file=sys.stderr)
        return 69
    result = run(args)
    out = args.out or RESULTS / ("gpu_ridge.json" if args.scale == 1.0 else "gpu_ridge_small.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
