"""The headline of a participant report: one sentence saying what was decoded from where and
how well the reconstructions identify their images, against chance, the mismatched pairs and
the permutation null; computed from the very numbers the tables show.

The reconstruction score named is the *headline metric* (:func:`headline_metric`): the last
two-way identification row with Takagi's rule in the metrics table (the extractors run from
low-level to semantic, so the last is the highest-level feature space), else the last two-way
row, else the first row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .markup import escape, format_value, is_missing
from .summary import ParticipantSummary
from .tables import p_text

__all__ = ["DecodedTarget", "Headline", "headline", "headline_metric"]


@dataclass(frozen=True)
class DecodedTarget:
    """One decoded target as the headline names it."""

    target: str
    roi: str | None
    n_voxels: Any
    identification: Any
    chance: Any


@dataclass(frozen=True)
class Headline:
    """The numbers of the headline sentence (each as the tables show it: :func:`format_value`)."""

    decoded: tuple[DecodedTarget, ...]
    metric: str | None = None
    row: Mapping[str, Any] | None = None
    n_images: int | None = None
    n_samples: int | None = None

    def html(self) -> str:
        """The sentence, escaped, in a ``<p id="headline">``."""
        parts = []
        if self.decoded:
            parts.append(_decoded_text(self.decoded) + ".")
        if self.metric is not None and self.row is not None:
            parts.append(_metric_text(self.metric, self.row, self.n_images, self.n_samples))
        if not parts:
            return ""
        return f'<p class="headline" id="headline">{" ".join(parts)}</p>'


def _decoded_text(decoded: tuple[DecodedTarget, ...]) -> str:
    pieces = []
    for k, d in enumerate(decoded):
        where = escape(d.roi or "its ROI")
        if not is_missing(d.n_voxels):
            where += f" ({format_value(d.n_voxels)} voxels)"
        text = f"<strong>{escape(d.target)}</strong> decoded from {where}"
        if not is_missing(d.identification):
            chance = "" if is_missing(d.chance) else f", chance {format_value(d.chance)}"
            text += f", two-way identification {format_value(d.identification)}{chance}"
        pieces.append(text if k == 0 else text.replace(" decoded", "", 1))
    return "; ".join(pieces)


def _metric_text(
    metric: str, row: Mapping[str, Any], n_images: int | None, n_samples: int | None
) -> str:
    refs = [
        f"{name} {format_value(row.get(key))}"
        for key, name in (("chance", "chance"), ("mismatched", "mismatched pairs"))
        if not is_missing(row.get(key))
    ]
    if not is_missing(row.get("null_p95")):
        refs.append(f"null 95th percentile {format_value(row.get('null_p95'))}")
    if not is_missing(row.get("p_value")):
        p = p_text(row.get("p_value"))
        refs.append(f"p {p}" if p.startswith("&lt;") else f"p = {p}")
    against = f" ({', '.join(refs)})" if refs else ""
    on = ""
    if n_images:
        on = f" on {n_images} test image{'s' if n_images != 1 else ''}"
        if n_samples:
            on += f", {n_samples} sample{'s' if n_samples != 1 else ''} each"
    return (
        f'Reconstructions: <a href="#metrics">{escape(metric)}</a> '
        f"<strong>{format_value(row.get('value'))}</strong>{against}{on}."
    )


def headline_metric(table: pd.DataFrame) -> str | None:
    """The metric the headline names (see the module docstring); None for an empty table."""
    if table is None or table.empty:
        return None
    labels = [str(m) for m in table.index]
    score = (
        table["score"].astype(str) if "score" in table.columns else pd.Series("", index=table.index)
    )
    rule = (
        table["rule"].astype(str) if "rule" in table.columns else pd.Series("", index=table.index)
    )
    two_way = [str(m) for m in table.index if score[m] == "two-way" or " 2-way (" in str(m)]
    takagi = [m for m in two_way if rule[m] == "takagi" or m.endswith("(takagi)")]
    return (takagi or two_way or labels)[-1]


def headline(summary: ParticipantSummary, table: pd.DataFrame | None) -> Headline:
    """The headline of ``summary`` with the metrics ``table`` (None when unreadable)."""
    rois = {r.target: r for r in summary.rois}
    decoded = []
    for target, scores in summary.decoding.items():
        roi = rois.get(target)
        decoded.append(
            DecodedTarget(
                target=target,
                roi=str(scores.get("roi") or (roi.name if roi else "") or "") or None,
                n_voxels=scores.get("n_voxels", roi.n_voxels if roi else None),
                identification=scores.get("identification"),
                chance=scores.get("identification_chance"),
            )
        )
    metric = headline_metric(table) if table is not None else None
    n_images = len(summary.test_stimuli) or None
    n_samples = max((len(s.reconstructions) for s in summary.test_stimuli), default=0) or None
    return Headline(
        decoded=tuple(decoded),
        metric=metric,
        row=table.loc[metric] if metric is not None else None,
        n_images=n_images,
        n_samples=n_samples,
    )
