"""Writing the BIDS derivatives dataset of nipype-brainrecon.

Layout (see ``docs/outputs.md``)::

    <output_dir>/
      dataset_description.json   README.md   .bidsignore   logs/CITATION.md
      sub-<label>.html                               the subject report
      sub-<label>/
        func/  sub-<label>_<run entities>_space-<space>_desc-<method>_betas.nii.gz (+ .json)
               sub-<label>_<run entities>_desc-<method>_trials.tsv
               sub-<label>_space-<space>_label-<roi>_mask.nii.gz (+ .json)
               sub-<label>_task-<t>_space-<space>_desc-<feature><Stat>_statmap.nii.gz (+ .json)
               sub-<label>_task-<t>_desc-encoding_rois.tsv (+ .json)   (with --encoding)
        decoding/  sub-<label>_target-<z|c>_roi-<roi>_decoder.safetensors (+ .json)
                   sub-<label>_target-<z|c>_roi-<roi>_predicted.npy, ..._scores.json
                   sub-<label>_stimuli.tsv (test stimuli, row order of the arrays)
        recon/     sub-<label>_stim-<id>_sample-<k>_recon.png
        sub-<label>_desc-reconstruction_metrics.tsv (+ .json)
        figures/   report figures
      group_metrics.tsv (+ .json), group.html      (group level)

Files the BIDS specification does not define are listed in ``.bidsignore``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import OutputError
from ..io import atomic_write_text

PIPELINE_NAME = "nipype-brainrecon"
BIDS_VERSION = "1.10.0"

BIDSIGNORE = """\
# Files of nipype-brainrecon that the BIDS specification does not define
*.html
logs/
sub-*/figures
sub-*/decoding
sub-*/recon
*_mask.nii.gz
*_mask.json
*_betas.nii.gz
*_betas.json
*_trials.tsv
*_metrics.tsv
*_metrics.json
group_metrics.tsv
group_metrics.json
*_statmap.nii.gz
*_statmap.json
*_desc-encoding_rois.tsv
*_desc-encoding_rois.json
"""

CITATION = """\
# Citing nipype-brainrecon

Results in this folder were produced with nipype-brainrecon {version}, an implementation of the
method of Takagi & Nishimoto (2023) built on Nipype (Gorgolewski et al., 2011), nilearn
(Abraham et al., 2014), PyTorch and diffusers.

## Methods paragraph

Single-trial response amplitudes were estimated from the preprocessed BOLD series with a
{betas_method} general linear model (HRF: {hrf_model}; drift: cosine basis; confounds:
{confounds}; noise model: {noise_model}). The VAE latent of each seen image (z; image at
{resolution} px) was decoded from the {z_roi} region and the text embedding of its captions
(c; mean over captions) from the {c_roi} region, each with ridge regression on standardised
voxels, the penalty chosen per target by {n_folds}-fold cross-validation over {alphas}.
Decoders were trained on single trials of the training stimuli and tested on the mean response
over repeats of the held-out stimuli ({test_rule}). Images were reconstructed with the latent
diffusion model {model}: the decoded latent was decoded to an image, re-encoded, noised to
strength {strength} and denoised for {steps} DDIM steps conditioned on the decoded text
embedding with classifier-free guidance {guidance} ({n_samples} samples per image, seed
{seed}; mode {mode}). Reconstructions were scored with two-way identification (chance 50%),
PixCorr and SSIM, beside a mean-training-image baseline and reconstructions from shuffled
latents.

## References

- Takagi, Y., & Nishimoto, S. (2023). High-resolution image reconstruction with latent diffusion
  models from human brain activity. CVPR 2023, 14453-14463.
- Gorgolewski, K., et al. (2011). Nipype: a flexible, lightweight and extensible neuroimaging
  data processing framework in Python. Frontiers in Neuroinformatics, 5, 13.
- Abraham, A., et al. (2014). Machine learning for neuroimaging with scikit-learn.
  Frontiers in Neuroinformatics, 8, 14.
- Rombach, R., et al. (2022). High-resolution image synthesis with latent diffusion models.
  CVPR 2022.
"""


def container_info() -> dict[str, str] | None:
    """The container the app runs in (set by the Docker image), for ``GeneratedBy``."""
    image = os.environ.get("BRAINRECON_CONTAINER_IMAGE")
    if not image:
        return None
    return {"Type": os.environ.get("BRAINRECON_CONTAINER_TYPE", "docker"), "Tag": image}


def dataset_description(
    *, bids_dir: str | os.PathLike, derivatives: Mapping[str, str | os.PathLike]
) -> dict[str, Any]:
    """``dataset_description.json`` content of the output derivatives dataset."""
    generated: dict[str, Any] = {
        "Name": PIPELINE_NAME,
        "Version": __version__,
        "CodeURL": "https://github.com/nipype-brainrecon/nipype-brainrecon",
    }
    container = container_info()
    if container:
        generated["Container"] = container
    links = {"raw": Path(bids_dir).absolute().as_uri()}
    links.update({name: Path(path).absolute().as_uri() for name, path in derivatives.items()})
    return {
        "Name": "nipype-brainrecon outputs",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": uri} for uri in links.values()],
        "DatasetLinks": links,
    }


def init_output_dataset(
    output_dir: str | os.PathLike,
    *,
    bids_dir: str | os.PathLike,
    derivatives: Mapping[str, str | os.PathLike],
    settings: Mapping[str, Any],
) -> Path:
    """Create (or refresh) the top-level files of the derivatives dataset."""
    out = Path(output_dir)
    try:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    description = dataset_description(bids_dir=bids_dir, derivatives=derivatives)
    atomic_write_text(out / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    atomic_write_text(out / ".bidsignore", BIDSIGNORE)
    atomic_write_text(
        out / "README.md",
        "# nipype-brainrecon derivatives\n\nImage reconstructions from fMRI "
        f"(Takagi & Nishimoto 2023) by nipype-brainrecon {__version__}. "
        "Open `sub-<label>.html` for each subject's report and see `logs/CITATION.md`.\n",
    )
    atomic_write_text(out / "logs" / "CITATION.md", citation_text(settings))
    return out


def citation_text(settings: Mapping[str, Any]) -> str:
    """The methods paragraph with this run's settings filled in."""
    fields = {
        "version": __version__,
        "betas_method": str(settings.get("betas_method", "lss")).upper(),
        "hrf_model": settings.get("hrf_model", "glover"),
        "confounds": settings.get("confounds", "motion+derivatives"),
        "noise_model": settings.get("noise_model", "ols"),
        "resolution": settings.get("resolution", 320),
        "z_roi": settings.get("z_roi", "early"),
        "c_roi": settings.get("c_roi", "ventral"),
        "n_folds": settings.get("n_folds", 5),
        "alphas": f"the {settings.get('alphas', 'default')} alpha grid",
        "test_rule": settings.get("test_set", "repeats"),
        "model": settings.get("model", "?"),
        "strength": settings.get("strength", 0.8),
        "steps": settings.get("num_inference_steps", 50),
        "guidance": settings.get("guidance_scale", 5.0),
        "n_samples": settings.get("n_samples", 5),
        "seed": settings.get("seed", 42),
        "mode": settings.get("mode", "z+c"),
    }
    return CITATION.format(**fields)


def bids_uri(path: str | os.PathLike, root: str | os.PathLike, dataset: str = "raw") -> str:
    """``bids:<dataset>:<relative path>`` URI of a file inside a dataset root."""
    rel = Path(os.path.relpath(Path(path).absolute(), Path(root).absolute())).as_posix()
    return f"bids:{dataset}:{rel}"


def write_json(path: str | os.PathLike, content: Mapping[str, Any]) -> Path:
    """Write a JSON sidecar atomically (sorted keys, 2-space indent)."""
    return atomic_write_text(
        path, json.dumps(content, indent=2, sort_keys=True, default=str) + "\n"
    )


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a file into the derivatives (creating folders); returns the destination."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def run_prefix(subject: str, entities: Mapping[str, str]) -> str:
    """``sub-X[_ses-Y]_task-Z[_run-N]`` from a run's entities."""
    parts = [f"sub-{subject}"]
    for key in ("ses", "task", "acq", "run", "echo"):
        if entities.get(key):
            parts.append(f"{key}-{entities[key]}")
    return "_".join(parts)


def label(value: str) -> str:
    """A BIDS label from any text: letters and digits only."""
    text = "".join(ch for ch in str(value) if ch.isalnum())
    return text or "x"


def collect_subject_metrics(output_dir: str | os.PathLike, subjects: Sequence[str]) -> list[Path]:
    """The per-subject metrics tables found in a derivatives dataset."""
    out = Path(output_dir)
    return [
        p
        for s in subjects
        for p in [out / f"sub-{s}" / f"sub-{s}_desc-reconstruction_metrics.tsv"]
        if p.exists()
    ]


def write_subject_derivatives(
    *,
    output_dir: str | os.PathLike,
    subject: str,
    bids_dir: str | os.PathLike,
    run_entities: Sequence[Mapping[str, str]],
    bold_files: Sequence[str],
    betas_files: Sequence[str],
    trials_files: Sequence[str],
    z_roi_file: str,
    c_roi_file: str,
    z_decoder_file: str,
    z_decoder_sidecar: str,
    c_decoder_file: str,
    c_decoder_sidecar: str,
    z_predicted_file: str,
    c_predicted_file: str,
    z_scores: Mapping[str, Any],
    c_scores: Mapping[str, Any],
    split_info: Mapping[str, Any],
    test_stimuli_file: str,
    images_file: str,
    images_stimuli_file: str,
    metrics_file: str,
    stim_files: Mapping[str, str],
    settings: Mapping[str, Any],
    space: str = "T1w",
    z_alpha_counts: Mapping[str, int] | None = None,
    c_alpha_counts: Mapping[str, int] | None = None,
    command: str = "",
) -> tuple[Path, dict[str, Any]]:
    """Write one subject's results into ``output_dir/sub-<subject>`` (whole or not at all).

    Returns the subject folder and the summary the HTML report is built from.
    """
    import numpy as np
    import pandas as pd
    from PIL import Image

    from ..io import atomic_directory

    out = Path(output_dir)
    subject_dir = out / f"sub-{subject}"
    provenance = {
        "SoftwareName": PIPELINE_NAME,
        "SoftwareVersion": __version__,
        "Settings": dict(settings),
    }
    method = label(settings.get("betas_method", "lss"))
    z_roi_name = str(z_scores.get("roi") or settings.get("z_roi", "early"))
    c_roi_name = str(c_scores.get("roi") or settings.get("c_roi", "ventral"))
    with atomic_directory(subject_dir, overwrite=True) as tmp:
        func = tmp / "func"
        raw_sources = []
        betas_out = []
        for entities, bold, betas, trials in zip(
            run_entities, bold_files, betas_files, trials_files, strict=True
        ):
            prefix = run_prefix(subject, entities)
            dst = copy_file(betas, func / f"{prefix}_space-{space}_desc-{method}_betas.nii.gz")
            copy_file(trials, func / f"{prefix}_desc-{method}_trials.tsv")
            write_json(
                dst.with_name(dst.name.replace(".nii.gz", ".json")),
                {
                    "Description": "Single-trial response amplitudes, one volume per trial",
                    "Sources": [str(Path(bold).absolute().as_uri())],
                    **provenance,
                },
            )
            betas_out.append(str(subject_dir / dst.relative_to(tmp)))
            raw_sources.append(str(Path(bold).absolute().as_uri()))
        rois = {}
        for target, roi_file, roi_name in (
            ("z", z_roi_file, z_roi_name),
            ("c", c_roi_file, c_roi_name),
        ):
            dst = copy_file(
                roi_file, func / f"sub-{subject}_space-{space}_label-{label(roi_name)}_mask.nii.gz"
            )
            write_json(
                dst.with_name(dst.name.replace(".nii.gz", ".json")),
                {
                    "Type": "ROI",
                    "Description": f"Region decoding {target}: {roi_name}",
                    "RawSources": raw_sources[:1],
                    "SpatialReference": raw_sources[0] if raw_sources else "",
                },
            )
            rois[target] = {
                "name": roi_name,
                "mask": str(subject_dir / dst.relative_to(tmp)),
                "n_voxels": int((z_scores if target == "z" else c_scores).get("n_voxels", 0)),
            }
        decoding = tmp / "decoding"
        scores = {"z": dict(z_scores), "c": dict(c_scores)}
        for target, weights, sidecar, predicted, roi_name in (
            ("z", z_decoder_file, z_decoder_sidecar, z_predicted_file, z_roi_name),
            ("c", c_decoder_file, c_decoder_sidecar, c_predicted_file, c_roi_name),
        ):
            stem = f"sub-{subject}_target-{target}_roi-{label(roi_name)}"
            copy_file(weights, decoding / f"{stem}_decoder.safetensors")
            meta = json.loads(Path(sidecar).read_text())
            meta.update(provenance)
            write_json(decoding / f"{stem}_decoder.json", meta)
            copy_file(predicted, decoding / f"{stem}_predicted.npy")
            write_json(decoding / f"{stem}_scores.json", scores[target])
        copy_file(test_stimuli_file, decoding / f"sub-{subject}_stimuli.tsv")

        images = np.load(images_file)
        ids = pd.read_csv(images_stimuli_file, sep="\t", dtype={"stim_id": str})["stim_id"]
        recon_dir = tmp / "recon"
        recon_dir.mkdir()
        test_stimuli = []
        for row, sid in enumerate(ids):
            paths = []
            for k in range(images.shape[1]):
                name = f"sub-{subject}_stim-{label(sid)}_sample-{k}_recon.png"
                Image.fromarray(images[row, k]).save(recon_dir / name)
                paths.append(str(subject_dir / "recon" / name))
            test_stimuli.append(
                {"stim_id": sid, "stimulus": str(stim_files[sid]), "reconstructions": paths}
            )
        metrics_name = f"sub-{subject}_desc-reconstruction_metrics.tsv"
        copy_file(metrics_file, tmp / metrics_name)
        write_json(
            tmp / metrics_name.replace(".tsv", ".json"),
            {
                "Description": "Reconstruction metrics with chance levels and baselines",
                "NumberOfTestImages": int(images.shape[0]),
                "SamplesPerImage": int(images.shape[1]),
                **provenance,
            },
        )
    summary = {
        "subject": subject,
        "software": {"name": PIPELINE_NAME, "version": __version__},
        "command": command,
        "settings": dict(settings),
        "inputs": {
            "bids_dir": str(bids_dir),
            "n_runs": len(bold_files),
            "bold_files": [str(b) for b in bold_files],
            "betas_files": betas_out,
        },
        "reference_bold": str(bold_files[0]),
        "rois": rois,
        "split": dict(split_info),
        "decoding": scores,
        "alpha_counts": {"z": dict(z_alpha_counts or {}), "c": dict(c_alpha_counts or {})},
        "test_stimuli": test_stimuli,
        "metrics": str(subject_dir / metrics_name),
        "errors": [],
    }
    write_json(out / "logs" / f"sub-{subject}_summary.json", summary)
    return subject_dir, summary
