"""The dataset-level files: dataset_description.json, README, .bidsignore, methods, settings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import DEFAULTS, Settings
from ..errors import OutputError
from ..io import atomic_write_text
from .layout import BIDS_VERSION, BIDSIGNORE, PIPELINE_NAME
from .portable import RAW, model_name, portable_settings, relative_location

CITATION = """\
# Citing nipype-brainrecon

Results in this folder were produced with nipype-brainrecon {version}, an implementation of the
method of Takagi & Nishimoto (2023) built on Nipype (Gorgolewski et al., 2011), nilearn
(Abraham et al., 2014), PyTorch and diffusers.

## Methods paragraph

{betas_sentence} The VAE latent of each seen image (z; image at
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
    *,
    bids_dir: str | os.PathLike,
    derivatives: Mapping[str, str | os.PathLike],
    output_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """``dataset_description.json`` content of the output derivatives dataset.

    ``DatasetLinks`` maps the names used in the sidecars' ``bids:<name>:<path>`` URIs (``raw``:
    ``bids_dir``; the keys of ``derivatives``, e.g. ``fmriprep``) to each dataset's location
    relative to ``output_dir`` (e.g. ``../bids``), so the dataset holds no absolute path of
    the machine it was made on; ``SourceDatasets`` lists those locations once each.
    """
    generated: dict[str, Any] = {
        "Name": PIPELINE_NAME,
        "Version": __version__,
        "CodeURL": "https://github.com/nipype-brainrecon/nipype-brainrecon",
    }
    container = container_info()
    if container:
        generated["Container"] = container
    links = {RAW: relative_location(bids_dir, output_dir)}
    links.update({name: relative_location(path, output_dir) for name, path in derivatives.items()})
    return {
        "Name": "nipype-brainrecon outputs",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": url} for url in dict.fromkeys(links.values())],
        "DatasetLinks": links,
    }


def init_output_dataset(
    output_dir: str | os.PathLike,
    *,
    bids_dir: str | os.PathLike,
    derivatives: Mapping[str, str | os.PathLike],
    settings: Mapping[str, Any],
) -> Path:
    """Create (or refresh) the top-level files of the derivatives dataset.

    ``settings`` are the run's flat settings (:meth:`nipype_brainrecon.config.Settings.flat`);
    they are saved as ``logs/settings.toml`` beside the methods text, portable
    (:func:`~nipype_brainrecon.derivatives.portable.portable_settings`: the model by its
    identity, other paths relative to ``output_dir``).
    """
    out = Path(output_dir)
    try:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    description = dataset_description(bids_dir=bids_dir, derivatives=derivatives, output_dir=out)
    atomic_write_text(out / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    settings = portable_settings(settings, out)
    atomic_write_text(out / ".bidsignore", BIDSIGNORE)
    atomic_write_text(
        out / "README.md",
        "# nipype-brainrecon derivatives\n\nImage reconstructions from fMRI "
        f"(Takagi & Nishimoto 2023) by nipype-brainrecon {__version__}. "
        "Open `sub-<label>.html` for each subject's report and see `logs/CITATION.md`.\n",
    )
    atomic_write_text(out / "logs" / "CITATION.md", citation_text(settings))
    atomic_write_text(out / "logs" / "settings.toml", Settings.from_flat(settings).to_toml())
    return out


def citation_text(settings: Mapping[str, Any]) -> str:
    """The methods paragraph with this run's settings filled in (defaults for those missing).

    The model is named by its hub id or, for a local folder, by its folder name and weights
    hash (:func:`~nipype_brainrecon.derivatives.portable.model_name`), never by its path.
    """
    cfg = {**DEFAULTS.flat(), "model": "?", **settings}
    cfg["model"] = model_name(cfg["model"])
    fields = {
        "version": __version__,
        "resolution": cfg["resolution"],
        "z_roi": cfg["z_roi"],
        "c_roi": cfg["c_roi"],
        "n_folds": cfg["n_folds"],
        "alphas": f"the {cfg['alphas']} alpha grid",
        "test_rule": cfg["test_set"],
        "model": cfg["model"],
        "strength": cfg["strength"],
        "steps": cfg["num_inference_steps"],
        "guidance": cfg["guidance_scale"],
        "n_samples": cfg["n_samples"],
        "seed": cfg["seed"],
        "mode": cfg["mode"],
    }
    return CITATION.format(betas_sentence=_betas_sentence(cfg), **fields)


#: How the single-trial betas came to be, by ``betas_method``.
GLM_SENTENCE = """\
Single-trial response amplitudes were estimated from the preprocessed BOLD series with a
{betas_method} general linear model (HRF: {hrf_model}; drift: cosine basis; confounds:
{confounds}; noise model: {noise_model})."""
PRECOMPUTED_SENTENCE = """\
Single-trial response amplitudes were taken as given (precomputed betas, `--betas`); no
general linear model was fitted here."""


def _betas_sentence(cfg: Mapping[str, Any]) -> str:
    if cfg["betas_method"] == "precomputed":
        return PRECOMPUTED_SENTENCE
    return GLM_SENTENCE.format(
        betas_method=str(cfg["betas_method"]).upper(),
        hrf_model=cfg["hrf_model"],
        confounds=cfg["confounds"],
        noise_model=cfg["noise_model"],
    )
