"""Group level: the per-subject metric tables gathered into one table and the group report.

The group report is one page: a table of subjects by metrics, with the chance level, the
mismatched-pairs level and every baseline beside them, and one figure per metric across
subjects.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from .._version import __version__
from ..derivatives.layout import subject_metrics_name
from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_write_bytes, atomic_write_text
from .figures import plot_group_metric
from .glossary import COLUMNS, column_definition, metric_definition, metric_legend, titled
from .layout import (
    Cell,
    build_sections,
    definition_list,
    error_list_html,
    figure_html,
    html_table,
    macro,
    render_page,
)
from .markup import (
    data_uri,
    escape,
    file_url,
    format_value,
    is_missing,
    relative_url,
)
from .provenance import group_provenance, provenance_html
from .summary import subject_label
from .tables import (
    beats_references,
    better_arrow,
    breakable,
    collect_group_table,
    reference_columns,
    wrap_table,
)

__all__ = [
    "METRICS_PATTERN",
    "group_table",
    "read_subject_metrics",
    "write_group_outputs",
    "write_group_report",
]

#: The participants' metrics tables, named as the derivatives name them.
METRICS_PATTERN = f"sub-*/{subject_metrics_name('*')}"


def read_subject_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """Read one subject's metrics table (one row per metric, indexed by metric name)."""
    table = pd.read_csv(path, sep="\t")
    if "metric" not in table.columns:
        raise MissingInputError(f"{path}: not a metrics table (no 'metric' column)")
    return table.set_index("metric")


def group_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Subjects × metrics, followed by chance and baseline rows (means over subjects).

    The ``row`` column says what each row is: ``subject``, ``chance`` or ``baseline``.

    Examples
    --------
    >>> t = pd.DataFrame({"value": [0.9], "chance": [0.5], "baseline: mean": [0.6]},
    ...                  index=pd.Index(["2-way"], name="metric"))
    >>> group_table({"01": t, "02": t}).to_dict(orient="list")["2-way"]
    [0.9, 0.9, 0.5, 0.6]
    """
    rows = []
    metrics: list[str] = []
    for table in tables.values():
        metrics += [m for m in table.index if m not in metrics]
    for subject, table in sorted(tables.items()):
        rows.append({"participant_id": f"sub-{subject}", "row": "subject", **table["value"]})
    first = next(iter(tables.values()))
    if "chance" in first.columns:
        rows.append({"participant_id": "n/a", "row": "chance", **first["chance"]})
    for column in [c for c in first.columns if c.startswith("baseline:")]:
        means = pd.concat([t[column] for t in tables.values()], axis=1).mean(axis=1)
        rows.append({"participant_id": "n/a", "row": column, **means})
    return pd.DataFrame(rows, columns=["participant_id", "row", *metrics])


def write_group_outputs(
    output_dir: str | os.PathLike, *, participants: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write ``group_metrics.tsv`` (+ ``.json``) and ``group.html`` at the derivatives root."""
    out = Path(output_dir)
    paths = sorted(out.glob(METRICS_PATTERN))
    wanted = {p.removeprefix("sub-") for p in participants} if participants else None
    tables, files = {}, {}
    for path in paths:
        subject = path.parent.name.removeprefix("sub-")
        if wanted is None or subject in wanted:
            tables[subject] = read_subject_metrics(path)
            files[subject] = path
    if not tables:
        raise MissingInputError(
            f"{out}: no per-subject metrics found ({METRICS_PATTERN}); run the participant "
            "level first"
        )
    if wanted and wanted - set(tables):
        raise MissingInputError(
            f"{out}: no metrics for participant(s) {sorted(wanted - set(tables))}; run the "
            "participant level for them first"
        )
    table = group_table(tables)
    tsv = out / "group_metrics.tsv"
    atomic_write_text(tsv, table.to_csv(sep="\t", index=False, na_rep="n/a"))
    atomic_write_text(
        out / "group_metrics.json",
        json.dumps(
            {
                "Description": "Reconstruction metrics per participant; 'row' marks the "
                "chance level and the baselines (means over participants)",
                "Participants": sorted(tables),
            },
            indent=2,
        )
        + "\n",
    )
    report = write_group_report(
        collect_group_table(files),
        out / "group.html",
        subjects_reports={s: f"sub-{s}.html" for s in sorted(tables)},
        provenance=group_provenance(out, sorted(tables)),
    )
    return {"table": tsv, "report": Path(report)}


# --------------------------------------------------------------------------------------------
# The group report
# --------------------------------------------------------------------------------------------


def _long_group_table(table: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise UsageError(f"table: a {type(table).__name__}; give a pandas DataFrame")
    long = table.copy()
    if "metric" not in long.columns and long.index.name == "metric":
        long = long.reset_index()
    missing = [c for c in ("subject", "metric", "value") if c not in long.columns]
    if missing:
        raise DataError(
            f"table: no column(s) {', '.join(missing)}; give one row per subject and metric "
            "(e.g. from collect_group_table)"
        )
    if long.empty:
        raise DataError("table: no rows; give at least one subject's metrics")
    long["subject"] = long["subject"].map(subject_label)
    long["metric"] = long["metric"].astype(str)
    dup = long.duplicated(["subject", "metric"])
    if dup.any():
        first = long.loc[dup].iloc[0]
        raise DataError(
            f"table: subject {first['subject']!r} has metric {first['metric']!r} more than "
            "once; give one row per subject and metric"
        )
    for col in ["value"] + reference_columns(long.columns):
        long[col] = pd.to_numeric(long[col], errors="coerce")
    return long


def _group_figure_name(metric: str) -> str:
    # A BIDS label (alphanumeric), e.g. "Pixels 2-way (takagi)" -> "Pixels2WayTakagi".
    slug = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", metric)) or "metric"
    return f"group_desc-{slug}_scores.svg"


@dataclass(frozen=True)
class _Group:
    """The group table, laid out for the page."""

    base: Path  # the page's folder: links are relative to it
    metrics: list[str]
    subjects: list[str]
    wide: pd.DataFrame  # subjects by metrics
    refs: list[str]  # reference columns
    ref_means: pd.DataFrame  # metrics by reference columns, means over subjects
    better: pd.Series  # per metric
    reports: dict[str, str | os.PathLike]  # subject label: its report

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        base: Path,
        subjects_reports: Mapping[str, str | os.PathLike] | None,
    ) -> _Group:
        long = _long_group_table(table)
        metrics = list(dict.fromkeys(long["metric"]))
        subjects = list(dict.fromkeys(long["subject"]))
        wide = long.pivot(index="subject", columns="metric", values="value").reindex(
            index=subjects, columns=metrics
        )
        refs = reference_columns(long.columns)
        by_metric = long.groupby("metric", sort=False)
        better = (
            by_metric["better"].first().reindex(metrics)
            if "better" in long.columns
            else pd.Series(index=metrics, dtype=object)
        )
        return cls(
            base=base,
            metrics=metrics,
            subjects=subjects,
            wide=wide,
            refs=refs,
            ref_means=by_metric[refs].mean().reindex(metrics),
            better=better,
            reports={subject_label(k): v for k, v in (subjects_reports or {}).items()},
        )

    def subject_cell(self, subject: str) -> str:
        """The subject's label, linked to its report when there is one."""
        target = self.reports.get(subject)
        if not target:
            return escape(f"sub-{subject}")
        href = (
            file_url(target, self.base)
            if os.path.isabs(target)
            else quote(str(target).replace(os.sep, "/"), safe="/#%")
        )
        return f'<a href="{escape(href)}">{escape(f"sub-{subject}")}</a>'


def _mean_cell(group: _Group, metric: str) -> Cell:
    """Mean ± s.d. over subjects, green when the mean beats every reference."""
    vals = group.wide[metric].dropna()
    if vals.empty:
        return format_value(None)
    sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    text = f"{float(vals.mean()):.3f} &plusmn; {sd:.3f}"
    row = pd.Series(
        {"value": float(vals.mean()), "better": group.better[metric], **group.ref_means.loc[metric]}
    )
    return (text, "beats") if beats_references(row, group.refs) else text


def _table_section(group: _Group) -> str:
    """Metrics by rows: the mean over subjects beside every reference level, then each subject
    (so the table stays narrow; with many subjects it scrolls inside its box)."""
    n = len(group.subjects)
    refs = [ref if ref == "chance" else f"{ref} (mean)" for ref in group.refs]
    header = [
        "Metric",
        titled("Better", COLUMNS["Better"]),
        titled(f"Mean &plusmn; s.d.<br>(n = {n})", "mean and standard deviation over subjects"),
        *(
            titled(escape(r), column_definition(ref))
            for r, ref in zip(refs, group.refs, strict=True)
        ),
        *(group.subject_cell(s) for s in group.subjects),
    ]
    rows: list[list[Cell]] = []
    for m in group.metrics:
        cells: list[Cell] = [titled(breakable(m), metric_definition(m))]
        cells.append(better_arrow(group.better[m], compact=True))
        cells.append(_mean_cell(group, m))
        cells += [(format_value(group.ref_means.loc[m, r]), "reference") for r in group.refs]
        cells += [format_value(group.wide.loc[s, m]) for s in group.subjects]
        rows.append(cells)
    note = macro("group.html", "table_note")()
    table = html_table(header, rows, id_="group-metrics", cls="metrics")
    legend = metric_legend(
        [(m, {"better": group.better[m]}) for m in group.metrics], ["Better", *group.refs]
    )
    return wrap_table(table) + str(note) + legend


def _figures_section(
    group: _Group, figures_dir: str | os.PathLike | None, problems: list[str]
) -> str:
    figures = []
    for m in group.metrics:
        try:
            svg = plot_group_metric(
                group.wide[m],
                {r: group.ref_means.loc[m, r] for r in group.refs},
                title=m,
                better=None if is_missing(group.better[m]) else str(group.better[m]),
            )
            if figures_dir is not None:
                path = atomic_write_bytes(Path(figures_dir) / _group_figure_name(m), svg)
                src = relative_url(path, group.base)
            else:
                src = data_uri(svg, "image/svg+xml")
            figures.append(figure_html(src, f"{m} across subjects"))
        except Exception as exc:  # one bad metric must not hide the others
            problems.append(f"report: figure of {m}: {exc}")
    return f'<div class="metric-figures">{"".join(figures)}</div>'


def _summary_section(group: _Group) -> str:
    items = [
        ("Subjects", escape(len(group.subjects))),
        ("Metrics", escape(len(group.metrics))),
        ("Reference levels", escape(", ".join(group.refs)) or "none"),
    ]
    if group.reports:
        links = ", ".join(group.subject_cell(s) for s in group.subjects if s in group.reports)
        items.append(("Subject reports", links or "none"))
    return definition_list(items)


def _about_section(provenance: Mapping[str, Any], base: Path) -> str:
    prov = {**dict(provenance or {}), "report": f"nipype_brainrecon.reports {__version__}"}
    return provenance_html(prov, base)


def write_group_report(
    table: pd.DataFrame,
    out_html: str | os.PathLike,
    *,
    subjects_reports: Mapping[str, str | os.PathLike] | None = None,
    provenance: Mapping[str, Any],
    figures_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the group report: subjects by metrics beside chance and baselines, and figures.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject and metric: columns ``subject``, ``metric`` (or the index named
        ``metric``), ``value`` and optionally ``better``, ``chance``, ``mismatched`` and
        ``baseline: NAME`` (see :func:`~nipype_brainrecon.reports.tables.collect_group_table`).
    out_html : path
        The page, e.g. ``<derivatives>/group.html``.
    subjects_reports : mapping of subject label to path or relative URL, optional
        Each subject's report, linked from its row (absolute paths are made relative).
    provenance : mapping
        Software, version, command, settings...: shown in About.
    figures_dir : path, optional
        Write one SVG per metric there and link it; by default the figures are embedded in
        the page.

    Returns
    -------
    pathlib.Path
        ``out_html``.
    """
    out_html = Path(os.path.abspath(out_html))
    group = _Group.from_table(table, out_html.parent, subjects_reports)
    problems: list[str] = []
    sections = build_sections(
        [
            ("Summary", "summary", lambda: _summary_section(group)),
            ("Metrics", "metrics", lambda: _table_section(group)),
            ("Figures", "figures", lambda: _figures_section(group, figures_dir, problems)),
            ("Provenance", "provenance", lambda: _about_section(provenance, group.base)),
        ],
        problems,
    )
    alert = ""
    if problems:
        sections.append(("Errors", "errors", error_list_html(problems, group.base)))
        alert = str(macro("group.html", "error_banner")())
    n = len(group.subjects)
    page = render_page(
        "Group: nipype-brainrecon report",
        f"Group report: {n} subject{'s' if n != 1 else ''}",
        sections,
        alert=alert,
    )
    return atomic_write_text(out_html, page)
