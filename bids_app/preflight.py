"""Checks run on one participant's inputs before any workflow node starts.

:func:`nipype_brainrecon.bids.collect_participant` checks that every file is there and that
headers and tables agree. The checks here go one step further, on what the analysis will do
with them, so that a mistake is answered in seconds with one message and a BIDS Apps exit code
instead of a crash file hours into a run:

* the model folder is complete and consistent (:func:`nipype_brainrecon.diffusion.models.check_model_folder`);
* every stimulus shown is a readable image, and gets its own output label
  (:func:`check_output_labels`);
* each decoding ROI exists in the label table and holds voxels inside the brain mask;
* the test set rule leaves a test set and at least ``n_folds`` training trials;
* the ridge decoders fit in the ``--mem`` budget (:func:`estimate_decoder_memory`).

Nothing is written anywhere.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nipype_brainrecon.errors import DataError, UsageError

__all__ = [
    "check_betas_dataset",
    "check_output_labels",
    "check_participant",
    "estimate_decoder_memory",
    "model_target_sizes",
]

#: Stable Diffusion v1 sizes, used for a hub id that is not on disk.
_SD_LATENT_CHANNELS = 4
_SD_VAE_FACTOR = 8
_SD_TEXT_SHAPE = (77, 768)


def estimate_decoder_memory(n_samples: int, n_voxels: int, n_targets: int) -> int:
    """Bytes one ridge decoder fit needs at its peak (a deliberately generous estimate).

    The fit holds the float32 voxels ``X`` (samples × voxels) and targets ``Y``, a float64
    standardised copy of ``X``, float64 Gram/kernel matrices and their eigenvectors
    (``min(samples, voxels)`` squared, a few of them), the float32 coefficients
    (voxels × targets) twice (fit and refit) and a 64 MiB working chunk per target block.

    >>> estimate_decoder_memory(100, 1000, 10) < estimate_decoder_memory(100, 1000, 10_000)
    True
    """
    n, p, t = int(n_samples), int(n_voxels), int(n_targets)
    k = min(n, p)
    return (
        4 * (n * p + n * t)  # X and Y as loaded
        + 8 * n * p  # standardised float64 copy
        + 8 * 4 * k * k  # Gram / kernel, eigenvectors, fold copies
        + 4 * 2 * p * t  # coefficients of the CV fit and of the refit
        + 64 * 2**20  # working chunk (ridge.DEFAULT_BUDGET)
    )


def _read_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: not a readable JSON model config ({exc}); re-save the model"
        ) from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: model config is not a JSON object; re-save the model")
    return data


def model_target_sizes(model: str | os.PathLike, resolution: int) -> dict[str, int]:
    """Number of decoded targets for ``z`` and ``c`` with ``model`` at ``resolution`` px.

    Read from the VAE and text encoder configs of a local folder; Stable Diffusion v1's sizes
    (4 × (res/8)² and 77 × 768) for a hub id.
    """
    folder = Path(os.fspath(model))
    channels, factor, text = _SD_LATENT_CHANNELS, _SD_VAE_FACTOR, _SD_TEXT_SHAPE
    if folder.is_dir():
        vae = _read_config(folder / "vae" / "config.json")
        channels = int(vae.get("latent_channels", channels))
        blocks = vae.get("block_out_channels")
        if isinstance(blocks, list) and blocks:
            factor = 2 ** (len(blocks) - 1)
        enc = folder / "text_encoder" / "config.json"
        if enc.is_file():
            cfg = _read_config(enc)
            text = (
                int(cfg.get("max_position_embeddings", text[0])),
                int(cfg.get("hidden_size", text[1])),
            )
    side = max(1, int(resolution) // factor)
    return {"z": channels * side * side, "c": math.prod(text)}


def _stim_id(path: Path) -> str:
    return path.stem


def check_output_labels(stim_files: Any) -> dict[str, Path]:
    """Refuse two stimuli whose outputs would get the same BIDS label.

    Output files name a stimulus by ``stim-<label>``, the letters and digits of its id: the
    ``stim_id`` of the trials tables when ``stim_files`` maps ids to files, else the file name
    stem (:func:`nipype_brainrecon.derivatives.label`); two stimuli with one label would
    overwrite each other's outputs (and share one stimulus id). Returns ``{label: file}``.

    >>> sorted(check_output_labels([Path("a/stim-01.png"), Path("b/stim-02.png")]))
    ['stim01', 'stim02']
    >>> check_output_labels([Path("s/stim-01.png"), Path("s/stim_01.jpg")])
    Traceback (most recent call last):
    ...
    nipype_brainrecon.errors.DataError: s/stim-01.png and s/stim_01.jpg get the same output label 'stim01'; rename one
    """
    from nipype_brainrecon.derivatives import label

    if isinstance(stim_files, Mapping):  # {stim_id: file}: ids given by the trials tables
        pairs = sorted((str(sid), Path(p)) for sid, p in stim_files.items())
    else:
        pairs = [(_stim_id(path), path) for path in sorted({Path(p) for p in stim_files})]
    seen: dict[str, Path] = {}
    for sid, path in pairs:
        key = label(sid)
        if key in seen:
            raise DataError(f"{seen[key]} and {path} get the same output label '{key}'; rename one")
        seen[key] = path
    return seen


def check_betas_dataset(betas_dir: str | os.PathLike, participants: Any = None) -> list[str]:
    """The ``--betas`` folder exists and holds betas of the participants asked for (exit 66).

    Run before anything is written. The files themselves (trials tables against volumes,
    ``stim_file``, captions, ROI segmentation) are checked when each participant is collected
    (:func:`nipype_brainrecon.bids.betas.collect_precomputed_betas`, exit 65 or 66).
    Returns the participant labels to run (``participants``, or every one in ``betas_dir``).

    Raises
    ------
    MissingInputError
        The folder is absent, has no ``sub-<label>`` folder, or one asked for has no betas.
    """
    from nipype_brainrecon.bids import normalize_participant_label
    from nipype_brainrecon.bids.betas import list_betas_participants
    from nipype_brainrecon.errors import MissingInputError

    root = Path(betas_dir).absolute()
    if not root.is_dir():
        raise MissingInputError(f"--betas {root}: folder not found")
    available = list_betas_participants(root)
    labels = (
        [normalize_participant_label(label) for label in participants]
        if participants
        else available
    )
    if not labels:
        raise MissingInputError(
            f"--betas {root}: no sub-<label> folder; expected "
            "sub-<label>/func/*_desc-<label>_betas.nii.gz with *_trials.tsv (docs/betas.md)"
        )
    for label in labels:
        func = root / f"sub-{label}"
        if not any(
            p.parent.name == "func"
            for p in func.rglob("*_betas.nii*")
            if p.name.endswith(("_betas.nii.gz", "_betas.nii"))
        ):
            raise MissingInputError(
                f"--betas {root}: no betas of sub-{label} (expected "
                f"{func.name}/func/*_desc-<label>_betas.nii.gz; participants: "
                f"{', '.join(available) or 'none'})"
            )
    return labels


def check_participant(
    participant: Any,
    settings: Mapping[str, Any],
    *,
    mem_gb: float | None = None,
    check_model: bool = True,
) -> dict[str, Any]:
    """Check what the analysis of one participant will do with its inputs, before it starts.

    Parameters
    ----------
    participant : nipype_brainrecon.bids.ParticipantInputs
        From :func:`~nipype_brainrecon.bids.collect_participant`.
    settings : mapping
        The run settings (``model``, ``resolution``, ``z_roi``, ``c_roi``, ``test_set``,
        ``n_folds``, ...; defaults as :data:`nipype_brainrecon.workflows.participant.DEFAULT_SETTINGS`).
    mem_gb : float, optional
        Memory budget in GB (``--mem``); the larger decoder must fit in it.
    check_model : bool
        Check the model folder too.

    Returns
    -------
    dict
        ``n_trials``, ``n_train``, ``n_test``, ``voxels`` (per target), ``targets`` and
        ``decoder_bytes`` (per target).

    Raises
    ------
    MissingInputError
        The model folder is absent or incomplete.
    DataError
        Two stimuli with the same output label, an unreadable stimulus image, an empty ROI, no test set, too few training trials.
    UsageError
        An ROI name not in the label table; the decoders need more memory than ``mem_gb``.
    """
    import numpy as np
    import pandas as pd

    from nipype_brainrecon.bids.inputs import shows_image
    from nipype_brainrecon.features import check_images
    from nipype_brainrecon.glm.betas_io import with_stim_id
    from nipype_brainrecon.ridge import kfold_slices
    from nipype_brainrecon.rois import roi_from_dseg
    from nipype_brainrecon.split import choose_test_stimuli

    model = str(settings.get("model", ""))
    if check_model and model:
        from nipype_brainrecon.diffusion.models import check_model_folder, local_folder

        folder = local_folder(model)
        if folder is not None:
            check_model_folder(folder)

    check_output_labels(participant.stimuli_by_id)
    check_images(participant.stim_files)

    reference, brain = participant.runs[0].bold, participant.runs[0].mask
    voxels: dict[str, int] = {}
    for target in ("z", "c"):
        names = settings.get(f"{target}_roi", "early" if target == "z" else "ventral")
        names = [names] if isinstance(names, str) else list(names)
        known = set(participant.roi_labels.values())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(
                f"--{target}-roi {' '.join(unknown)}: no such region in "
                f"{participant.roi_labels_file} (regions: {', '.join(sorted(known))})"
            )
        roi = roi_from_dseg(
            participant.roi_dseg,
            {name: index for index, name in participant.roi_labels.items()},
            names,
            reference=reference,
            brain_mask=brain,
        )
        voxels[target] = int((np.asanyarray(roi.dataobj) > 0).sum())

    # The trials as the pipeline will read them: every column kept (a test-set column), and
    # stim_id as given (NSD's 73k ids) or the file name stem (with_stim_id's rule).
    tables = [
        with_stim_id(run.events[[shows_image(p) for p in run.events["stim_file"]]], run.events_file)
        for run in participant.runs
    ]
    trials = pd.concat(tables, ignore_index=True)
    files = sorted({str(run.events_file) for run in participant.runs})
    source = files[0] if len(files) == 1 else f"{Path(files[0]).parent} ({len(files)} events files)"
    test = settings.get("test_set", "repeats")
    test_ids, _ = choose_test_stimuli(trials, test=test, source=source)
    n_train = int((~trials["stim_id"].isin(test_ids)).sum())
    n_folds = int(settings.get("n_folds", 5))
    try:
        kfold_slices(n_train, n_folds)
    except DataError as exc:
        raise DataError(
            f"{source}: {n_train} training trial(s) for {n_folds} cross-validation folds; "
            "show more images once, or lower the folds"
        ) from exc

    targets = model_target_sizes(model, int(settings.get("resolution", 320))) if model else {}
    need = {
        t: estimate_decoder_memory(n_train, voxels[t], targets[t]) for t in targets if t in voxels
    }
    if mem_gb is not None and need:
        worst = max(need, key=need.get)
        if need[worst] > mem_gb * 2**30:
            raise UsageError(
                f"--mem {mem_gb:g}: the {worst} decoder of sub-{participant.participant} needs "
                f"about {need[worst] / 2**30:.2f} GB ({n_train} trials, {voxels[worst]} voxels, "
                f"{targets[worst]} targets); raise --mem, use a smaller ROI or a lower --resolution"
            )
    sizes = {
        "n_trials": len(trials),
        "n_train": n_train,
        "n_test": len(test_ids),
        "voxels": voxels,
        "targets": targets,
        "decoder_bytes": need,
    }
    if check_model and model:  # a full-size model on the CPU: say how long, before the run
        from nipype_brainrecon.bids_app.checks import cpu_model_warning

        warning = cpu_model_warning(sizes, settings)
        if warning:
            logging.getLogger(__name__).warning("sub-%s: %s", participant.participant, warning)
    return sizes
