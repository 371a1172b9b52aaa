"""The whole suite on one set of reconstructions: :func:`evaluate`, a table of metrics.

Every metric sits beside its chance level where one exists, the reconstructions scored against
the wrong originals (a seeded derangement: the empirical chance level of every metric) and the
trivial baselines given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..config import DEFAULTS
from ..errors import DataError
from .baselines import broadcast_rows, check_baselines, derangement, identify_baseline
from .extractors import FeatureExtractor, get_extractor
from .images import check_pairs
from .metrics import (
    CHANCE_TWO_WAY,
    IDENTIFICATION_RULES,
    correlation_distance,
    identification_with_null,
    two_way_identification,
)
from .nulls import assignment_scorer, bootstrap_ci, permutation_null
from .pixelwise import (
    SSIMVariant,
    check_ssim_options,
    pixcorr_matrix,
    pixcorr_scores,
    ssim_scores,
)

#: Columns after the baselines: the permutation null and bootstrap CI of identification rows.
NULL_COLUMNS = ("null_p95", "p_value", "ci_low", "ci_high")


def evaluate(
    originals: Any,
    reconstructions: Any,
    *,
    extractors: Sequence[str | FeatureExtractor] = ("pixels", "lowlevel"),
    size: int = DEFAULTS.evaluation.eval_size,
    baselines: Mapping[str, Any] | None = None,
    ssim_variant: SSIMVariant = "2d",
    seed: int = 0,
    batch_size: int = 4,
    per_image: bool = False,
    n_permutations: int = DEFAULTS.evaluation.n_permutations,
    n_boot: int = DEFAULTS.evaluation.n_boot,
    resampling_seed: int = DEFAULTS.evaluation.resampling_seed,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Score reconstructions with the whole suite, each metric beside chance and baselines.

    Parameters
    ----------
    originals : ndarray (n, H, W, 3)
        The seen (test) images, uint8 or floats in [0, 1].
    reconstructions : ndarray (n, H', W', 3) or (n, n_samples, H', W', 3)
        Reconstructions in the same order; any resolution of the same aspect ratio.
    extractors : sequence of str or FeatureExtractor
        Registry names (built with default arguments) or built extractors. Each output gives
        two-way identification with Takagi's and MindEye's rules, or, for EfficientNet-B1 and
        SwAV, a correlation distance.
    size : int
        Side in pixels for PixCorr and SSIM (425 as MindEye).
    baselines : mapping of str to ndarray, optional
        Trivial reconstructions scored the same way, one column each, e.g.
        ``{"mean training image": img (H, W, 3) or (n, H, W, 3), "shuffled latents": recons
        (n, S, H, W, 3) made from shuffled decoded latents}``. A single image stands for every
        original (its features are computed once).
    ssim_variant : {"2d", "columns"}
        See :func:`~nipype_brainrecon.evaluation.pixelwise.ssim`.
    seed : int
        Seeds the mismatched pairing.
    batch_size : int
        Originals processed at once for PixCorr and SSIM.
    per_image : bool
        Also return a per-image table (rows: originals; columns: metrics, mean over samples).
    n_permutations, n_boot : int
        Permutations of the test-set labels for the null of each identification score, and
        bootstrap resamples of the images for its confidence interval (1,000 each).
    resampling_seed : int
        Seeds the permutations and the bootstrap (the same draws for every row).

    Returns
    -------
    pandas.DataFrame
        One row per metric (index: its label, e.g. ``"PixCorr"``, ``"SSIM"``,
        ``"AlexNet(2) 2-way (mindeye)"``, ``"SwAV distance"``) with columns ``features``,
        ``score`` (``pixcorr``, ``ssim``, ``two-way``, ``distance``), ``rule``, ``better``
        (``higher``/``lower``), ``value`` (the reconstructions' mean), ``chance`` (0.5 for
        two-way identification; NaN where no analytic chance level exists), ``mismatched``
        (the reconstructions scored against the wrong originals, a seeded derangement: the
        empirical chance level of every metric), ``baseline: NAME`` per baseline, then
        ``null_p95``, ``p_value`` (permutation null: 95th percentile, and (1 + #{null >=
        value}) / (1 + n_permutations)), ``ci_low``, ``ci_high`` (95 % bootstrap interval over
        images), for two-way identification and PixCorr (NaN in other rows).
        ``DataFrame.attrs`` records the settings and each extractor's weights source.
        With ``per_image=True``, ``(table, per_image_table)``.
    """
    check_ssim_options(size, ssim_variant, 1.5)
    orig, rec, _ = check_pairs(originals, reconstructions)
    n, n_samples = rec.shape[:2]
    if n < 2:
        raise DataError(f"originals: {n} image; scoring needs at least 2")
    base = check_baselines(baselines, n, orig.shape[1] / orig.shape[2])
    built: list[FeatureExtractor] = []
    for item in extractors:
        built.append(item if isinstance(item, FeatureExtractor) else get_extractor(item))
    wrong = derangement(n, seed)

    rows = _MetricRows(n, dict(n_permutations=n_permutations, n_boot=n_boot, seed=resampling_seed))
    base_sets = {
        name: check_pairs(orig, imgs, what=f"baseline {name!r}")[1] for name, imgs in base.items()
    }
    _score_pixels(rows, orig, rec, base_sets, wrong, size, ssim_variant, batch_size)
    sources, implementations = {}, {}
    for extractor in built:
        sources[extractor.name] = extractor.source
        implementations[extractor.name] = extractor.implementation or "package"
        _score_features(rows, extractor, orig, rec, base, wrong)

    table = pd.DataFrame(rows.rows).set_index("metric")
    table.attrs = _settings(n, n_samples, size, ssim_variant, seed, sources, list(base))
    table.attrs.update(rows.resampling)
    table.attrs["extractor_implementations"] = implementations
    if not per_image:
        return table
    per_table = pd.DataFrame(rows.per_image, index=pd.RangeIndex(n, name="image"))
    return table, per_table


class _MetricRows:
    """The table's rows and each metric's per-image values, filled one metric at a time."""

    def __init__(self, n: int, resampling: Mapping[str, int]) -> None:
        self.n = n
        self.resampling = {
            "n_permutations": int(resampling["n_permutations"]),
            "n_boot": int(resampling["n_boot"]),
            "resampling_seed": int(resampling["seed"]),
        }
        self.rows: list[dict[str, Any]] = []
        self.per_image: dict[str, np.ndarray] = {}

    def add(
        self,
        label: str,
        *,
        features: str,
        score: str,
        rule: str | None,
        better: str,
        value: np.ndarray,
        chance: float,
        mismatched: np.ndarray,
        base_values: Mapping[str, np.ndarray],
        stats: Mapping[str, float] | None = None,
    ) -> None:
        """One metric: means of the reconstructions', the mismatched and the baselines' scores,
        then the null and CI columns (``stats``; NaN when not given)."""
        row = {
            "metric": label,
            "features": features,
            "score": score,
            "rule": rule,
            "better": better,
            "value": float(np.mean(value)),
            "chance": chance,
            "mismatched": float(np.mean(mismatched)),
        }
        for name, v in base_values.items():
            row[f"baseline: {name}"] = float(np.mean(v))
        for column in NULL_COLUMNS:
            row[column] = float((stats or {}).get(column, np.nan))
        self.rows.append(row)
        self.per_image[label] = np.asarray(value).reshape(self.n, -1).mean(axis=1)


def _score_pixels(
    rows: _MetricRows,
    orig: np.ndarray,
    rec: np.ndarray,
    base_sets: Mapping[str, np.ndarray],
    wrong: np.ndarray,
    size: int,
    ssim_variant: SSIMVariant,
    batch_size: int,
) -> None:
    """PixCorr and SSIM of the reconstructions, the mismatched pairs and each baseline."""
    scorers = {
        "PixCorr": lambda r, order=None: pixcorr_scores(orig, r, size, batch_size, order),
        "SSIM": lambda r, order=None: ssim_scores(
            orig, r, size, ssim_variant, 1.5, batch_size, order
        ),
    }
    for label, score in scorers.items():
        rows.add(
            label,
            features="pixels",
            score=label.lower(),
            rule=None,
            better="higher",
            value=score(rec),
            chance=float("nan"),
            mismatched=score(rec, wrong),
            base_values={name: score(imgs) for name, imgs in base_sets.items()},
            stats=_pixcorr_null(orig, rec, size, batch_size, rows.resampling)
            if label == "PixCorr"
            else None,
        )


def _pixcorr_null(
    orig: np.ndarray, rec: np.ndarray, size: int, batch_size: int, r: Mapping[str, int]
) -> dict[str, float]:
    """PixCorr's permutation null (test labels permuted: columns of the original x
    reconstruction matrix) and bootstrap CI, as for identification."""
    matrix = pixcorr_matrix(orig, rec, size, batch_size)
    null = permutation_null(
        assignment_scorer(matrix),
        len(matrix),
        n_permutations=r["n_permutations"],
        seed=r["resampling_seed"],
    )
    ci = bootstrap_ci(np.diag(matrix), n_boot=r["n_boot"], seed=r["resampling_seed"])
    return {"null_p95": null.p95, "p_value": null.p_value, "ci_low": ci.low, "ci_high": ci.high}


def _features(extractor: FeatureExtractor, images: np.ndarray) -> dict[str, np.ndarray]:
    """Features of (H, W, 3), (n, H, W, 3) or (n, S, H, W, 3) images, keeping the lead axes."""
    if images.ndim == 3:
        return extractor(images[None])  # one image: features once, (1, d)
    lead = images.shape[:-3]
    feats = extractor(images.reshape(-1, *images.shape[-3:]))
    return {k: v.reshape(*lead, -1) for k, v in feats.items()}


def _score_features(
    rows: _MetricRows,
    extractor: FeatureExtractor,
    orig: np.ndarray,
    rec: np.ndarray,
    base: Mapping[str, np.ndarray],
    wrong: np.ndarray,
) -> None:
    """Score each output of ``extractor``: correlation distance or two-way identification."""
    n = len(orig)
    f_orig = extractor(orig)
    f_rec = _features(extractor, rec)
    f_base = {name: _features(extractor, imgs) for name, imgs in base.items()}
    for out, kind in extractor.outputs.items():
        fb = {name: broadcast_rows(f[out], n) for name, f in f_base.items()}
        if kind == "distance":
            _add_distance(rows, out, f_orig[out], f_rec[out], fb, wrong)
        else:
            _add_identification(rows, out, f_orig[out], f_rec[out], fb, base, wrong)


def _add_distance(
    rows: _MetricRows,
    label: str,
    orig: np.ndarray,
    rec: np.ndarray,
    base_feats: Mapping[str, np.ndarray],
    wrong: np.ndarray,
) -> None:
    """Correlation distance of one feature set (lower is better; no analytic chance level)."""
    rows.add(
        f"{label} distance",
        features=label,
        score="distance",
        rule=None,
        better="lower",
        value=correlation_distance(orig, rec),
        chance=float("nan"),
        mismatched=correlation_distance(orig[wrong], rec),
        base_values={name: correlation_distance(orig, f) for name, f in base_feats.items()},
    )


def _add_identification(
    rows: _MetricRows,
    label: str,
    orig: np.ndarray,
    rec: np.ndarray,
    base_feats: Mapping[str, np.ndarray],
    base: Mapping[str, np.ndarray],
    wrong: np.ndarray,
) -> None:
    """Two-way identification of one feature set under each rule (chance 0.5), with its
    permutation null and bootstrap CI."""
    r = rows.resampling
    for rule in IDENTIFICATION_RULES:
        value, stats = identification_with_null(
            orig,
            rec,
            rule=rule,
            n_permutations=r["n_permutations"],
            n_boot=r["n_boot"],
            seed=r["resampling_seed"],
        )
        rows.add(
            f"{label} 2-way ({rule})",
            features=label,
            score="two-way",
            rule=rule,
            better="higher",
            value=value,
            chance=CHANCE_TWO_WAY,
            mismatched=two_way_identification(orig[wrong], rec, rule=rule),
            base_values={
                name: identify_baseline(orig, f, base[name], rule) for name, f in base_feats.items()
            },
            stats=stats,
        )


def _settings(
    n: int,
    n_samples: int,
    size: int,
    ssim_variant: SSIMVariant,
    seed: int,
    sources: Mapping[str, str],
    baselines: list[str],
) -> dict[str, Any]:
    """The table's ``attrs``: the settings, each extractor's weights source, the chance note."""
    return {
        "n_images": int(n),
        "n_samples": int(n_samples),
        "size": int(size),
        "resize": "bilinear, antialiased (torch interpolate); PixCorr/SSIM to size x size, "
        "networks: shorter side to their input size",
        "ssim_variant": ssim_variant,
        "ssim_settings": "gray (rgb2gray weights), gaussian sigma 1.5 truncate 3.5, "
        "population covariance, K1 0.01, K2 0.03, data range 1",
        "mismatched_seed": int(seed),
        "extractor_sources": sources,
        "baselines": baselines,
        "chance_note": "two-way identification: 0.5; PixCorr, SSIM and distances have no "
        "analytic chance level: see 'mismatched' and the baselines",
        "null_note": "identification and PixCorr rows: null_p95 and p_value from permuting which "
        "reconstruction belongs to which original; ci_low/ci_high: percentile bootstrap over "
        "images; ties count one half",
    }
