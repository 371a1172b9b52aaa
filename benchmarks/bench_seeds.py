"""Scores over seeds and the null simulation (issue 22, "Must show"): pre-registered.

For each seed and simulation condition, one simulated subject goes through the decoding workflow
(:func:`nipype_brainrecon.workflows.decoding.init_decoding_wf`: single-trial betas, ROI data,
train/test split, the demo model's z and c features, ridge decoders, predictions and their
scores), once as in the paper (z from ``early``, c from ``ventral``) and once swapped on the same
betas (z from ``ventral``, c from ``early``). Reported per seed and condition:

* two-way identification (Takagi's rule, chance 0.5) of the decoded z and c latents from each
  ROI, with the permutation null's 95th percentile (1,000 permutations of the test-set labels),
  its p-value and the 95 % bootstrap CI over test images
  (:func:`nipype_brainrecon.evaluation.metrics.identification_with_null`, the numbers the
  workflow's ``PredictDecoder`` writes, recomputed here from its predictions and checked equal);
* the dissociation: per test image, identification of z from early minus from ventral, and of c
  from ventral minus from early; the mean difference with a one-sided sign-flip permutation
  p-value (H1: difference > 0; 1,000 random sign flips of the per-image differences,
  ``(1 + #{flipped mean >= observed}) / (1 + 1000)``) and its 95 % bootstrap CI.

Pre-registered design (fixed before any result was seen): seeds 1-5; one subject, 100 test
images shown 3 times, other simulator settings at their defaults; conditions ``default`` (all
realism off; renamed ``oracle`` when the realism became the simulator's default), ``harder``
(:data:`nipype_brainrecon.synthetic.simulate.presets.HARDER`, now the defaults), ``null_snr0``
and ``null_permuted`` (realism off with ``null="snr0"`` / ``"permuted"``).
Pass criteria: real conditions, every score's p < 0.05 on every seed and both dissociation
differences > 0 with p < 0.05; null conditions, all p > 0.05 per seed (raw, and with a Holm
correction within the seed), in >= 95 % of seeds.

    python -m benchmarks.bench_seeds                      # the pre-registered run
    python -m benchmarks.bench_seeds --seeds 1 --conditions null_snr0 --n-test 10 --n-train 40 \\
        --out /tmp/seeds.json --save-arrays               # a smoke run (about a minute)

Results are written after every (seed, condition), so a partial run still gives numbers:
``benchmarks/results/seeds.json`` and ``seeds.md`` (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import cpu_model, package_versions
from nipype_brainrecon.evaluation import nulls
from nipype_brainrecon.evaluation.metrics import CHANCE_TWO_WAY, identification_with_null
from nipype_brainrecon.evaluation.nulls import bootstrap_ci
from nipype_brainrecon.synthetic.simulate.presets import HARDER, ORACLE

SEEDS = (1, 2, 3, 4, 5)
N_TEST = 100
N_REPEATS = 3
N_FLIPS = 1000
ALPHA = 0.05
#: Simulator options per condition, explicit so that a later change of the simulator's defaults
#: does not change a condition (``harder`` became the defaults after this design was run).
CONDITIONS: dict[str, dict[str, Any]] = {
    "oracle": dict(ORACLE),
    "harder": dict(HARDER),
    "null_snr0": {**ORACLE, "null": "snr0"},
    "null_permuted": {**ORACLE, "null": "permuted"},
    # added when the realism became the defaults, with the null conditions' criteria
    "harder_null_snr0": {**HARDER, "null": "snr0"},
    "harder_null_permuted": {**HARDER, "null": "permuted"},
}


def _is_null(condition: str) -> bool:
    """Whether a condition simulates null data (``null="snr0"`` or ``"permuted"``)."""
    return "null" in CONDITIONS.get(condition, {})


#: How each condition is described in the tables.
CONDITION_LABELS = {
    "oracle": "all realism off: the analysis' own assumptions; the simulator's default before "
    "issue 22, named `default` when this design was run",
    "harder": "the simulator's defaults since issue 22: "
    + ", ".join(f"{k} {v}" for k, v in HARDER.items()),
    "null_snr0": "oracle with null snr0: no stimulus signal",
    "null_permuted": "oracle with null permuted: stimulus labels permuted",
    "harder_null_snr0": "the defaults (harder) with null snr0: no stimulus signal",
    "harder_null_permuted": "the defaults (harder) with null permuted: stimulus labels permuted",
}
#: (target, ROI) decoded; the paper's pairs first.
PAIRS = (("z", "early"), ("c", "ventral"), ("z", "ventral"), ("c", "early"))
#: Dissociation differences: (name, target, ROI expected better, ROI expected worse).
DIFFERENCES = (
    ("z: early - ventral", "z", "early", "ventral"),
    ("c: ventral - early", "c", "ventral", "early"),
)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "seeds.json"
#: Extractors of the reconstruction scores: those that need no downloaded weights.
RECON_EXTRACTORS = ("pixels", "lowlevel", "scene")


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def sign_flip_p(differences: np.ndarray, n_flips: int = N_FLIPS, seed: int = 0) -> float:
    """One-sided sign-flip p-value of ``mean(differences) > 0`` (:func:`nulls.sign_flip_p`)."""
    return nulls.sign_flip_p(differences, n_flips=n_flips, seed=seed)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> list[float]:
    """Exact (Clopper-Pearson) confidence interval of a proportion ``k / n``."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return [float(ci.low), float(ci.high)]


def holm_rejects(p_values: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise ``alpha``."""
    order = np.argsort(p_values)
    reject = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        reject[i] = True
    return reject


# --------------------------------------------------------------------------------------------
# One (seed, condition)
# --------------------------------------------------------------------------------------------


def _node_outputs(result, name: str):
    return {n.name: n for n in result.nodes()}[name].result.outputs


def _truth_rows(split_outputs, features_file: str, features_stimuli: str):
    """The true features of the test stimuli in the predictions' row order, their stim_ids
    and image files."""
    test = pd.read_csv(split_outputs.test_stimuli_file, sep="\t", dtype={"stim_id": str})
    table = pd.read_csv(features_stimuli, sep="\t", dtype={"stim_id": str, "stim_file": str})
    index = {s: k for k, s in enumerate(table["stim_id"])}
    rows = [index[s] for s in test["stim_id"]]
    truth = np.load(features_file, allow_pickle=False)[rows]
    return truth, test["stim_id"].tolist(), table["stim_file"].iloc[rows].tolist()


def run_paper_and_swapped(
    participant, model: Path, resolution: int, work: Path, metadata: dict | None = None
):
    """The decoding workflow with the paper's ROIs (z from early, c from ventral), then with
    them swapped on the same betas; features cached in ``work/features``, nodes under
    ``work/work``. Returns both workflows' results (``paper_wf``, ``swapped_wf``)."""
    from nipype_brainrecon.workflows.decoding import init_decoding_wf, set_participant_inputs

    cache = str(work / "features")
    paper = init_decoding_wf(
        resolution=resolution, feature_cache=cache, metadata=metadata, name="paper_wf"
    )
    paper.base_dir = str(work / "work")
    set_participant_inputs(paper, participant, model)
    first = paper.run()
    betas = _node_outputs(first, "betas")
    swapped = init_decoding_wf(
        precomputed_betas=True,
        z_roi="ventral",
        c_roi="early",
        resolution=resolution,
        feature_cache=cache,
        name="swapped_wf",
    )
    swapped.base_dir = str(work / "work")
    set_participant_inputs(swapped, participant, model)
    swapped.inputs.inputnode.betas_files = betas.betas_file
    swapped.inputs.inputnode.trials_files = betas.trials_file
    return first, swapped.run()


def decode_both_ways(dataset: Path, work: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Run the decoding workflow (paper ROIs, then swapped on the same betas).

    Returns, per (target, ROI): ``truth`` and ``predicted`` arrays (test stimuli in the same
    order) and the workflow's ``scores``.
    """
    from nipype_brainrecon.bids import collect_participant
    from nipype_brainrecon.diffusion.models import demo_model_path, native_resolution

    model = demo_model_path()
    participant = collect_participant(dataset, "01")
    first, second = run_paper_and_swapped(participant, model, native_resolution(model), work)
    feats = _node_outputs(first, "features")
    out = {}
    for result, pairs in ((first, PAIRS[:2]), (second, PAIRS[2:])):
        for target, roi in pairs:
            pred = _node_outputs(result, f"predict_{target}")
            split = _node_outputs(result, f"split_{target}")
            truth, ids, files = _truth_rows(
                split, getattr(feats, f"{target}_file"), feats.stimuli_file
            )
            out[(target, roi)] = {
                "truth": truth,
                "predicted": np.load(pred.predicted_file, allow_pickle=False),
                "scores": pred.scores,
                "stim_ids": ids,
                "stim_files": [str(Path(participant.stimuli_dir) / f) for f in files],
            }
    return out


def reconstruction_scores(decoded: dict[tuple[str, str], dict[str, Any]]) -> list[dict]:
    """Reconstruct the test images from the decoded z (early) and c (ventral) with the demo
    model (the paper's recipe but ``n_samples=1``) and score them with :func:`evaluate`
    (extractors pixels, lowlevel, scene: no downloaded weights); one dict per metric row."""
    from nipype_brainrecon.diffusion import reconstruct
    from nipype_brainrecon.diffusion.models import demo_model_path, load_pipeline
    from nipype_brainrecon.evaluation import evaluate, load_images

    z, c = decoded[("z", "early")], decoded[("c", "ventral")]
    if z["stim_ids"] != c["stim_ids"]:
        raise RuntimeError("z and c test stimuli differ in order")
    pipe = load_pipeline(str(demo_model_path()))
    recon = reconstruct(
        pipe, z["predicted"], c["predicted"], stim_ids=z["stim_ids"], n_samples=1, progress=False
    )
    originals = load_images(z["stim_files"], size=recon.shape[2:4])
    table = evaluate(originals, recon, extractors=RECON_EXTRACTORS)
    keep = ["value", "chance", "mismatched", "null_p95", "p_value", "ci_low", "ci_high"]
    rows = []
    for metric, row in table.iterrows():
        entry = {"metric": str(metric)}
        entry.update({k: (None if pd.isna(row[k]) else float(row[k])) for k in keep})
        rows.append(entry)
    return rows


def score_run(decoded: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Identification with null/CI per (target, ROI) and the dissociation differences."""
    scores, per_image = {}, {}
    for (target, roi), d in decoded.items():
        n = len(d["truth"])
        ident, stats = identification_with_null(
            d["truth"].reshape(n, -1).astype(np.float64),
            d["predicted"].reshape(n, -1).astype(np.float64),
        )
        wf = d["scores"]
        # The workflow's own numbers (PredictDecoder) must be these: same function, same arrays.
        same = bool(
            np.isclose(wf["identification"], ident.mean())
            and np.isclose(wf["identification_p_value"], stats["p_value"])
        )
        per_image[(target, roi)] = ident
        scores[f"{target}|{roi}"] = {
            "target": target,
            "roi": roi,
            "identification": float(ident.mean()),
            "chance": CHANCE_TWO_WAY,
            **{k: float(v) for k, v in stats.items()},
            "target_r_mean": float(wf["target_r_mean"]),
            "n_test": int(n),
            "matches_workflow_scores": same,
        }
    diffs = {}
    for name, target, better, worse in DIFFERENCES:
        d = per_image[(target, better)] - per_image[(target, worse)]
        ci = bootstrap_ci(d)
        diffs[name] = {
            "target": target,
            "better_roi": better,
            "worse_roi": worse,
            "difference": float(d.mean()),
            "p_value": sign_flip_p(d),
            "ci_low": ci.low,
            "ci_high": ci.high,
        }
    return {"scores": scores, "dissociation": diffs}


def null_family(run: dict[str, Any]) -> dict[str, Any]:
    """All p-values of one run: raw 'all p > 0.05' and the Holm-corrected verdict."""
    ps = [s["p_value"] for s in run["scores"].values()]
    ps += [d["p_value"] for d in run["dissociation"].values()]
    return {
        "n_p_values": len(ps),
        "min_p": float(min(ps)),
        "all_p_above_0.05": bool(all(p > ALPHA for p in ps)),
        "holm_none_rejected": not any(holm_rejects(ps)),
    }


def real_checks(run: dict[str, Any]) -> dict[str, bool]:
    """Pre-registered checks of a real condition (each True = passes)."""
    s, d = run["scores"], run["dissociation"]
    checks = {f"{k} above null p95 (p < 0.05)": bool(v["p_value"] < ALPHA) for k, v in s.items()}
    for name, v in d.items():
        checks[f"dissociation {name} > 0, p < 0.05"] = bool(
            v["difference"] > 0 and v["p_value"] < ALPHA
        )
    return checks


def run_one(
    seed: int,
    condition: str,
    n_test: int,
    n_train: int | None,
    root: Path,
    reconstruct: bool = False,
) -> tuple[dict, dict]:
    """Simulate, decode both ways and score one (seed, condition); optionally reconstruct."""
    from nipype_brainrecon.synthetic.simulate import simulate_dataset

    start = time.perf_counter()
    folder = root / f"{condition}_seed{seed}"
    dataset = simulate_dataset(
        folder / "sim",
        n_subjects=1,
        seed=seed,
        n_test=n_test,
        n_train=n_train,
        n_repeats=N_REPEATS,
        **CONDITIONS[condition],
    )
    decoded = decode_both_ways(dataset, folder)
    run = {"seed": seed, "condition": condition, **score_run(decoded)}
    if _is_null(condition):
        run["null_family"] = null_family(run)
    else:
        run["checks"] = real_checks(run)
    if reconstruct:
        run["reconstruction"] = reconstruction_scores(decoded)
        ps = [r["p_value"] for r in run["reconstruction"] if r["p_value"] is not None]
        run["reconstruction_family"] = {
            "n_p_values": len(ps),
            "min_p": float(min(ps)),
            "all_p_above_0.05": bool(all(p > ALPHA for p in ps)),
            "all_p_below_0.05": bool(all(p < ALPHA for p in ps)),
            "holm_none_rejected": not any(holm_rejects(ps)),
        }
    run["seconds"] = time.perf_counter() - start
    return run, decoded


# --------------------------------------------------------------------------------------------
# Summary and report
# --------------------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per condition: mean and range of each score over seeds, and pass rates."""
    out = {}
    for cond in dict.fromkeys(r["condition"] for r in runs):
        rs = [r for r in runs if r["condition"] == cond]
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rs], "scores": {}}
        for key in rs[0]["scores"]:
            v = np.array([r["scores"][key]["identification"] for r in rs])
            p = np.array([r["scores"][key]["p_value"] for r in rs])
            entry["scores"][key] = {
                "mean": float(v.mean()),
                "min": float(v.min()),
                "max": float(v.max()),
                "n_seeds_p_below_0.05": int((p < ALPHA).sum()),
            }
        for key in rs[0]["dissociation"]:
            v = np.array([r["dissociation"][key]["difference"] for r in rs])
            p = np.array([r["dissociation"][key]["p_value"] for r in rs])
            entry["scores"][f"dissociation {key}"] = {
                "mean": float(v.mean()),
                "min": float(v.min()),
                "max": float(v.max()),
                "n_seeds_p_below_0.05": int(((p < ALPHA) & (v > 0)).sum()),
            }
        if _is_null(cond):
            fam = [r["null_family"] for r in rs]
            entry["pass_rate_all_p_above_0.05"] = float(
                np.mean([f["all_p_above_0.05"] for f in fam])
            )
            entry["pass_rate_holm"] = float(np.mean([f["holm_none_rejected"] for f in fam]))
            for name, key in (
                ("all_p_above_0.05", "all_p_above_0.05"),
                ("holm", "holm_none_rejected"),
            ):
                k = int(sum(f[key] for f in fam))
                entry[f"passes_{name}"] = [k, len(fam)]
                entry[f"pass_rate_{name}_ci95"] = clopper_pearson(k, len(fam))
        else:
            entry["pass_rate_all_checks"] = float(np.mean([all(r["checks"].values()) for r in rs]))
        out[cond] = entry
    return out


def _rate(entry: dict[str, Any], name: str) -> str:
    """A pass rate with its count and Clopper-Pearson 95 % CI when recorded."""
    rate = f"{entry[f'pass_rate_{name}']:.0%}"
    if f"passes_{name}" not in entry:
        return rate
    (k, n), (low, high) = entry[f"passes_{name}"], entry[f"pass_rate_{name}_ci95"]
    return f"{rate} ({k}/{n}, 95 % CI {low:.0%}–{high:.0%})"


def _p(p: float) -> str:
    """A p-value; the smallest a 1,000-draw test can give, 1/1001, as "≤ 0.001"."""
    return "≤ 0.001" if p < 0.0011 else f"{p:.3f}"


def markdown(record: dict[str, Any]) -> str:
    """Per-seed and summary tables."""
    lines = [
        "# Scores over seeds and the null simulation",
        "",
        f"Command: `{record['command']}`; {record['date']}; {record['machine']['cpu']}. "
        f"n_test {record['config']['n_test']} (× {N_REPEATS} repeats), one subject, decoded "
        "latents of the demo model; two-way identification (Takagi's rule, chance 0.5), null: "
        f"{record['config']['n_permutations']} permutations of the test labels, CI: bootstrap "
        "over test images; dissociation p: one-sided sign-flip test of per-image differences "
        f"({N_FLIPS} flips).",
        "",
        "## By condition (value [95 % CI], null p95, p)",
        "",
        compact_tables(record),
        "",
        "## Per seed",
        "",
        "| condition | seed | score | value | null p95 | p | 95 % CI |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["runs"]:
        for s in r["scores"].values():
            lines.append(
                f"| {r['condition']} | {r['seed']} | {s['target']} from {s['roi']} | "
                f"{s['identification']:.3f} | {s['null_p95']:.3f} | {_p(s['p_value'])} | "
                f"{s['ci_low']:.3f}–{s['ci_high']:.3f} |"
            )
        for key, d in r["dissociation"].items():
            lines.append(
                f"| {r['condition']} | {r['seed']} | Δ {key} | {d['difference']:+.3f} | – | "
                f"{_p(d['p_value'])} | {d['ci_low']:+.3f}–{d['ci_high']:+.3f} |"
            )
        fam = r.get("null_family")
        if fam:
            lines.append(
                f"| {r['condition']} | {r['seed']} | **{fam['n_p_values']} p-values: all > 0.05: "
                f"{'yes' if fam['all_p_above_0.05'] else 'NO'}; Holm: "
                f"{'none rejected' if fam['holm_none_rejected'] else 'REJECTED'}** | | | "
                f"min {_p(fam['min_p'])} | |"
            )
        else:
            failed = [k for k, ok in r["checks"].items() if not ok]
            verdict = "all pass" if not failed else "FAIL: " + "; ".join(failed)
            lines.append(f"| {r['condition']} | {r['seed']} | **checks: {verdict}** | | | | |")
    lines += _reconstruction_lines(record["runs"])
    lines += [
        "",
        "## Summary over seeds",
        "",
        "| condition | score | mean | range | seeds with p < 0.05 |",
        "|---|---|---|---|---|",
    ]
    for cond, e in record["summary"].items():
        n = len(e["seeds"])
        for key, s in e["scores"].items():
            label = key.replace("|", " from ")
            lines.append(
                f"| {cond} | {label} | {s['mean']:.3f} | {s['min']:.3f}–{s['max']:.3f} | "
                f"{s['n_seeds_p_below_0.05']}/{n} |"
            )
        if "pass_rate_holm" in e:
            lines.append(
                f"| {cond} | **pass rate: all p > 0.05 {_rate(e, 'all_p_above_0.05')}, "
                f"Holm {_rate(e, 'holm')}** | | | |"
            )
        else:
            lines.append(
                f"| {cond} | **pass rate, all checks: {e['pass_rate_all_checks']:.0%}** | | | |"
            )
    return "\n".join(lines) + "\n"


def compact_tables(record: dict[str, Any]) -> str:
    """Per condition, one table: a row per score, a column per seed, each cell
    ``value [CI] p95 x, p y`` (docs/evaluation.md), then the verdict row."""
    lines = []
    for cond in dict.fromkeys(r["condition"] for r in record["runs"]):
        runs = [r for r in record["runs"] if r["condition"] == cond]
        label = CONDITION_LABELS.get(cond, cond)
        lines += [
            f"**{cond}** ({label})",
            "",
            "| score | " + " | ".join(f"seed {r['seed']}" for r in runs) + " |",
            "|---|" + "---|" * len(runs),
        ]
        for key, s in runs[0]["scores"].items():
            cells = [
                f"{x['identification']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}] "
                f"p95 {x['null_p95']:.3f}, p {_p(x['p_value'])}"
                for x in (r["scores"][key] for r in runs)
            ]
            lines.append(f"| {s['target']} from {s['roi']} | " + " | ".join(cells) + " |")
        for key in runs[0]["dissociation"]:
            cells = [
                f"{x['difference']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}] "
                f"p {_p(x['p_value'])}"
                for x in (r["dissociation"][key] for r in runs)
            ]
            lines.append(f"| Δ {key} | " + " | ".join(cells) + " |")
        if _is_null(cond):
            cells = [
                f"all {f['n_p_values']} p > 0.05: {'yes' if f['all_p_above_0.05'] else 'no'}; "
                f"Holm: {'pass' if f['holm_none_rejected'] else 'fail'}"
                for f in (r["null_family"] for r in runs)
            ]
        else:
            cells = [
                "all pass"
                if all(r["checks"].values())
                else "FAIL: " + "; ".join(k for k, ok in r["checks"].items() if not ok)
                for r in runs
            ]
        lines += ["| **verdict** | " + " | ".join(cells) + " |", ""]
    return "\n".join(lines)


def _reconstruction_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Per seed: evaluate()'s rows of the reconstructions (demo model, 1 sample per image)."""
    runs = [r for r in runs if "reconstruction" in r]
    if not runs:
        return []
    lines = [
        "",
        "## Reconstructions (demo model, z + c, 1 sample per image), scored by evaluate()",
        "",
        "| condition | seed | metric | value | chance | mismatched | null p95 | p | 95 % CI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: float | None, fmt: str = ".3f") -> str:
        return "–" if v is None else format(v, fmt)

    for r in runs:
        for m in r["reconstruction"]:
            ci = "–" if m["ci_low"] is None else f"{m['ci_low']:.3f}–{m['ci_high']:.3f}"
            p = "–" if m["p_value"] is None else _p(m["p_value"])
            lines.append(
                f"| {r['condition']} | {r['seed']} | {m['metric']} | {f(m['value'])} | "
                f"{f(m['chance'])} | {f(m['mismatched'])} | {f(m['null_p95'])} | {p} | {ci} |"
            )
        fam = r["reconstruction_family"]
        lines.append(
            f"| {r['condition']} | {r['seed']} | **{fam['n_p_values']} p-values: all > 0.05: "
            f"{'yes' if fam['all_p_above_0.05'] else 'no'}; all < 0.05: "
            f"{'yes' if fam['all_p_below_0.05'] else 'no'}; Holm (null): "
            f"{'none rejected' if fam['holm_none_rejected'] else 'rejected'}** | | | | | "
            f"min {_p(fam['min_p'])} | |"
        )
    return lines


def _write(record: dict[str, Any], out: Path) -> None:
    record["summary"] = summarise(record["runs"]) if record["runs"] else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(record))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_seeds", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS)
    )
    parser.add_argument("--n-test", type=int, default=N_TEST)
    parser.add_argument("--n-train", type=int, default=None, help="default: the simulator's")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temporary)")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="only rewrite OUT's Markdown (and summary) from OUT's JSON",
    )
    parser.add_argument(
        "--reconstruct",
        action="store_true",
        help="also reconstruct (demo model, 1 sample) and score with evaluate()",
    )
    parser.add_argument(
        "--save-arrays", action="store_true", help="also write truth/predictions (OUT stem .npz)"
    )
    args = parser.parse_args(argv)
    if args.markdown_only:
        _write(json.loads(args.out.read_text()), args.out)
        return 0
    from nipype_brainrecon.config import DEFAULTS

    given = sys.argv[1:] if argv is None else argv
    cmd = " ".join(["python -m benchmarks.bench_seeds", *given])
    record: dict[str, Any] = {
        "benchmark": "scores over seeds and the null simulation",
        "command": cmd,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_model(), "python": platform.python_version()},
        "packages": package_versions(),
        "config": {
            "seeds": args.seeds,
            "conditions": {c: CONDITIONS[c] for c in args.conditions},
            "n_test": args.n_test,
            "n_train": args.n_train,
            "n_repeats": N_REPEATS,
            "n_permutations": DEFAULTS.evaluation.n_permutations,
            "n_boot": DEFAULTS.evaluation.n_boot,
            "n_sign_flips": N_FLIPS,
            "reconstruction": {"n_samples": 1, "extractors": list(RECON_EXTRACTORS)}
            if args.reconstruct
            else None,
        },
        "runs": [],
    }
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="bench-seeds-", dir=args.work) as tmp:
        for seed in args.seeds:
            for cond in args.conditions:
                run, decoded = run_one(
                    seed, cond, args.n_test, args.n_train, Path(tmp), args.reconstruct
                )
                record["runs"].append(run)
                print(f"[seeds] {cond} seed {seed}: {run['seconds']:.0f} s", flush=True)
                if args.save_arrays:
                    for (target, roi), d in decoded.items():
                        key = f"{cond}_seed{seed}_{target}_{roi}"
                        arrays[f"{key}_truth"], arrays[f"{key}_predicted"] = (
                            d["truth"],
                            d["predicted"],
                        )
                    np.savez(args.out.with_suffix(".npz"), **arrays)
                _write(record, args.out)
    print(f"[seeds] wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
