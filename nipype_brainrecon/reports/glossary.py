"""What every metric, feature space and column of the reports means, said in the page.

The definitions are short versions of ``docs/evaluation.md`` (its sections "The table",
"Metrics and their settings", "Feature extractors" and "Nulls and confidence intervals"), which
the pages name since the documentation has no published address. Each table header carries its
definition as a ``title`` (shown on hover) and a legend below the table lists the terms used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .layout import definition_list
from .markup import escape, is_missing

__all__ = [
    "COLUMNS",
    "DECODING_COLUMNS",
    "DOCS",
    "FEATURES",
    "RULES",
    "column_definition",
    "legend_html",
    "metric_definition",
    "metric_legend",
    "metric_parts",
    "titled",
]

#: Where the full definitions are (the docs have no published URL: named, not linked).
DOCS = "docs/evaluation.md"

#: Feature spaces of the identification metrics (the ``features`` column).
FEATURES = {
    "Pixels": "the RGB pixels of the images at 64 px",
    "LowLevel(energy)": "oriented edge energy: Gaussian-derivative filters at 3 scales and "
    "4 orientations, pooled on an 8 × 8 grid (a low-level, V1-like description)",
    "LowLevel(colour)": "per-channel 16-bin colour histograms (dominated by the background "
    "shade; not a semantic measure)",
    "Scene(colours)": "each object colour's share of the object pixels plus the background "
    "colour: what the captions of the simulated stimuli name (the semantic metric of the "
    "simulation; meaningless on natural images)",
    "AlexNet(2)": "AlexNet layer features.4 (early convolutional features)",
    "AlexNet(5)": "AlexNet layer features.11 (late convolutional features)",
    "InceptionV3": "Inception v3 average-pooled features (2,048-d)",
    "CLIP": "CLIP image embeddings (semantic)",
    "EffNet-B1": "EfficientNet-B1 average-pooled features (1,280-d)",
    "SwAV": "SwAV ResNet-50 average-pooled features (2,048-d)",
}

#: The two rules of two-way identification.
RULES = {
    "takagi": "Takagi's rule: for each test image, how often the mean correlation of its own "
    "reconstructions with it beats that of another image's reconstructions (chance 0.5)",
    "mindeye": "MindEye's rule: for each reconstruction, how often it correlates more with its "
    "own image than with another test image (chance 0.5)",
}

#: Metrics that are not feature-space identifications.
_METRICS = {
    "PixCorr": "Pearson r between the pixels of each test image and its reconstruction at "
    "425 px, mean over images and samples (no analytic chance level)",
    "SSIM": "structural similarity of the gray images at 425 px (1 = identical; no analytic "
    "chance level)",
}

#: Columns of the metrics tables (participant and group) and of the per-image table.
COLUMNS = {
    "Metric": "what was compared and how; the legend below defines each",
    "Better": "whether higher or lower values are better",
    "Reconstructions": "the score of the reconstructions: mean over test images and samples",
    "chance": "the analytic chance level (0.5 for two-way identification; none for PixCorr, "
    "SSIM and distances)",
    "mismatched": "the reconstructions scored against the wrong test images: the empirical "
    "chance level of every metric",
    "baseline": "a trivial reconstruction scored the same way",
    "null 95%": "95th percentile of the permutation null (test-image labels shuffled 1,000 "
    "times): a score above it is significant at p < 0.05",
    "p": "permutation p-value, (1 + #{null ≥ score}) / (1 + permutations)",
    "95% CI": "95 % bootstrap confidence interval of the score over test images",
    "Image": "the test image, labelled as in the file names (stim-<label>)",
}

#: Columns of the decoding table (key in the decoding scores, header, definition).
DECODING_COLUMNS = (
    ("roi", "ROI", "the region of interest the target was decoded from"),
    ("n_voxels", "Voxels", "voxels in the ROI (the decoder's inputs)"),
    ("n_targets", "Outputs", "values decoded per stimulus (the feature's size)"),
    ("n_stimuli", "Test stimuli", "held-out test stimuli the scores are computed on"),
    (
        "identification",
        "2-way identification",
        "how often a decoded vector correlates more with its own stimulus's features than with "
        "another's (Takagi's rule)",
    ),
    ("identification_chance", "chance", "chance level of two-way identification (0.5)"),
    ("identification_null_p95", "null 95%", COLUMNS["null 95%"]),
    ("identification_p_value", "p", COLUMNS["p"]),
    (
        "target_r_mean",
        "Feature r",
        "Pearson r across test stimuli between decoded and true values, mean over outputs",
    ),
    ("target_r_chance", "chance", "chance level of feature r (0)"),
    ("target_r_null_p95", "null 95%", COLUMNS["null 95%"]),
    ("target_r_p_value", "p", COLUMNS["p"]),
    (
        "pattern_r_mean",
        "Pattern r",
        "Pearson r between the decoded and the true feature vector, mean over stimuli",
    ),
    (
        "baseline_pattern_r_mean",
        "baseline",
        "pattern r of a constant prediction (the mean training feature)",
    ),
    ("pattern_r_null_p95", "null 95%", COLUMNS["null 95%"]),
    ("pattern_r_p_value", "p", COLUMNS["p"]),
)

#: What the decoding targets are.
TARGETS = {
    "z": "the image's latent in the diffusion model's autoencoder (VAE): layout and colours",
    "c": "the embedding of the image's captions by the model's text encoder: its meaning",
}

_IDENT = re.compile(r"^(?P<features>.+) 2-way \((?P<rule>\w+)\)$")
_DIST = re.compile(r"^(?P<features>.+) distance$")


def metric_parts(
    label: str, row: Mapping[str, Any] | None = None
) -> tuple[str | None, str | None, str]:
    """(features, rule, score) of a metric, from its row or else its label.

    Examples
    --------
    >>> metric_parts("LowLevel(energy) 2-way (mindeye)")
    ('LowLevel(energy)', 'mindeye', 'two-way')
    """
    row = {} if row is None else row
    features = row.get("features")
    rule = row.get("rule")
    score = str(row.get("score") or "")
    match = _IDENT.match(label)
    if match:
        features = features if not is_missing(features) else match["features"]
        rule = rule if not is_missing(rule) else match["rule"]
        score = score or "two-way"
    elif _DIST.match(label):
        features = features if not is_missing(features) else _DIST.match(label)["features"]
        score = score or "distance"
    features = None if is_missing(features) else str(features)
    rule = None if is_missing(rule) else str(rule)
    return features, rule, score


def metric_definition(label: str, row: Mapping[str, Any] | None = None) -> str:
    """One sentence (plain text) saying what a metric of the metrics table measures.

    Examples
    --------
    >>> metric_definition("Pixels 2-way (takagi)").split(":")[0]
    "two-way identification on Pixels (the RGB pixels of the images at 64 px) with Takagi's rule"
    """
    if label in _METRICS:
        return _METRICS[label]
    features, rule, score = metric_parts(label, row)
    space = f"{features} ({FEATURES[features]})" if features in FEATURES else str(features)
    if score == "two-way":
        how = {"takagi": "Takagi's rule", "mindeye": "MindEye's rule"}.get(rule or "", rule)
        return (
            f"two-way identification on {space} with {how}: "
            + RULES.get(rule or "", "how often the right image is picked (chance 0.5)").split(
                ": ", 1
            )[-1]
        )
    if score == "distance":
        return f"1 − Pearson r between the {space} features of each image and its reconstructions"
    return label


def titled(html_text: str, definition: str) -> str:
    """Pre-escaped text with its definition as a hover title (as is when none)."""
    if not definition:
        return html_text
    return f'<span class="term" title="{escape(definition)}">{html_text}</span>'


def column_definition(column: str) -> str:
    """The definition of a column of a metrics table (``baseline: NAME`` included)."""
    if column.startswith("baseline:"):
        return f"{COLUMNS['baseline']}: {column.split(':', 1)[1].strip()}"
    return COLUMNS.get(column, "")


def legend_html(items: Iterable[tuple[str, str]], *, id_: str = "") -> str:
    """A legend: a definition list of (plain term, plain definition), escaped, in a box."""
    pairs = [(escape(term), escape(text)) for term, text in items if text]
    attr = f' id="{escape(id_)}"' if id_ else ""
    return f'<div class="legend"{attr}>{definition_list(pairs)}</div>'


def metric_legend(
    rows: Iterable[tuple[str, Mapping[str, Any]]], columns: Iterable[str], *, id_: str = ""
) -> str:
    """The legend of a metrics table: its columns, then each feature space, rule and metric
    used, then where the full definitions are."""
    items = [(c, column_definition(c)) for c in columns]
    spaces: dict[str, str] = {}
    rules: dict[str, str] = {}
    others: dict[str, str] = {}
    for label, row in rows:
        features, rule, _ = metric_parts(label, row)
        if label in _METRICS:
            others[label] = _METRICS[label]
        elif features:
            spaces[features] = FEATURES.get(features, "")
        if rule:
            rules[f"{rule} (rule)"] = RULES.get(rule, "")
    items += [*others.items(), *spaces.items(), *rules.items()]
    items.append(("Definitions", f"{DOCS} of the nipype-brainrecon documentation"))
    return legend_html(items, id_=id_)
