"""Writing the BIDS derivatives dataset of nipype-brainrecon.

Layout (see ``docs/outputs.md``)::

    <output_dir>/
      dataset_description.json   README.md   .bidsignore
      logs/CITATION.md   logs/settings.toml   logs/sub-<label>_summary.json
      sub-<label>.html                               the subject report
      sub-<label>/
        func/  sub-<label>_<run entities>_space-<space>_desc-<method>_betas.nii.gz (+ .json)
               sub-<label>_<run entities>_desc-<method>_trials.tsv
               sub-<label>_task-<t>_space-<space>_label-<roi>_mask.nii.gz (+ .json)
               sub-<label>_task-<t>_space-<space>_desc-<feature><Stat>_statmap.nii.gz (+ .json)
               sub-<label>_task-<t>_desc-encoding_rois.tsv (+ .json)   (with --encoding)
        decoding/  sub-<label>_target-<z|c>_roi-<roi>_decoder.safetensors (+ .json)
                   sub-<label>_target-<z|c>_roi-<roi>_predicted.npy (+ .json: scores)
                   sub-<label>_stimuli.tsv (test stimuli, row order of the arrays)
        recon/     sub-<label>_stim-<id>_sample-<k>_recon.png
        sub-<label>_desc-reconstruction_metrics.tsv (+ .json)
        figures/   report figures
      group_metrics.tsv (+ .json), group.html      (group level)

Files the BIDS specification cannot express yet are listed in ``.bidsignore`` (each pattern
justified in ``docs/outputs.md``); the rest is checked by the BIDS validator.

No output holds an absolute path of the machine: inputs are ``bids:<dataset>:<path>`` URIs
(``DatasetLinks`` locates the datasets relative to the output), outputs are relative paths, the
model is its hub id or folder identity.

Modules: :mod:`.layout` (names, entities, URIs), :mod:`.files` (sidecars, copies, provenance),
:mod:`.portable` (portable provenance: URIs, relative locations, model names),
:mod:`.dataset` (dataset-level files, methods text, settings), :mod:`.subject` (one writer per
stage and the whole-or-nothing assembly of ``sub-<label>/``).
"""

from __future__ import annotations

from .dataset import (
    CITATION,
    citation_text,
    container_info,
    dataset_description,
    init_output_dataset,
)
from .files import copy_file, provenance, write_json
from .layout import (
    BIDS_VERSION,
    BIDSIGNORE,
    PIPELINE_NAME,
    bids_uri,
    collect_subject_metrics,
    label,
    run_prefix,
    subject_metrics_name,
    task_label,
)
from .portable import (
    dataset_links,
    dataset_name,
    model_name,
    portable_command,
    portable_settings,
    relative_location,
    resolve_uri,
    source_uri,
)
from .subject import (
    SUMMARY_KEYS,
    assemble_subject,
    merge_sections,
    stage_betas,
    stage_decoder,
    stage_reconstructions,
)

__all__ = [
    "BIDSIGNORE",
    "BIDS_VERSION",
    "CITATION",
    "PIPELINE_NAME",
    "SUMMARY_KEYS",
    "assemble_subject",
    "bids_uri",
    "citation_text",
    "collect_subject_metrics",
    "container_info",
    "copy_file",
    "dataset_description",
    "dataset_links",
    "dataset_name",
    "init_output_dataset",
    "label",
    "merge_sections",
    "model_name",
    "portable_command",
    "portable_settings",
    "provenance",
    "relative_location",
    "resolve_uri",
    "run_prefix",
    "source_uri",
    "stage_betas",
    "stage_decoder",
    "stage_reconstructions",
    "subject_metrics_name",
    "task_label",
    "write_json",
]
