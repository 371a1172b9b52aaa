"""Group level: the per-subject metric tables gathered into one table and a group report."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import MissingInputError
from ..io import atomic_write_text

METRICS_PATTERN = "sub-*/sub-*_desc-reconstruction_metrics.tsv"


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
    from . import collect_group_table, write_group_report

    report = write_group_report(
        collect_group_table(files),
        out / "group.html",
        subjects_reports={s: f"sub-{s}.html" for s in sorted(tables)},
        provenance={"participants": sorted(tables)},
    )
    return {"table": tsv, "report": Path(report)}
