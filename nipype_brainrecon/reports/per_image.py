"""Per-image scores in the participant report: a sortable table of the test images and their
scores, and the best and worst images by the headline metric.

The scores come from the per-image table of :func:`nipype_brainrecon.evaluation.evaluate`
(``per_image=True``: one row per test image, one column per metric, the mean over samples),
saved as a TSV with a ``stim_id`` column and named by the summary's ``per_image`` key. Rows are
matched to ``test_stimuli`` by ``stim_id`` (or by order when the table has none). Images are
labelled as in the reconstructions' file names (the ``stim`` entity), samples by the ``sample``
entity, so the page and the files use the same names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..derivatives.layout import label as bids_label
from ..errors import DataError, MissingInputError
from .glossary import COLUMNS, FEATURES, metric_definition, metric_parts, titled
from .layout import macro
from .markup import escape, format_value, is_missing
from .summary import TestStimulus

__all__ = [
    "ImageScores",
    "file_entity",
    "per_image_section",
    "read_per_image",
    "sample_label",
    "stimulus_label",
]

_ENTITY = re.compile(r"(?:^|_)(?P<key>[a-zA-Z]+)-(?P<value>[a-zA-Z0-9]+)(?=_|\.|$)")


def file_entity(path: Any, key: str) -> str | None:
    """The value of the BIDS entity ``key`` in a file's name; None when absent.

    Examples
    --------
    >>> file_entity("recon/sub-01_stim-stim0028_sample-3_recon.png", "sample")
    '3'
    >>> file_entity("sub-01_recon.png", "stim") is None
    True
    """
    if not path:
        return None
    for match in _ENTITY.finditer(Path(str(path)).name):
        if match["key"] == key:
            return match["value"]
    return None


def stimulus_label(item: TestStimulus, index: int) -> str:
    """A test image's label as in its reconstructions' file names (``stim-<label>``); else the
    BIDS label of its ``stim_id``; else its position."""
    for path in item.reconstructions:
        found = file_entity(path, "stim")
        if found:
            return found
    return bids_label(str(item.stim_id)) if item.stim_id is not None else str(index)


def sample_label(path: Any, index: int) -> str:
    """A sample's number as in its file name (``sample-<n>``); else its position from 0."""
    return file_entity(path, "sample") or str(index)


@dataclass(frozen=True)
class ImageScores:
    """Per-image scores, rows in the order of ``test_stimuli``."""

    labels: list[str]  # as in the file names
    stim_ids: list[str]
    items: list[TestStimulus | None]
    scores: pd.DataFrame  # rows: images (in order), columns: metrics


def read_per_image(path: str | os.PathLike, stimuli: Sequence[TestStimulus]) -> ImageScores:
    """Read the per-image TSV and match its rows to the test stimuli."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: per-image scores not found")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"stim_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as a TSV table ({exc})") from exc
    by_id = {str(s.stim_id): (k, s) for k, s in enumerate(stimuli) if s.stim_id is not None}
    if "stim_id" in table.columns:
        ids = table.pop("stim_id").astype(str).tolist()
    else:
        if len(table) != len(stimuli):
            raise DataError(
                f"{path}: {len(table)} rows but {len(stimuli)} test stimuli and no 'stim_id' "
                "column; write the stim_id of each row"
            )
        ids = [str(s.stim_id) for s in stimuli]
    table = table.drop(columns=[c for c in ("image", "Unnamed: 0") if c in table.columns])
    labels, items = [], []
    for k, sid in enumerate(ids):
        index, item = by_id.get(sid, (k, None))
        labels.append(stimulus_label(item, index) if item else bids_label(sid))
        items.append(item)
    scores = table.apply(pd.to_numeric, errors="coerce").reset_index(drop=True)
    return ImageScores(labels=labels, stim_ids=ids, items=items, scores=scores)


def _order(values: pd.Series, lower_better: bool) -> list[int]:
    """Row positions from best to worst (missing last; ties by position: stable)."""
    v = values.to_numpy(dtype=float)
    key = np.where(np.isnan(v), np.inf, v if lower_better else -v)
    return [int(i) for i in np.argsort(key, kind="stable")]


def per_image_section(
    data: ImageScores,
    metric: str | None,
    better: Any,
    image_src: Callable[[Any], str | None],
) -> str:
    """The per-image table, sorted best first by ``metric``, and the best and worst images."""
    columns = list(data.scores.columns)
    metric = metric if metric in columns else (columns[0] if columns else None)
    lower = str(better) == "lower"
    order = _order(data.scores[metric], lower) if metric else list(range(len(data.labels)))
    sort = {metric: "ascending" if lower else "descending"}
    header = _header(columns, sort)
    rows = []
    for i in order:
        name = f"stim-{data.labels[i]}"
        cells = [(escape(name), name)]
        for c in columns:
            value = data.scores.at[i, c]
            key = "" if is_missing(value) else repr(float(value))
            cells.append((format_value(value), key))
        title = f"stim_id {data.stim_ids[i]}"
        rows.append((title, cells))
    table = str(macro("participant.html", "per_image_table")(header, rows))
    extremes = _extremes(data, order, metric, image_src)
    note = macro("participant.html", "per_image_note")(metric or "", len(data.labels))
    return str(note) + extremes + table


def _header(columns: list[str], sort: dict[Any, str]) -> list[list[dict[str, Any]]]:
    """Two header rows: a two-way metric under its feature space (``Pixels`` over ``takagi``
    and ``mindeye``), other metrics over both rows; ``col`` is the column the cell sorts by."""

    def cell(html: str, col: int | None, rowspan: int = 1, colspan: int = 1) -> dict[str, Any]:
        key = columns[col - 1] if col else None
        return {
            "html": html,
            "rowspan": rowspan,
            "colspan": colspan,
            "col": col,
            "sort": sort.get(key, "") if col is not None else "",
        }

    top = [cell(titled("Image", COLUMNS["Image"]), 0, rowspan=2)]
    bottom = []
    k = 0
    while k < len(columns):
        features, rule, score = metric_parts(str(columns[k]))
        group = [k]
        while score == "two-way" and rule and k + len(group) < len(columns):
            nxt = metric_parts(str(columns[k + len(group)]))
            if nxt[0] != features or nxt[2] != "two-way" or not nxt[1]:
                break
            group.append(k + len(group))
        if score == "two-way" and rule:
            title = f"two-way identification on {features}: " + FEATURES.get(features or "", "")
            top.append(
                cell(
                    titled(f'{escape(features)} <span class="nb">2-way</span>', title),
                    None,
                    colspan=len(group),
                )
            )
            for j in group:
                text = str(columns[j])
                bottom.append(
                    cell(titled(escape(metric_parts(text)[1]), metric_definition(text)), j + 1)
                )
        else:
            text = str(columns[k])
            top.append(cell(titled(escape(text), metric_definition(text)), k + 1, rowspan=2))
        k += len(group)
    return [top, bottom] if bottom else [[{**c, "rowspan": 1} for c in top]]


def _extremes(
    data: ImageScores, order: list[int], metric: str | None, image_src: Callable[[Any], str | None]
) -> str:
    """The best and worst images (at most 3 each; none when fewer than 2 images)."""
    n = min(3, len(order) // 2)
    if not metric or n == 0:
        return ""
    groups = []
    for name, picks in (("Best", order[:n]), ("Worst", order[::-1][:n])):
        cells = []
        for i in picks:
            item = data.items[i]
            stim = image_src(item.stimulus) if item and item.stimulus else None
            first = item.reconstructions[0] if item and item.reconstructions else None
            recon = image_src(first) if first else None
            sample = sample_label(first, 0) if first else ""
            cells.append(
                {
                    "label": data.labels[i],
                    "score": format_value(data.scores.at[i, metric]),
                    "stimulus": stim,
                    "recon": recon,
                    "sample": sample,
                }
            )
        groups.append((name, cells))
    return str(macro("participant.html", "extremes")(metric, groups))
