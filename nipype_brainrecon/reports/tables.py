"""Metrics tables: reading a participant's, stacking them for the group, and the HTML table
that sets each value beside chance, the mismatched level and the baselines."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError, MissingInputError, UsageError
from .layout import Cell, html_table
from .markup import escape, format_value, is_missing
from .summary import subject_label

__all__ = [
    "beats_references",
    "better_arrow",
    "collect_group_table",
    "metrics_html",
    "read_metrics_table",
    "reference_columns",
]


def read_metrics_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a metrics TSV written from :func:`nipype_brainrecon.evaluation.evaluate`.

    Accepts the table written with its index (first column ``metric``, or unnamed) or with a
    ``metric`` column. ``n/a`` cells are NaN.

    Returns
    -------
    pandas.DataFrame
        Indexed by metric label, with at least a ``value`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: metrics table not found")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as a TSV table ({exc})") from exc
    if "metric" in table.columns:
        table = table.set_index("metric")
    elif len(table.columns) and str(table.columns[0]).startswith("Unnamed"):
        table = table.set_index(table.columns[0]).rename_axis("metric")
    else:
        raise DataError(
            f"{path}: no 'metric' column; write the table of evaluate() with its index "
            "(table.to_csv(path, sep='\\t'))"
        )
    if "value" not in table.columns:
        raise DataError(f"{path}: no 'value' column; expected the table of evaluate()")
    table.index = table.index.astype(str)
    return table


def collect_group_table(metrics_files: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """Stack the participants' metrics tables into one long table for the group report.

    Parameters
    ----------
    metrics_files : mapping of subject label to path
        Each subject's metrics TSV (see :func:`read_metrics_table`).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``metric`` and those of the tables (``value``, ``chance``,
        ``mismatched``, ``baseline: NAME``, ``better``, ...), one row per subject and metric.
    """
    if not metrics_files:
        raise UsageError("metrics_files: no subject given; give at least one metrics table")
    parts = []
    for subject, path in metrics_files.items():
        table = read_metrics_table(path).reset_index()
        table.insert(0, "subject", subject_label(subject))
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def beats_references(row: pd.Series, references: Sequence[str]) -> bool:
    """Whether a metric's value is better than every finite reference level in ``row``."""
    value = row.get("value")
    if is_missing(value):
        return False
    lower = str(row.get("better", "higher")) == "lower"
    levels = [float(row[c]) for c in references if c in row and not is_missing(row[c])]
    if not levels:
        return False
    return all((value < lv) if lower else (value > lv) for lv in levels)


def reference_columns(columns: Iterable[str]) -> list[str]:
    """The reference levels among ``columns``: chance, mismatched, then every baseline.

    Examples
    --------
    >>> reference_columns(["value", "baseline: mean image", "chance", "mismatched"])
    ['chance', 'mismatched', 'baseline: mean image']
    """
    cols = list(columns)
    return [c for c in ("chance", "mismatched") if c in cols] + [
        c for c in cols if str(c).startswith("baseline")
    ]


def better_arrow(better: Any) -> str:
    """An arrow and "higher"/"lower" for a metric's ``better`` direction (escaped)."""
    text = "" if is_missing(better) else str(better)
    return {"higher": "&uarr; higher", "lower": "&darr; lower"}.get(text, escape(text))


def metrics_html(table: pd.DataFrame, *, id_: str) -> str:
    """The metrics table: each value beside chance, the mismatched level and every baseline."""
    refs = reference_columns(table.columns)
    header = ["Metric", "Better", "Reconstructions"] + [escape(c) for c in refs]
    rows = []
    for metric, row in table.iterrows():
        value = format_value(row["value"])
        cells: list[Cell] = [escape(metric), better_arrow(row.get("better"))]
        cells.append((value, "beats") if beats_references(row, refs) else value)
        cells += [format_value(row[c]) for c in refs]
        rows.append(cells)
    return html_table(header, rows, id_=id_, cls="metrics")
