"""Run every benchmark and write ``docs/benchmarks.md``: ``python -m benchmarks``.

Each benchmark module runs in its own process and writes its JSON (and a Markdown table) to
``benchmarks/results/``; this entry point then gathers those files into ``docs/benchmarks.md``:
every figure beside its reference implementation measured in the same run, the ratio, peak
memory, and the machine it ran on.

    python -m benchmarks                      # all default benchmarks, then the report
    python -m benchmarks --only ridge betas   # a subset (names below), then the report
    python -m benchmarks --quick              # the benchmarks' small settings (minutes)
    python -m benchmarks --report-only        # only regenerate docs/benchmarks.md
    python -m benchmarks --list

Benchmarks (default set marked *): ridge* (decoder solver vs himalaya / scikit-learn), betas*
(single-trial GLM vs nilearn), identification* (vectorised vs the paper's loop), reconstruction*
(batched vs batch 1), encoding* (when ``benchmarks/bench_encoding.py`` exists), demo* (end-to-end
``brainrecon-demo`` time, goal <= 5 min on 2 cores), nsd_scale (NSD-size decoders; long, run
it by name), nsd_convert (``brainrecon-nsd`` on real-size synthetic NSD sessions vs whole-session
loading; writes GBs, run it by name), gpu_reconstruction (ours vs diffusers' img2img pipeline),
gpu_end_to_end (an NSD-size
subject, betas to scores) and gpu_ridge (default only when a CUDA GPU is visible); seeds,
demo_identification, null_calibration and unique_variance (issue 22's statistical checks; run
them by name).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import cpu_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
REPORT = ROOT / "docs" / "benchmarks.md"
DEMO_GOAL_S = 300.0


@dataclass
class Bench:
    """One benchmark: how to run it and which result files it writes."""

    name: str
    module: str | None
    what: str
    results: list[str]
    quick_results: list[str] = field(default_factory=list)
    quick_args: list[str] = field(default_factory=lambda: ["--quick"])
    args: list[str] = field(default_factory=list)
    default: Callable[[], bool] = lambda: True
    #: Report only the first result file found (the others are older names of the same run).
    first_only: bool = False


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - any import problem means no GPU benchmark
        return False


def _exists(module: str) -> Callable[[], bool]:
    return lambda: (HERE / f"{module}.py").exists()


BENCHMARKS = [
    Bench(
        "ridge",
        "bench_ridge",
        "ridge decoder solver vs himalaya RidgeCV (and scikit-learn)",
        ["ridge.json"],
        ["ridge_quick.json"],
    ),
    Bench(
        "betas",
        "bench_betas",
        "single-trial betas (LSS) vs nilearn FirstLevelModel per trial",
        ["betas.json"],
        ["betas_quick.json"],
        quick_args=["--quick", "--out", str(RESULTS / "betas_quick.json")],
    ),
    Bench(
        "identification",
        "bench_identification",
        "two-way identification, vectorised vs the paper's loop",
        ["identification.json"],
        ["identification_quick.json"],
    ),
    Bench(
        "reconstruction",
        "bench_reconstruction",
        "diffusion reconstruction on CPU, batched vs batch 1",
        ["reconstruction.json"],
        ["reconstruction_quick.json"],
    ),
    Bench(
        "encoding",
        "bench_encoding",
        "encoding models",
        ["encoding.json"],
        ["encoding_quick.json"],
        default=_exists("bench_encoding"),
    ),
    Bench(
        "demo",
        None,
        "end-to-end `brainrecon-demo` (2 participants, both levels)",
        ["demo.json"],
        ["demo.json"],
    ),
    Bench(
        "nsd_scale",
        "bench_nsd_scale",
        "NSD-scale z and c decoders (time, peak RSS)",
        ["nsd_scale.json", "nsd_scale_torch_cuda.json"],
        ["nsd_scale_0.05.json"],
        quick_args=["--scale", "0.05"],
        default=lambda: False,
    ),
    Bench(
        "nsd_convert",
        "bench_nsd_convert",
        "NSD conversion at the func1pt8mm size (s per session, peak RSS vs one session's betas)",
        ["nsd_convert.json"],
        ["nsd_convert_tiny.json"],
        quick_args=["--tiny", "--zscore"],
        args=["--zscore"],
        default=lambda: False,
    ),
    Bench(
        "gpu_reconstruction",
        "gpu_reconstruction",
        "diffusion reconstruction on a GPU, SD v1 shapes",
        ["gpu_reconstruction.json"],
        ["gpu_reconstruction_tiny.json"],
        quick_args=["--tiny"],
        default=_cuda,
    ),
    Bench(
        "gpu_end_to_end",
        "gpu_end_to_end",
        "NSD-size subject end to end on a GPU (betas -> decoders -> images -> scores)",
        ["gpu_end_to_end.json"],
        ["gpu_end_to_end_tiny.json"],
        quick_args=["--tiny"],
        default=lambda: _cuda() and (HERE / "gpu_end_to_end.py").exists(),
    ),
    Bench(
        "gpu_ridge",
        "gpu_ridge",
        "ridge solver on a GPU (torch backend)",
        ["gpu_ridge.json", "gpu_ridge_run1.json"],
        ["gpu_ridge_small.json"],
        quick_args=["--scale", "0.05"],
        first_only=True,
        default=lambda: _cuda() and (HERE / "gpu_ridge.py").exists(),
    ),
    Bench(
        "seeds",
        "bench_seeds",
        "decoded z/c identification and the dissociation over pre-registered seeds, beside "
        "permutation nulls (oracle, harder = the simulator's default, and null simulations; "
        "issue 22)",
        ["seeds.json", "seeds_harder_null.json"],
        ["seeds.json"],
        default=lambda: False,
    ),
    Bench(
        "demo_identification",
        "bench_demo_identification",
        "demo model: reconstructions from the true z and c identified, seeds 1-5 x 100 scenes",
        ["demo_identification.json"],
        ["demo_identification.json"],
        default=lambda: False,
    ),
    Bench(
        "null_calibration",
        "bench_null_calibration",
        "evaluate()'s identification p-values on null reconstructions (fixed bank, 200 "
        "independent sets of seen images): share at p <= 0.05 and Holm per set",
        ["null_calibration.json"],
        ["null_calibration.json"],
        quick_args=["--sets", "5", "--out", str(RESULTS / "null_calibration_quick.json")],
        default=lambda: False,
    ),
    Bench(
        "unique_variance",
        "bench_unique_variance",
        "planted unique-variance fractions recovered: banded vs single alpha vs himalaya",
        ["unique_variance.json"],
        ["unique_variance.json"],
        default=lambda: False,
    ),
]
BY_NAME = {b.name: b for b in BENCHMARKS}


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _run_process(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; wall time, exit code and peak RSS of its largest process (wait4 rusage)."""
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
    # ru_maxrss of a reaped child covers it and its own reaped children (the largest one).
    return {"seconds": seconds, "exit_code": code, "peak_rss_gib": usage.ru_maxrss / 2**20}


def run_demo(env: dict[str, str], log: Path, nprocs: int | None) -> dict[str, Any]:
    """Time ``brainrecon-demo`` in a fresh folder (the README's `make demo`, without install)."""
    exe = shutil.which("brainrecon-demo") or str(Path(sys.executable).parent / "brainrecon-demo")
    with tempfile.TemporaryDirectory(prefix="brainrecon-demo-bench-") as tmp:
        cmd = [exe, str(Path(tmp) / "demo")]
        if nprocs:
            cmd += ["--nprocs", str(nprocs)]
        result = _run_process(cmd, env, log)
    result.update(
        benchmark="end-to-end demo",
        command="brainrecon-demo OUT" + (f" --nprocs {nprocs}" if nprocs else ""),
        goal_s=DEMO_GOAL_S,
        meets_goal=result["exit_code"] == 0 and result["seconds"] <= DEMO_GOAL_S,
        machine=machine(),
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    (RESULTS / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_benchmarks(names: list[str], quick: bool) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "runs": {},
    }
    for name in names:
        bench = BY_NAME[name]
        log = logs / f"{name}.log"
        print(f"[benchmarks] {name}: {bench.what} (log {log.relative_to(ROOT)})", flush=True)
        if bench.module is None:
            result = run_demo(env, log, nprocs=None)
        else:
            cmd = [sys.executable, "-m", f"benchmarks.{bench.module}"]
            cmd += bench.quick_args if quick else bench.args
            result = _run_process(cmd, env, log)
        status = "ok" if result["exit_code"] == 0 else f"FAILED (exit {result['exit_code']})"
        print(f"[benchmarks] {name}: {status} in {result['seconds']:.0f} s", flush=True)
        record["runs"][name] = {k: result[k] for k in ("seconds", "exit_code", "peak_rss_gib")}
    (RESULTS / "last_run.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1)}


def _load(name: str) -> tuple[dict[str, Any], str] | None:
    path = RESULTS / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data, _result_date(path, data)


def _result_date(path: Path, data: Any) -> str:
    """When a result was measured: its own ``date`` field, else the commit that last changed
    the file (a clone's files all carry the checkout time), else the file's modification time."""
    recorded = str(data.get("date", "")) if isinstance(data, dict) else ""
    if len(recorded) >= 10 and recorded[4] == "-" and recorded[7] == "-":
        return recorded[:10]
    try:
        committed = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", path.name],
            cwd=path.parent, capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        committed = ""
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", path.name], cwd=path.parent,
        capture_output=True, text=True, timeout=30,
    ).stdout.strip() if committed else "?"  # fmt: skip
    if committed and not dirty:
        return committed
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d")


def _f(value: Any, spec: str = ".2f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{format(value, spec)}{unit}"


def _machine_text(m: Any) -> str:
    if isinstance(m, str):
        return m
    if not isinstance(m, dict):
        return "–"
    cpu = m.get("cpu") or m.get("gpu") or "?"
    cores = m.get("cores") or m.get("cores_visible")
    threads = m.get("threads")
    text = cpu + (f", {cores} cores" if cores else "")
    if threads:
        text += f", {threads} thread(s)"
    if m.get("gpu"):
        text += f"; GPU {m['gpu']}"
    load = m.get("load_average_before")
    if load:
        text += f"; load {load[0]:.1f}"
    return text


Row = dict[str, str]


def _rows_ridge(d: dict[str, Any]) -> list[Row]:
    rows = []
    mtext = _machine_text(d.get("machine"))
    for r in d.get("results", []):
        s = r["shape"]
        ours, him = r.get("ours", {}), r.get("himalaya", {})
        skl = r.get("sklearn", {})
        ref_name, ref = ("himalaya RidgeCV", him) if "seconds" in him else ("sklearn RidgeCV", skl)
        rows.append(
            {
                "case": f"n={s['n']:,} p={s['p']:,} t={s['t']:,}",
                "ours": _f(ours.get("seconds"), ".1f", " s"),
                "reference": f"{ref_name}: {_f(ref.get('seconds'), '.1f', ' s')}",
                "ratio": _speed(_ratio(ref.get("seconds"), ours.get("seconds"))),
                "memory": f"extra peak {_f(ours.get('extra_peak_mib'), '.0f')} MiB vs "
                f"{_f(ref.get('extra_peak_mib'), '.0f')} MiB",
                "machine": mtext,
            }
        )
    ext = d.get("extrapolation_nsd_c")
    if ext:
        rows.append(
            {
                "case": "NSD c decoder, extrapolated",
                "ours": _f(ext["ours"]["seconds"] / 60, ".0f", " min"),
                "reference": f"himalaya: {_f(ext['himalaya']['seconds'] / 60, '.0f', ' min')}",
                "ratio": _speed(ext.get("speedup")),
                "memory": f"model: extra {_f(ext['ours'].get('extra_memory_gib_model'), '.1f')} "
                "GiB",
                "machine": mtext,
            }
        )
    return rows


def _speed(ratio: Any) -> str:
    """A reference/ours time ratio as "N× faster" (or "N× slower" below 1).

    >>> _speed(4.8), _speed(0.4), _speed(None)
    ('4.8× faster', '2.5× slower', '–')
    """
    if ratio is None:
        return "–"
    ratio = float(ratio)
    if ratio >= 1:
        return f"{ratio:.{0 if ratio >= 20 else 1}f}× faster"
    return f"{1 / ratio:.1f}× slower"


def _ratio(ref: Any, ours: Any) -> float | None:
    try:
        return float(ref) / float(ours)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _rows_betas(d: dict[str, Any]) -> list[Row]:
    mtext = _machine_text(d.get("machine"))
    if d.get("threads"):
        mtext += f", {d['threads']} thread(s)"
    cfg = d.get("config", {})
    return [
        {
            "case": f"{r['noise_model']}, {cfg.get('n_vols')} volumes, {cfg.get('n_trials')} "
            f"trials, {'×'.join(map(str, cfg.get('shape', [])))} voxels",
            "ours": _f(r.get("ours_s"), ".3f", " s"),
            "reference": f"nilearn FirstLevelModel per trial: {_f(r.get('nilearn_s'), '.2f', ' s')}",
            "ratio": _speed(r.get("speedup")),
            "memory": f"peak {_f(r.get('ours_peak_mib'), '.0f')} MiB vs "
            f"{_f(r.get('nilearn_peak_mib'), '.0f')} MiB (tracemalloc)",
            "machine": mtext,
        }
        for r in d.get("results", [])
    ]


def _rows_identification(d: dict[str, Any]) -> list[Row]:
    mtext = _machine_text(d.get("machine"))
    res = d.get("results", {})
    rows = []
    small, nsd = res.get("small"), res.get("nsd")
    if small:
        rows.append(
            {
                "case": f"N={small['n']} images × 5 samples, 2,048 features",
                "ours": _f(small.get("vectorised_takagi_s"), ".3f", " s"),
                "reference": f"paper's loop: {_f(small.get('loop_s'), '.2f', ' s')}",
                "ratio": _speed(small.get("speedup")),
                "memory": "–",
                "machine": mtext,
            }
        )
    if nsd:
        loop = nsd.get("loop_measured_s") or nsd.get("loop_extrapolated_from_subset_s")
        how = "measured" if nsd.get("loop_measured_s") else "extrapolated"
        rows.append(
            {
                "case": f"N={nsd['n']} (NSD test set)",
                "ours": _f(nsd.get("vectorised_takagi_s"), ".2f", " s"),
                "reference": f"paper's loop ({how}): {_f(loop, '.0f', ' s')}",
                "ratio": _speed(nsd.get("speedup")),
                "memory": "–",
                "machine": mtext,
            }
        )
    return rows


def _rows_reconstruction(d: dict[str, Any]) -> list[Row]:
    if d.get("device"):  # the GPU benchmark
        mtext = f"GPU {d['device']}, {d.get('dtype', '')}, torch {d.get('torch', '?')}"
    else:
        mtext = f"{d.get('cpu', '?')}, {d.get('threads', '?')} thread(s), torch {d.get('torch')}"
    rows = []
    key = "samples_per_s" if any("samples_per_s" in r for r in d.get("results", [])) else None
    key = key or "images_per_s"
    unit = " samples/s" if key == "samples_per_s" else " images/s"
    if d.get("diffusers_compared"):
        return _rows_vs_diffusers(d, mtext)
    base = next((r for r in d.get("results", []) if r.get("batch_size") == 1), None)
    for r in d.get("results", []):
        if r.get("batch_size") == 1:
            continue
        rows.append(
            {
                "case": f"batch {r['batch_size']} ({d.get('model', 'model')})",
                "ours": _f(r.get(key), ".2f", unit),
                "reference": "batch 1: " + (_f(base.get(key), ".2f", unit) if base else "–"),
                "ratio": _f(r.get("speedup_vs_batch_1"), ".2f", "×"),
                "memory": _f(r.get("peak_gpu_gib") or r.get("peak_rss_gib"), ".2f", " GiB"),
                "machine": mtext,
            }
        )
    return rows


def _rows_vs_diffusers(d: dict[str, Any], mtext: str) -> list[Row]:
    """gpu_reconstruction with diffusers' StableDiffusionImg2ImgPipeline beside ours."""
    rows = []
    for r in d.get("results", []):
        ref, diff = r.get("diffusers", {}), r.get("diff_vs_diffusers", {})
        mem_ours = r.get("peak_gpu_gib", r.get("peak_rss_gib"))
        mem_ref = ref.get("peak_gpu_gib", ref.get("peak_rss_gib"))
        rows.append(
            {
                "case": f"batch {r['batch_size']}, ours vs diffusers img2img "
                f"({d.get('model', 'model')}); max pixel diff on the same inputs "
                f"{diff.get('max_abs_pixel_diff', '–')} levels",
                "ours": _f(r.get("images_per_s"), ".2f", " images/s"),
                "reference": "diffusers StableDiffusionImg2ImgPipeline: "
                + _f(ref.get("images_per_s"), ".2f", " images/s"),
                "ratio": _speed(r.get("speedup_vs_diffusers")),
                "memory": f"peak {_f(mem_ours, '.2f')} vs {_f(mem_ref, '.2f')} GiB",
                "machine": mtext,
            }
        )
    return rows


def _rows_gpu_end_to_end(d: dict[str, Any]) -> list[Row]:
    device = str(d.get("device", "?"))
    device = device if device.startswith("cpu") else f"GPU {device}"
    mtext = f"{device}, {d.get('dtype', '')}, torch {d.get('torch', '?')}"
    s, rec = d.get("shapes", {}), d.get("reconstruction", {})
    rows = []
    for r in d.get("stages", []):
        mem = f"RSS {_f(r.get('peak_rss_gib'), '.2f')} GiB"
        if r.get("peak_gpu_gib") is not None:
            mem += f", GPU {_f(r.get('peak_gpu_gib'), '.2f')} GiB"
        rows.append(
            {
                "case": f"{r['stage']} ({s.get('n_train', '?'):,} trials, {s.get('n_test', '?')} "
                "test images)",
                "ours": _f(r.get("seconds"), ".1f", " s"),
                "reference": "–",
                "ratio": "–",
                "memory": mem,
                "machine": mtext,
            }
        )
    how = "measured" if rec.get("full_test_set_measured") else "extrapolated"
    rows.append(
        {
            "case": f"whole subject, {rec.get('full_test_set_samples', '?')} samples ({how})",
            "ours": _f(d.get("total_seconds_full_test_set"), ".0f", " s"),
            "reference": "–",
            "ratio": "–",
            "memory": "–",
            "machine": mtext,
        }
    )
    return rows


def _gpu_vs_diffusers_section() -> list[str]:
    """The GPU reconstruction section: what the scripts do, how to run them, their status."""
    lines = [
        "",
        "## GPU reconstruction vs diffusers' pipeline",
        "",
        "`benchmarks/gpu_reconstruction.py` times our `reconstruct` against diffusers' own "
        "`StableDiffusionImg2ImgPipeline` built from the same U-Net, VAE and DDIM scheduler "
        "config (SD v1 configuration, random weights; strength 0.8, 50 steps, guidance 5, the "
        "same dtype; on CUDA float16 with SDPA attention and channels-last weights), at batch "
        "1, 4, 8, 16 and 32, in one process: images/s, peak GPU memory (peak RSS on CPU) and "
        "the largest pixel difference between the two given the same init latents, embeddings "
        "and noise (diffusers draws the VAE posterior sample and the img2img noise from one "
        "generator, so the difference is measured with our init latents passed as `image` and "
        "generators seeded with our noise seeds; 0 on CPU in float32). It also compares each "
        "image between batch sizes (at most one level on a few values: kernels block batches "
        "differently; bit-identical at a fixed batch size). `benchmarks/gpu_end_to_end.py` "
        "runs an NSD-size synthetic subject (24,980 trials × 5,917 early / 7,604 ventral "
        "voxels, 982 test images × 5 samples) from betas through the decoders (torch backend) "
        "to reconstructions and scores, with time and peak memory per stage. Both check "
        "themselves on CPU with `--device cpu --tiny` (`tests/benchmarks/test_gpu_scripts.py`).",
        "",
        "On a machine with a CUDA GPU:",
        "",
        "```bash",
        "python -m benchmarks.gpu_reconstruction && python -m benchmarks.gpu_end_to_end "
        "&& python -m benchmarks --report-only",
        "```",
        "",
    ]
    rec, e2e = _load("gpu_reconstruction.json"), _load("gpu_end_to_end.json")
    if rec and rec[0].get("diffusers_compared"):
        lines.append(
            f"- Ours vs diffusers: measured on {rec[0].get('device')} ({rec[1]}); rows above, "
            "table in `benchmarks/results/gpu_reconstruction.md`."
        )
    else:
        lines.append(
            "- Ours vs diffusers on a GPU: **pending** (not yet run on a GPU; the "
            "gpu_reconstruction rows above are the earlier batch-size benchmark without "
            "diffusers)."
        )
    if e2e:
        lines.append(
            f"- End to end: measured on {e2e[0].get('device')} ({e2e[1]}); table in "
            "`benchmarks/results/gpu_end_to_end.md`."
        )
    else:
        lines.append("- End to end on a GPU: **pending** (not yet run on a GPU).")
    return lines


def _rows_nsd(d: dict[str, Any]) -> list[Row]:
    mtext = _machine_text(d.get("machine"))
    rows = []
    for r in d.get("results", []):
        s = r["shape"]
        ours, ref = r.get("ours", {}), r.get("himalaya", {})
        if "skipped" in ref:
            reference = f"himalaya RidgeCV: not run ({ref['skipped']})"
            mem_ref = f"~{ref['estimated_peak_gib']:.0f} GiB est."
        else:
            reference = f"himalaya RidgeCV: {_f(ref.get('seconds'), '.0f', ' s')}"
            mem_ref = _f(ref.get("peak_rss_gib"), ".2f", " GiB")
        extra = f", GPU peak {ours['gpu_peak_gib']:.1f} GiB" if ours.get("gpu_peak_gib") else ""
        rows.append(
            {
                "case": f"{r['target']} decoder {s['n']:,}×{s['p']:,}→{s['t']:,}"
                f" ({d.get('backend')}, {d.get('device')}, scale {d.get('scale')})",
                "ours": ours.get("error") or _f(ours.get("seconds"), ".0f", " s"),
                "reference": reference,
                "ratio": _speed(r.get("speedup_vs_himalaya")),
                "memory": f"peak RSS {_f(ours.get('peak_rss_gib'), '.2f', ' GiB')}{extra} vs "
                f"{mem_ref}",
                "machine": mtext,
            }
        )
    return rows


def _rows_nsd_convert(d: dict[str, Any]) -> list[Row]:
    """brainrecon-nsd vs whole-session loading, one row per reference; the memory bound."""
    cfg, bound, ours = d.get("config", {}), d.get("bound", {}), d.get("ours", {})
    grid = "×".join(map(str, cfg.get("grid", [])))
    case = (
        f"brainrecon-nsd, {cfg.get('sessions')} sessions × {sum(cfg.get('run_lengths', []))} "
        f"trials, {grid} int16 (synthetic)"
    )
    limit = bound.get("session_int16_bytes")
    met = (d.get("checks") or {}).get("ours_below_one_session_int16")
    verdict = {True: "met", False: "NOT met"}.get(met, "–")
    key = "mean_cpu_seconds_per_session"
    key = key if key in ours else "mean_seconds_per_session"
    what = " (CPU time)" if key.endswith("cpu_seconds_per_session") else ""
    refs = d.get("reference") or {"–": {}}
    rows = []
    for how, ref in refs.items():
        same = ref.get("data_identical_to_ours")
        rows.append(
            {
                "case": case
                + (f"; same data as the reference: {same}" if same is not None else ""),
                "ours": ours.get("error") or _per_session(ours),
                "reference": f"whole session loaded ({how}) + nibabel.save: "
                + (ref.get("error") or _per_session(ref)),
                "ratio": _speed(_ratio(ref.get(key), ours.get(key))) + what,
                "memory": f"peak RSS {_f(_gb(ours.get('peak_rss_bytes')), '.2f', ' GB')} vs "
                f"{_f(_gb(ref.get('peak_rss_bytes')), '.2f', ' GB')} ("
                f"{_f(_ratio(ref.get('peak_rss_bytes'), ours.get('peak_rss_bytes')), '.1f', '×')} "
                "less); bound < one session's int16 "
                f"betas ({_f(_gb(limit), '.2f', ' GB')}): {verdict}",
                "machine": _machine_text(d.get("machine")),
            }
        )
    return rows


def _per_session(r: dict[str, Any]) -> str:
    text = _f(r.get("mean_seconds_per_session"), ".0f", " s/session")
    cpu = r.get("mean_cpu_seconds_per_session")
    load = (r.get("load_average_start") or [None])[0]
    extras = [f"CPU {cpu:.0f} s" if cpu is not None else "", f"load {load:.1f}" if load else ""]
    extras = [e for e in extras if e]
    return text + (f" ({', '.join(extras)})" if extras else "")


def _gb(value: Any) -> float | None:
    return None if value is None else float(value) / 1e9


def _rows_gpu_ridge(d: dict[str, Any]) -> list[Row]:
    mtext = f"GPU {d.get('device', '?')}, torch {d.get('torch', '?')}"
    return [
        {
            "case": f"{r['decoder']} decoder {r['n']:,}×{r['p']:,}→{r['t']:,} (torch, CUDA, "
            f"scale {d.get('scale')})",
            "ours": _f(r.get("ours_s"), ".1f", " s"),
            "reference": f"himalaya RidgeCV (torch_cuda): {_f(r.get('himalaya_s'), '.1f', ' s')}",
            "ratio": _speed(r.get("speedup_vs_himalaya")),
            "memory": f"GPU peak {_f(r.get('ours_peak_gpu_gib'), '.1f', ' GiB')} vs "
            f"{_f(r.get('himalaya_peak_gpu_gib'), '.1f', ' GiB')}",
            "machine": mtext,
        }
        for r in d.get("rows", [])
    ]


def _rows_demo(d: dict[str, Any]) -> list[Row]:
    return [
        {
            "case": d.get("command", "brainrecon-demo"),
            "ours": _f(d.get("seconds"), ".0f", " s")
            + ("" if d.get("exit_code") == 0 else " (FAILED)"),
            "reference": f"goal: ≤ {d.get('goal_s', DEMO_GOAL_S):.0f} s",
            "ratio": _f(_ratio(d.get("seconds"), d.get("goal_s")), ".2f", " of the goal"),
            "memory": f"peak RSS {_f(d.get('peak_rss_gib'), '.2f', ' GiB')} (largest process)",
            "machine": _machine_text(d.get("machine")),
        }
    ]


def _rows_generic(d: dict[str, Any]) -> list[Row]:
    """Best effort for result files this report does not know (e.g. a new benchmark)."""
    rows = []
    for r in d.get("results", []) if isinstance(d.get("results"), list) else []:
        if not isinstance(r, dict):
            continue
        ours = r.get("ours_s") or r.get("seconds") or (r.get("ours") or {}).get("seconds")
        ref_key = next((k for k in r if k.endswith("_s") and k != "ours_s"), None)
        rows.append(
            {
                "case": str(r.get("case") or r.get("name") or r.get("shape") or "–"),
                "ours": _f(ours, ".3g", " s"),
                "reference": f"{ref_key}: {_f(r.get(ref_key), '.3g', ' s')}" if ref_key else "–",
                "ratio": _f(r.get("speedup") or _ratio(r.get(ref_key), ours), ".1f", "×"),
                "memory": _f(r.get("peak_mib") or r.get("ours_peak_mib"), ".0f", " MiB"),
                "machine": _machine_text(d.get("machine")),
            }
        )
    return rows


#: How the seeds benchmark's conditions read in the report.
_SEED_CONDITIONS = {
    "harder": "harder (the default)",
    "null_snr0": "oracle, null snr0",
    "null_permuted": "oracle, null permuted",
    "harder_null_snr0": "default, null snr0",
    "harder_null_permuted": "default, null permuted",
}


def _seed_list(seeds: list[int]) -> str:
    """``seeds 1,2,3`` or, for a run of consecutive seeds, ``seeds 1-25``."""
    if len(seeds) > 5 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ",".join(str(s) for s in seeds)


def _rows_seeds(d: dict[str, Any]) -> list[Row]:
    rows = []
    for cond, summary in d["summary"].items():
        scores = summary["scores"]
        z, c = scores["z|early"], scores["c|ventral"]
        if "pass_rate_all_checks" in summary:
            verdict = (
                f"pre-registered checks pass on {summary['pass_rate_all_checks']:.0%} of seeds"
            )
        else:
            verdict = (
                f"all p > 0.05 on {summary['pass_rate_all_p_above_0.05']:.0%} of seeds "
                f"({summary['pass_rate_holm']:.0%} after Holm)"
            )
        rows.append(
            {
                "case": f"{_SEED_CONDITIONS.get(cond, cond)}: z from early / c from ventral, "
                + _seed_list(summary["seeds"]),
                "ours": f"{z['mean']:.3f} / {c['mean']:.3f} (mean identification)",
                "reference": "chance 0.5; permutation null p95 ≈ 0.55",
                "ratio": verdict,
                "machine": _machine_text(d.get("machine")),
            }
        )
    return rows


def _rows_demo_identification(d: dict[str, Any]) -> list[Row]:
    p95 = max(r["null_p95"] for r in d["results"])
    return [
        {
            "case": f"true z + c, {len(d['results'])} seeds × {d['results'][0]['n_images']} scenes",
            "ours": f"{d['mean']:.3f} ({d['min']:.3f}–{d['max']:.3f})",
            "reference": f"chance 0.5; null p95 ≤ {p95:.3f}",
            "ratio": "every seed passes" if d.get("all_pass") else "NOT every seed passes",
            "machine": _machine_text(d.get("machine")),
        }
    ]


def _rows_unique_variance(d: dict[str, Any]) -> list[Row]:
    return [
        {
            "case": f"unique/shared variance, {name}",
            "ours": f"{v['covered']}/{v['checks']} planted values inside their 95 % CI",
            "reference": "planted fractions (simulator truth)",
            "ratio": f"largest error {v['max_abs_error']:.3f}",
            "machine": _machine_text(d.get("machine")),
        }
        for name, v in d["summary"].items()
    ]


def _rows_null_calibration(d: dict[str, Any]) -> list[Row]:
    s = d["summary"]
    shares = [r["share"] for r in s["rows"].values()]
    calibrated = sum(r["ci_contains_0.05"] for r in s["rows"].values())
    return [
        {
            "case": f"null reconstructions, {s['n_sets']} sets × {d['config']['n_images']} "
            f"images, {len(shares)} identification rows",
            "ours": f"p ≤ 0.05 in {min(shares):.1%}–{max(shares):.1%} of sets; Holm clean in "
            f"{s['holm_share']:.1%}",
            "reference": "exact test: 5 % (Holm: ≥ 95 %)",
            "ratio": f"{calibrated}/{len(shares)} rows' CIs contain 5 %",
            "machine": _machine_text(d.get("machine")),
        }
    ]


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "null_calibration": _rows_null_calibration,
    "seeds": _rows_seeds,
    "demo_identification": _rows_demo_identification,
    "unique_variance": _rows_unique_variance,
    "ridge": _rows_ridge,
    "betas": _rows_betas,
    "identification": _rows_identification,
    "reconstruction": _rows_reconstruction,
    "gpu_reconstruction": _rows_reconstruction,
    "nsd_scale": _rows_nsd,
    "nsd_convert": _rows_nsd_convert,
    "gpu_ridge": _rows_gpu_ridge,
    "gpu_end_to_end": _rows_gpu_end_to_end,
    "demo": _rows_demo,
}


def report(quick: bool = False) -> str:
    """The Markdown of docs/benchmarks.md from the JSON files in benchmarks/results/."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks` (regenerate this page from the stored results with "
        "`python -m benchmarks --report-only`). Every figure is beside its reference "
        "implementation measured in the same run (same process layout, threads and data), with "
        "the ratio, peak memory and the machine. Raw results and per-benchmark tables: "
        "`benchmarks/results/` (`<name>.json` and `<name>.md`). Timings on a shared machine vary "
        "with its load (recorded where the benchmark records it).",
        "",
        "| benchmark | case | ours | reference (same run) | ratio | peak memory | machine | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missing = []
    for bench in BENCHMARKS:
        files = bench.quick_results if quick else bench.results
        found = False
        for name in files:
            loaded = _load(name)
            if loaded is None or (found and bench.first_only):
                continue
            data, date = loaded
            try:
                rows = ROWS.get(bench.name, _rows_generic)(data)
            except (KeyError, TypeError, ValueError) as exc:
                rows = [{"case": f"unreadable {name}: {exc!r}"}]
            for row in rows:
                found = True
                cells = [row.get(k, "–") for k in ("case", "ours", "reference", "ratio")]
                cells += [row.get("memory", "–"), row.get("machine", "–"), date]
                text = " | ".join(c.replace("|", "/") for c in cells)
                lines.append(f"| {bench.name} | {text} |")
        if not found:
            missing.append(bench)
    if missing:
        lines += ["", "Not measured yet (no result file in `benchmarks/results/`):", ""]
        for bench in missing:
            how = (
                "`python -m benchmarks --only demo`"
                if bench.module is None
                else f"`python -m benchmarks.{bench.module}`"
            )
            lines.append(f"- {bench.name}: {bench.what} — {how}")
    lines += [
        "",
        "## How each is measured",
        "",
        "- **ridge**: `nipype_brainrecon.ridge.fit_ridge_cv` (numpy) vs himalaya's `RidgeCV` "
        "(the authors' tool) and scikit-learn's, float32, 5 folds, the paper's alphas, each in "
        "its own process; extra peak memory = peak RSS during the fit minus RSS with inputs "
        "loaded. The NSD row is extrapolated from fitted costs.",
        "- **betas**: vectorised LSS vs one nilearn `FirstLevelModel` per trial on the same run; "
        "memory by tracemalloc.",
        "- **identification**: one matrix product for all pairs vs the paper's per-pair "
        "`np.corrcoef` loop; identical accuracies required.",
        "- **reconstruction**: the paper's recipe (z+c, 5 samples, 50 DDIM steps × 0.8, "
        "guidance 5) batched vs batch 1 (the reference is the unbatched loop).",
        "- **nsd_scale**: the NSD subject-1 decoders at full size (`benchmarks/bench_nsd_scale.py`)"
        "; peak RSS of the fitting process from the kernel (`wait4`), inputs included; himalaya "
        "only where its estimated memory fits (42 GiB at the c decoder's size: not on 24 GB). "
        "Goal: c decoder ≤ 20 min and ≤ 12 GB on 2 cores.",
        "- **nsd_convert**: `benchmarks/bench_nsd_convert.py` writes a release-format NSD root for "
        "subject 1 with real sizes and synthetic values (func1pt8mm grid 81 × 104 × 83, 40 % of "
        "voxels non-zero, 750 trials per session in 12 runs of 63/62, int16 × 300 gzipped; the "
        "real design, 73k stimulus table, a 73000 × 425 × 425 × 3 `imgBrick` holding only the "
        "seen images (smooth synthetic pictures), COCO-size caption files, the three atlases) "
        "and converts it with `nsd_to_bids` in a child process: seconds per session (wall and "
        "CPU) from the converter's log, peak RSS of the whole process from the kernel "
        "(`wait4`); the ratio is by CPU time, which the shared machine's load moves less. The "
        "reference, in the same run and also in a child, is the whole-session loading of the "
        "authors' `make_subjmri.py` (their `nsd_access.read_betas` returns a session whole; "
        "the script then keeps all 37 sessions concatenated, ~39 GB as int16, where the "
        "reference holds one session at a time): each session loaded (`np.asarray(img.dataobj)`, the int16 array `get_data()` gave, "
        "or `get_fdata()`), divided by 300 into float32 and written with `nibabel.save`; its "
        "data are checked to be the same bytes as ours. Bound (issue 21): our peak RSS below "
        "one session's betas in memory as stored, int16 81 × 104 × 83 × 750 × 2 B = 1.05 GB "
        "(2.10 GB as float32). Ours peaks while reading COCO's caption file, before the betas "
        "(0.30 GB resident while they are written).",
        "- **demo**: wall time of `brainrecon-demo` (simulation, 2 participants, group level) "
        "against the 5-minute goal; peak RSS of the largest process.",
        "- **gpu_***: run when a CUDA GPU is visible; the device is named in the machine column.",
    ]
    lines += _gpu_vs_diffusers_section()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmarks and write docs/benchmarks.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--only", nargs="+", choices=sorted(BY_NAME), help="run only these")
    parser.add_argument("--skip", nargs="+", choices=sorted(BY_NAME), default=[], help="skip")
    parser.add_argument("--quick", action="store_true", help="the benchmarks' small settings")
    parser.add_argument(
        "--report-only", action="store_true", help="only write docs/benchmarks.md from results"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--report", type=Path, default=REPORT, help="Markdown file to write")
    args = parser.parse_args(argv)
    if args.list:
        for b in BENCHMARKS:
            mark = "*" if b.default() else " "
            print(f"{mark} {b.name:20s} {b.what}")
        return 0
    status = 0
    if not args.report_only:
        names = args.only or [b.name for b in BENCHMARKS if b.default()]
        names = [n for n in names if n not in args.skip]
        for n in names:
            mod = BY_NAME[n].module
            if mod and importlib.util.find_spec(f"benchmarks.{mod}") is None:
                print(f"[benchmarks] {n}: benchmarks/{mod}.py not found", file=sys.stderr)
                return 2
        record = run_benchmarks(names, args.quick)
        status = int(any(r["exit_code"] != 0 for r in record["runs"].values()))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report(quick=args.quick))
    print(f"[benchmarks] wrote {args.report}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
