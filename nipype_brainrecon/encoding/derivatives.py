"""Writing the encoding derivatives: maps and the ROI table with BIDS-style names and sidecars."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from .maps import MAP_STATISTICS, map_filename


def _relative(path: Path, root: str | os.PathLike) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def write_encoding_derivatives(
    *,
    output_dir: str | os.PathLike,
    subject: str,
    map_files: Sequence[str | os.PathLike],
    map_names: Sequence[str],
    roi_summary_file: str | os.PathLike,
    spaces: Mapping[str, Any],
    space: str = "T1w",
    task: str | None = None,
    sources: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    unet_info: Mapping[str, Any] | None = None,
    n_train: int = 0,
    n_test: int = 0,
    summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Copy encoding maps and the ROI table into ``sub-<label>/func`` with BIDS-style names.

    Maps: ``sub-<label>[_task-<task>]_space-<space>_desc-<feature><Stat>_statmap.nii.gz``
    with a JSON sidecar (feature space, statistic, chance level, settings, sources); the
    ROI table: ``sub-<label>[_task-<task>]_desc-encoding_rois.tsv`` (+ JSON describing the
    columns). Both are listed in the dataset's ``.bidsignore``. ``sources`` are the inputs'
    ``bids:<dataset>:<path>`` URIs; the settings are recorded portable (the model by its
    identity, paths relative to ``output_dir``).

    Returns
    -------
    dict
        ``summary`` with an ``"encoding"`` entry (paths relative to ``output_dir``, and
        settings) for the report.
    """
    from ..derivatives import copy_file, provenance, write_json

    if len(map_files) != len(map_names):
        raise DataError(f"{len(map_files)} map files for {len(map_names)} names")
    func = Path(output_dir) / f"sub-{subject}" / "func"
    recorded = provenance(settings or {}, output_dir)
    written = []
    for path, name in zip(map_files, map_names, strict=True):
        feature, _, stat = name.rpartition(":")
        dst = copy_file(path, func / map_filename(subject, task, space, name))
        sidecar = {
            "Description": f"Encoding model of {feature}: {MAP_STATISTICS[stat][1]}",
            "FeatureSpace": feature,
            "Statistic": stat,
            "ChanceLevel": 0.0,
            "NumberOfTrainingTrials": int(n_train),
            "NumberOfTestStimuli": int(n_test),
            "Sources": list(sources),
            **recorded,
        }
        if feature in spaces:
            sidecar["NumberOfFeatures"] = spaces[feature].get("n_features")
            sidecar["AlphaCounts"] = spaces[feature].get("alpha_counts")
        if feature.startswith("unet_") and unet_info:
            sidecar["UNet"] = dict(unet_info)
        write_json(dst.with_name(dst.name.replace(".nii.gz", ".json")), sidecar)
        written.append({"feature": feature, "statistic": stat, "path": _relative(dst, output_dir)})
    task_part = f"_task-{task}" if task else ""
    table = copy_file(roi_summary_file, func / f"sub-{subject}{task_part}_desc-encoding_rois.tsv")
    write_json(
        table.with_suffix(".json"),
        {
            "roi": {"Description": "region of the segmentation ('all': every modelled voxel)"},
            "feature": {"Description": "feature space of the encoding model"},
            "statistic": {
                "Description": "per-voxel statistic summarised",
                "Levels": {k: v[1] for k, v in MAP_STATISTICS.items()}
                | {"log10_alpha": "log10 of the ridge penalty chosen by cross-validation"},
            },
            "n_voxels": {"Description": "voxels in the region"},
            "mean": {"Description": "mean of the statistic over the region's voxels"},
            "median": {"Description": "median over the region's voxels"},
            **recorded,
        },
    )
    out = dict(summary or {})
    out["encoding"] = {
        "maps": written,
        "roi_table": _relative(table, output_dir),
        "spaces": {k: dict(v) for k, v in spaces.items()},
        "n_train": int(n_train),
        "n_test": int(n_test),
        "unet": dict(unet_info or {}),
    }
    return out
