"""Are evaluate()'s identification p-values exact on reconstructions? (issue 22)

The null simulation's reconstructions failed their family of 9 p-values on 2 of 5 seeds
(docs/evaluation.md). This benchmark separates the evaluation from the decoding: one fixed bank
of reconstructions, paired with many independent sets of seen images, is null data by
construction, so each identification p-value should fall at or below 0.05 in 5 % of the sets.

- Bank: the demo model's reconstructions (1 sample, the paper's recipe) of ``stim-0001`` ...
  ``stim-0100`` from one constant z and c, the mean true latents of ``generate_scenes(100,
  seed=0)``; each image's noise is seeded by its stimulus id, as in every run.
- Seen images: per set ``s`` (``1001, 1002, ...``), ``generate_scenes(100, seed=s)`` rendered as
  the simulator renders its stimuli (128 px) and read as the benchmark reads them (Lanczos to the
  reconstructions' size); scene ``k`` is ``stim-{k+1:04d}``.
- Scores: the identification rows of ``evaluate`` for the extractors that need no downloaded
  weights (``pixels``, ``lowlevel``, ``scene``), through ``identification_with_null`` with
  evaluate's settings (1,000 permutations). PixCorr's null is left out (its 425 px matrix costs
  10 s a set).

Pre-registered criteria (docs/evaluation.md): per row, the share of sets with p <= 0.05 has an
exact 95 % CI that contains 0.05; per set, Holm over the 8 rows rejects nothing in >= 95 % of sets.

    python -m benchmarks.bench_null_calibration             # 200 sets (about 5 min)
    python -m benchmarks.bench_null_calibration --sets 5 --out /tmp/cal.json   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import cpu_model, package_versions
from benchmarks.bench_seeds import ALPHA, clopper_pearson, holm_rejects

N_IMAGES = 100
BANK_SEED = 0
FIRST_SET_SEED = 1001
EXTRACTORS = ("pixels", "lowlevel", "scene")
RENDER_PX = 128  # the simulator's default image_size
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "null_calibration.json"


def _ids(n: int) -> list[str]:
    return [f"stim-{k:04d}" for k in range(1, n + 1)]


def seen_images(seed: int, n: int, size: tuple[int, int]) -> np.ndarray:
    """``generate_scenes(n, seed)`` rendered at the simulator's size, resized as load_images does."""
    from PIL import Image

    from nipype_brainrecon.synthetic.stimuli import generate_scenes, render_scene

    out = np.empty((n, *size, 3), dtype=np.uint8)
    for k, scene in enumerate(generate_scenes(n, seed=seed)):
        img = render_scene(scene, RENDER_PX).convert("RGB")
        out[k] = np.asarray(img.resize((size[1], size[0]), Image.Resampling.LANCZOS))
    return out


def reconstruction_bank(n: int, work: Path) -> np.ndarray:
    """The demo model's reconstructions of ``stim-0001..`` from the bank scenes' mean z and c."""
    from nipype_brainrecon.diffusion import reconstruct
    from nipype_brainrecon.diffusion.models import demo_model_path, load_pipeline, native_resolution
    from nipype_brainrecon.features.captions import encode_captions_c
    from nipype_brainrecon.features.latents import encode_images_z
    from nipype_brainrecon.synthetic.stimuli import generate_scenes, render_scene, scene_captions

    model = demo_model_path()
    pipe = load_pipeline(str(model))
    scenes = generate_scenes(n, seed=BANK_SEED)
    paths = []
    for k, scene in enumerate(scenes):
        paths.append(work / f"bank-{k:04d}.png")
        render_scene(scene, RENDER_PX).convert("RGB").save(paths[-1])
    z = encode_images_z(paths, pipe.vae, resolution=native_resolution(model), progress=False)
    captions = [scene_captions(s, rng=k) for k, s in enumerate(scenes)]
    c = encode_captions_c(captions, pipe.tokenizer, pipe.text_encoder, progress=False)
    z_const = np.repeat(z.mean(axis=0, keepdims=True), n, axis=0)
    c_const = np.repeat(c.mean(axis=0, keepdims=True), n, axis=0)
    return reconstruct(pipe, z_const, c_const, stim_ids=_ids(n), n_samples=1, progress=False)


def set_p_values(originals: np.ndarray, recon_features: dict, extractors: list) -> dict:
    """Identification p-value of every (feature set, rule) for one set of seen images."""
    from nipype_brainrecon.evaluation.metrics import IDENTIFICATION_RULES, identification_with_null

    out = {}
    for extractor in extractors:
        f_orig = extractor(originals)
        for name, kind in extractor.outputs.items():
            if kind == "distance":
                continue
            for rule in IDENTIFICATION_RULES:
                _, stats = identification_with_null(f_orig[name], recon_features[name], rule=rule)
                out[f"{name} 2-way ({rule})"] = stats["p_value"]
    return out


def summarise(p_values: dict[str, list[float]]) -> dict[str, Any]:
    """Per row: sets with p <= 0.05 (share, exact CI); per set: Holm over all rows."""
    rows = {}
    for name, ps in p_values.items():
        k = int(np.sum(np.asarray(ps) <= ALPHA))
        ci = clopper_pearson(k, len(ps))
        rows[name] = {
            "n_sets": len(ps),
            "p_le_0.05": k,
            "share": k / len(ps),
            "ci": ci,
            "ci_contains_0.05": bool(ci[0] <= ALPHA <= ci[1]),
            "p_le_0.01": int(np.sum(np.asarray(ps) <= 0.01)),
        }
    per_set = np.array(list(p_values.values())).T  # (sets, rows)
    clean = int(sum(not any(holm_rejects(list(ps))) for ps in per_set))
    raw = int(np.sum((per_set > ALPHA).all(axis=1)))
    return {
        "rows": rows,
        "all_p_above_0.05": raw,
        "all_p_above_0.05_ci": clopper_pearson(raw, len(per_set)),
        "holm_none_rejected": clean,
        "n_sets": len(per_set),
        "holm_share": clean / len(per_set),
        "holm_ci": clopper_pearson(clean, len(per_set)),
        "all_rows_calibrated": all(r["ci_contains_0.05"] for r in rows.values()),
    }


def markdown(record: dict[str, Any]) -> str:
    s = record["summary"]
    lines = [
        "# Null calibration of the reconstruction scores",
        "",
        f"Command: `{record['command']}`; {record['date']}; {record['machine']['cpu']}. "
        f"{s['n_sets']} independent sets of {record['config']['n_images']} seen images against "
        "one fixed bank of reconstructions (constant z and c; per-id noise): null by construction.",
        "",
        "| score | sets with p ≤ 0.05 | share [exact 95 % CI] | CI contains 0.05 | p ≤ 0.01 |",
        "|---|---|---|---|---|",
    ]
    for name, r in s["rows"].items():
        lines.append(
            f"| {name} | {r['p_le_0.05']}/{r['n_sets']} | {r['share']:.3f} "
            f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {'yes' if r['ci_contains_0.05'] else 'NO'} "
            f"| {r['p_le_0.01']} |"
        )
    lo, hi = s["holm_ci"]
    lines += [
        "",
        f"**Family (Holm over the {len(s['rows'])} rows within a set): no rejection in "
        f"{s['holm_none_rejected']}/{s['n_sets']} sets, {s['holm_share']:.1%} "
        f"[{lo:.1%}, {hi:.1%}].** Uncorrected, all {len(s['rows'])} p > 0.05 in "
        f"{s['all_p_above_0.05']}/{s['n_sets']} sets.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_null_calibration", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sets", type=int, default=200, help="independent sets of seen images")
    parser.add_argument("--n-images", type=int, default=N_IMAGES)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="only recompute OUT's summary and Markdown from its recorded p-values",
    )
    args = parser.parse_args(argv)
    if args.markdown_only:
        record = json.loads(args.out.read_text())
        record["summary"] = summarise(record["p_values"])
        _write(record, args.out)
        return 0
    from nipype_brainrecon.evaluation import get_extractor

    given = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="bench-null-cal-") as tmp:
        bank = reconstruction_bank(args.n_images, Path(tmp))[:, 0]
    extractors = [get_extractor(name) for name in EXTRACTORS]
    recon_features = {k: v for e in extractors for k, v in e(bank).items()}
    p_values: dict[str, list[float]] = {}
    for i in range(args.sets):
        seen = seen_images(FIRST_SET_SEED + i, args.n_images, bank.shape[1:3])
        for name, p in set_p_values(seen, recon_features, extractors).items():
            p_values.setdefault(name, []).append(p)
    record = {
        "benchmark": "null calibration of the reconstruction scores",
        "command": " ".join(["python -m benchmarks.bench_null_calibration", *given]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_model(), "python": platform.python_version()},
        "packages": package_versions(),
        "config": {
            "n_images": args.n_images,
            "bank_seed": BANK_SEED,
            "set_seeds": [FIRST_SET_SEED, FIRST_SET_SEED + args.sets - 1],
            "extractors": list(EXTRACTORS),
        },
        "p_values": p_values,
        "summary": summarise(p_values),
    }
    _write(record, args.out)
    return 0


def _write(record: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    raise SystemExit(main())
