"""One writer per stage for a subject's derivatives, and the step that puts them in place.

Each stage writer (:func:`stage_betas`, :func:`stage_decoder`, :func:`stage_reconstructions`)
writes what it generates (sidecars, PNGs) into a staging folder of its own and returns

* ``files``: ``{path relative to sub-<label>/: source file}`` (generated or the stage's
  outputs, copied only when the subject is assembled), and
* ``section``: its part of the summary the report is built from.

Nothing written holds an absolute path of the machine (see :mod:`.portable`): inputs are named
by ``bids:<dataset>:<path>`` URIs through ``datasets`` (``{"raw": bids_dir, "fmriprep":
derivatives}``), outputs by paths relative to the output dataset, the model by its identity.

:func:`assemble_subject` copies every stage's files into ``sub-<label>/`` under a temporary
name and moves it into place (whole or not at all), then writes ``logs/sub-<label>_summary.json``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import DEFAULTS
from ..io import atomic_directory
from .files import copy_file, provenance, sidecar_of, write_json
from .layout import (
    PIPELINE_NAME,
    label,
    run_prefix,
    subject_metrics_name,
    subject_per_image_name,
    task_label,
)
from .portable import (
    RAW,
    Datasets,
    dataset_links,
    portable_command,
    portable_settings,
    relative_location,
    source_uri,
)

#: Keys of the summary in the order the report reads them.
SUMMARY_KEYS = (
    "subject", "software", "command", "settings", "inputs", "reference_bold", "rois", "split",
    "decoding", "alpha_counts", "test_stimuli", "metrics", "per_image", "errors",
)  # fmt: skip

Files = dict[str, str]


def _subject_dir(output_dir: str | os.PathLike, subject: str) -> Path:
    return Path(output_dir) / f"sub-{subject}"


def _output(subject: str, rel: str) -> str:
    """A file of ``sub-<label>/`` as the summary names it: relative to the output dataset."""
    return f"sub-{subject}/{rel}"


def stage_betas(
    staging: str | os.PathLike,
    *,
    output_dir: str | os.PathLike,
    subject: str,
    run_entities: Sequence[Mapping[str, str]],
    bold_files: Sequence[str],
    betas_files: Sequence[str],
    trials_files: Sequence[str],
    settings: Mapping[str, Any],
    space: str = "T1w",
    datasets: Datasets | None = None,
) -> tuple[Files, dict[str, Any]]:
    """The betas stage: per-run betas (+ sidecar) and trials tables under ``func/``.

    ``datasets`` (``{name: root}`` of the input datasets) names the BOLD files in ``Sources``
    and the summary by ``bids:<name>:<path>`` URIs.
    """
    staging = Path(staging)
    datasets = dict(datasets or {})
    method = label(settings.get("betas_method", DEFAULTS.glm.betas_method))
    files: Files = {}
    for entities, bold, betas, trials in zip(
        run_entities, bold_files, betas_files, trials_files, strict=True
    ):
        prefix = run_prefix(subject, entities)
        rel = f"func/{prefix}_space-{space}_desc-{method}_betas.nii.gz"
        files[rel] = str(betas)
        files[f"func/{prefix}_desc-{method}_trials.tsv"] = str(trials)
        sidecar = sidecar_of(staging / rel)
        write_json(
            sidecar,
            {
                "Description": "Single-trial response amplitudes, one volume per trial",
                "Sources": [source_uri(bold, datasets, output_dir)],
                **provenance(settings, output_dir),
            },
        )
        files[sidecar_of(Path(rel)).as_posix()] = str(sidecar)
    section = {
        "inputs": {
            "n_runs": len(bold_files),
            "bold_files": [source_uri(b, datasets, output_dir) for b in bold_files],
            "betas_files": [_output(subject, r) for r in files if r.endswith("_betas.nii.gz")],
        },
        "reference_bold": source_uri(bold_files[0], datasets, output_dir),
    }
    return files, section


def _portable_sidecar(content: Mapping[str, Any], root: str | os.PathLike) -> dict[str, Any]:
    """A decoder sidecar with its ``Metadata`` (model, paths) made portable."""
    out = portable_settings(content, root)
    if isinstance(content.get("Metadata"), Mapping):
        out["Metadata"] = portable_settings(content["Metadata"], root)
    return out


def stage_decoder(
    staging: str | os.PathLike,
    *,
    output_dir: str | os.PathLike,
    subject: str,
    target: str,
    roi_file: str,
    decoder_file: str,
    decoder_sidecar: str,
    predicted_file: str,
    scores: Mapping[str, Any],
    settings: Mapping[str, Any],
    bold_files: Sequence[str] = (),
    alpha_counts: Mapping[str, int] | None = None,
    space: str = "T1w",
    datasets: Datasets | None = None,
    task: str = "",
) -> tuple[Files, dict[str, Any]]:
    """The decoding stage of one target (z or c): its ROI mask, decoder, predictions, scores.

    The mask's ``SpatialReference`` is the first BOLD file as a ``bids:`` URI (``datasets``);
    its ``task`` entity (required in ``func/``) is ``task``, by default read from the BOLD
    files' names (:func:`~.layout.task_label`). The scores are the sidecar of the predictions
    (``_predicted.json`` beside ``_predicted.npy``).
    """
    import json

    staging = Path(staging)
    datasets = dict(datasets or {})
    default_roi = getattr(DEFAULTS.decoding, f"{target}_roi")
    roi_name = str(scores.get("roi") or settings.get(f"{target}_roi", default_roi))
    task = task or task_label(
        [m.group(1) for b in bold_files if (m := re.search(r"_task-([^_]+)_", Path(b).name))]
    )
    task_part = f"_task-{task}" if task else ""
    mask = f"func/sub-{subject}{task_part}_space-{space}_label-{label(roi_name)}_mask.nii.gz"
    stem = f"decoding/sub-{subject}_target-{target}_roi-{label(roi_name)}"
    files: Files = {mask: str(roi_file)}
    generated = {
        sidecar_of(Path(mask)).as_posix(): {
            "Type": "ROI",
            "Description": f"Region decoding {target}: {roi_name}",
            "SpatialReference": source_uri(bold_files[0], datasets, output_dir)
            if bold_files
            else "",
        },
        f"{stem}_decoder.json": {
            **_portable_sidecar(json.loads(Path(decoder_sidecar).read_text()), output_dir),
            **provenance(settings, output_dir),
        },
        f"{stem}_predicted.json": {
            "Description": f"Decoded {target} of the test stimuli (rows: "
            f"sub-{subject}_stimuli.tsv) and its scores",
            **dict(scores),
        },
    }
    files[f"{stem}_decoder.safetensors"] = str(decoder_file)
    files[f"{stem}_predicted.npy"] = str(predicted_file)
    for rel, content in generated.items():
        files[rel] = str(write_json(staging / rel, content))
    roi = {
        "name": roi_name,
        "mask": _output(subject, mask),
        "n_voxels": int(scores.get("n_voxels", 0)),
    }
    section = {
        "rois": {target: roi},
        "decoding": {target: dict(scores)},
        "alpha_counts": {target: dict(alpha_counts or {})},
    }
    return files, section


def _model_run(images_file: str | os.PathLike) -> dict[str, Any]:
    """What made the images (``Model``, ``Device``, ``TorchVersion``, ``CUDAVersion``): the
    ``images.json`` the reconstruction node wrote beside them; ``{}`` when there is none."""
    import json

    record = Path(images_file).with_suffix(".json")
    return json.loads(record.read_text()) if record.is_file() else {}


def stage_reconstructions(
    staging: str | os.PathLike,
    *,
    output_dir: str | os.PathLike,
    subject: str,
    images_file: str,
    images_stimuli_file: str,
    stim_files: Mapping[str, str],
    metrics_file: str,
    test_stimuli_file: str,
    split_info: Mapping[str, Any],
    settings: Mapping[str, Any],
    datasets: Datasets | None = None,
    per_image_file: str | None = None,
) -> tuple[Files, dict[str, Any]]:
    """The reconstruction stage: PNGs per sample, the test stimuli, the metrics (+ sidecar),
    each test image's scores (``recon/..._desc-perimage_metrics.tsv``) when given.

    The metrics sidecar records the model and the device that made the images (``Model``,
    ``Device``, ``TorchVersion``, ``CUDAVersion``, from ``images.json`` beside ``images_file``).

    The seen images are named by ``bids:`` URIs (``datasets``) in the summary.
    """
    import numpy as np
    import pandas as pd
    from PIL import Image

    staging = Path(staging)
    datasets = dict(datasets or {})
    images = np.load(images_file)
    ids = pd.read_csv(images_stimuli_file, sep="\t", dtype={"stim_id": str})["stim_id"]
    (staging / "recon").mkdir(parents=True, exist_ok=True)
    files: Files = {f"decoding/sub-{subject}_stimuli.tsv": str(test_stimuli_file)}
    test_stimuli = []
    for row, sid in enumerate(ids):
        paths = []
        for k in range(images.shape[1]):
            rel = f"recon/sub-{subject}_stim-{label(sid)}_sample-{k}_recon.png"
            Image.fromarray(images[row, k]).save(staging / rel)
            files[rel] = str(staging / rel)
            paths.append(_output(subject, rel))
        stimulus = source_uri(stim_files[sid], datasets, output_dir)
        test_stimuli.append({"stim_id": sid, "stimulus": stimulus, "reconstructions": paths})
    metrics_name = subject_metrics_name(subject)
    files[metrics_name] = str(metrics_file)
    sidecar = write_json(
        staging / metrics_name.replace(".tsv", ".json"),
        {
            "Description": "Reconstruction metrics with chance levels and baselines",
            "NumberOfTestImages": int(images.shape[0]),
            "SamplesPerImage": int(images.shape[1]),
            **_model_run(images_file),
            **provenance(settings, output_dir),
        },
    )
    files[sidecar.name] = str(sidecar)
    section = {
        "split": dict(split_info),
        "test_stimuli": test_stimuli,
        "metrics": _output(subject, metrics_name),
    }
    if per_image_file:
        per_image_name = subject_per_image_name(subject)
        files[per_image_name] = str(per_image_file)
        section["per_image"] = _output(subject, per_image_name)
    return files, section


def merge_sections(sections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stage sections merged into one; dict values of the same key are merged one level deep."""
    merged: dict[str, Any] = {}
    for section in sections:
        for key, value in section.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def assemble_subject(
    *,
    output_dir: str | os.PathLike,
    subject: str,
    files: Sequence[Mapping[str, str]],
    sections: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
    bids_dir: str | os.PathLike,
    command: str = "",
    datasets: Datasets | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Put every stage's files into ``sub-<label>/`` (whole or not at all); write the summary.

    The summary is portable: ``inputs.datasets`` gives each input dataset's ``Name`` and
    location (``URL``) relative to ``output_dir`` (``datasets``: ``{name: root}``, ``raw`` being
    ``bids_dir``), which the ``bids:`` URIs of the inputs refer to; ``inputs.bids_dir`` and
    ``inputs.derivatives`` (the ``fmriprep`` dataset) are those locations; the settings and the
    command hold no absolute path (:mod:`.portable`).

    Returns the subject folder and the summary the HTML report is built from.
    """
    subject_dir = _subject_dir(output_dir, subject)
    with atomic_directory(subject_dir, overwrite=True) as tmp:
        for stage in files:
            for rel, src in stage.items():
                copy_file(src, tmp / rel)
    merged = merge_sections(sections)
    datasets = {RAW: bids_dir, **(datasets or {})}
    links = dataset_links(datasets, output_dir)
    inputs = {"bids_dir": relative_location(datasets[RAW], output_dir)}
    if "fmriprep" in datasets:
        inputs["derivatives"] = relative_location(datasets["fmriprep"], output_dir)
    merged["inputs"] = {**inputs, "datasets": links, **merged.get("inputs", {})}
    merged.update(
        subject=subject,
        software={"name": PIPELINE_NAME, "version": __version__},
        command=portable_command(command, output_dir),
        settings=portable_settings(settings, output_dir),
        errors=[],
    )
    summary = {key: merged[key] for key in SUMMARY_KEYS if key in merged}
    write_json(Path(output_dir) / "logs" / f"sub-{subject}_summary.json", summary)
    return subject_dir, summary
