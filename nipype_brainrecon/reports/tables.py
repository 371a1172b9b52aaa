"""Metrics tables: reading a participant's, stacking them for the group, and the HTML table
that sets each value beside chance, the mismatched level and the baselines."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError, MissingInputError, UsageError
from .glossary import column_definition, metric_definition, metric_legend, titled
from .layout import Cell, html_table
from .markup import escape, format_value, is_missing
from .summary import subject_label

__all__ = [
    "NULL_HEADERS",
    "beats_references",
    "better_arrow",
    "breakable",
    "ci_text",
    "collect_group_table",
    "metrics_html",
    "null_columns",
    "p_text",
    "read_metrics_table",
    "reference_columns",
    "wrap_table",
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


def better_arrow(better: Any, *, compact: bool = False) -> str:
    """An arrow and "higher"/"lower" for a metric's ``better`` direction (escaped); with
    ``compact``, the arrow alone with the words as its title."""
    text = "" if is_missing(better) else str(better)
    arrow = {"higher": "&uarr;", "lower": "&darr;"}.get(text)
    if arrow is None:
        return escape(text)
    if compact:
        return f'<span class="term" title="{text} is better">{arrow}</span>'
    return f"{arrow} {text}"


def breakable(label: str) -> str:
    """A metric label, escaped, that breaks only between its feature space and its score
    (``LowLevel(energy)`` / ``2-way (mindeye)``), so long labels fit narrow columns.

    Examples
    --------
    >>> breakable("LowLevel(energy) 2-way (mindeye)")
    'LowLevel(energy) <span class="nb">2-way (mindeye)</span>'
    """
    head, sep, tail = label.partition(" 2-way ")
    if not sep:
        return escape(label)
    return f'{escape(head)} <span class="nb">2-way {escape(tail)}</span>'


#: The permutation-null and bootstrap columns of evaluate's table, and their headers.
NULL_HEADERS = (("null_p95", "null 95%"), ("p_value", "p"))


def null_columns(table: pd.DataFrame) -> list[str]:
    """The null columns of ``table`` with a value somewhere (``null_p95``, ``p_value``), and
    ``ci`` when ``ci_low`` and ``ci_high`` have one."""

    def has(c: str) -> bool:
        return c in table.columns and bool(table[c].notna().any())

    cols = [c for c, _ in NULL_HEADERS if has(c)]
    return cols + (["ci"] if has("ci_low") and has("ci_high") else [])


def ci_text(low: Any, high: Any, digits: int = 3) -> str:
    """A confidence interval as ``low–high`` (escaped), a dash when missing.

    Examples
    --------
    >>> ci_text(0.61, 0.705), ci_text(float("nan"), 1.0)
    ('0.610\u20130.705', '<span class="na">&mdash;</span>')
    """
    if is_missing(low) or is_missing(high):
        return format_value(None)
    return f"{float(low):.{digits}f}\u2013{float(high):.{digits}f}"


def p_text(p: Any) -> str:
    """A p-value with 3 decimals, ``< 0.001`` below that, a dash when missing (escaped)."""
    if is_missing(p):
        return format_value(None)
    return "&lt; 0.001" if float(p) < 0.0005 else f"{float(p):.3f}"


def metrics_html(table: pd.DataFrame, *, id_: str, note: str = "") -> str:
    """The metrics table: each value beside chance, the mismatched level, every baseline and,
    for identification, the permutation null and the bootstrap interval; every header and
    metric carries its definition (``title``) and a legend follows."""
    refs = reference_columns(table.columns)
    nulls = null_columns(table)
    null_names = {**dict(NULL_HEADERS), "ci": "95% CI"}
    names = ["Metric", "Better", "Reconstructions", *refs, *(null_names[c] for c in nulls)]
    header = [titled(escape(n), column_definition(n)) for n in names]
    rows = []
    for metric, row in table.iterrows():
        value = format_value(row["value"])
        label = titled(breakable(str(metric)), metric_definition(str(metric), row))
        cells: list[Cell] = [label, better_arrow(row.get("better"), compact=True)]
        cells.append((value, "beats") if beats_references(row, refs) else value)
        cells += [format_value(row[c]) for c in refs]
        for c in nulls:
            if c == "ci":
                cells.append(ci_text(row.get("ci_low"), row.get("ci_high")))
            else:
                cells.append(p_text(row[c]) if c == "p_value" else format_value(row[c]))
        rows.append(cells)
    legend = metric_legend([(str(m), r) for m, r in table.iterrows()], names, id_=f"{id_}-legend")
    return wrap_table(html_table(header, rows, id_=id_, cls="metrics")) + note + legend


def wrap_table(table_html: str) -> str:
    """A table in a box that scrolls sideways when the table is wider than the page."""
    return f'<div class="table-wrap">{table_html}</div>'
