"""Voxel-wise encoding models: which stimulus features explain which voxels.

The interpretation half of Takagi & Nishimoto (2023, section 4): ridge regressions predicting each
voxel's single-trial response from a feature space of the seen stimulus, trained on the training
stimuli and scored on the held-out test stimuli (mean over repeats) by the Pearson correlation
between predicted and measured responses, voxel by voxel.

Feature spaces:

* ``z``: the VAE latent of the image (:func:`nipype_brainrecon.features.encode_images_z`);
* ``c``: the caption embedding (:func:`nipype_brainrecon.features.encode_captions_c`);
* ``z_c``: the latent after reconstruction, i.e. ``z`` noised to ``strength`` and denoised
  conditioned on ``c`` (:func:`extract_unet_features`);
* ``unet_<block>_<step>_<cond>``: activations of a U-Net block (``down<i>``, ``mid``,
  ``up<i>``) captured by a forward hook while the U-Net denoises the stimulus's noised latent,
  at an early, middle or late denoising step, conditioned on ``c`` (``c``) or on the empty
  prompt (``none``).

The solver is the decoders' one (:func:`nipype_brainrecon.ridge.fit_ridge_cv`) with the roles
swapped: the features (standardised) are the inputs and the voxels the targets, so the ridge
penalty is chosen per voxel by K-fold cross-validation.

Unique variance (variance partitioning): with ``R2`` the coefficient of determination on the test
stimuli, ``unique(z) = R2(z+c) - R2(c)``, ``unique(c) = R2(z+c) - R2(z)`` and
``shared = R2(z) + R2(c) - R2(z+c)``. The joint model concatenates the feature spaces; as the
solver standardises every column, a block's share of the kernel grows with its number of
columns, so by default each block's columns are repeated ``round(p_max / p_block)`` times,
which gives every feature space about the same prior variance (a single-penalty stand-in for
banded ridge); ``run_encoding(banded=True)`` fits one penalty per feature space instead
(:mod:`~nipype_brainrecon.encoding.partition`, with bootstrap intervals of unique variance).

Modules:

* :mod:`~nipype_brainrecon.encoding.models`: fitting, scoring, chance level, variance
  partitioning (:func:`run_encoding`);
* :mod:`~nipype_brainrecon.encoding.partition`: banded joint models and bootstrap intervals of
  unique and shared variance;
* :mod:`~nipype_brainrecon.encoding.unet`: U-Net block activations and ``z_c``
  (:func:`extract_unet_features`);
* :mod:`~nipype_brainrecon.encoding.maps`: maps as NIfTI images, ROI summaries, BIDS-style names;
* :mod:`~nipype_brainrecon.encoding.derivatives`: writing the maps and the ROI table.
"""

from __future__ import annotations

from .derivatives import write_encoding_derivatives
from .maps import MAP_STATISTICS, bids_desc, map_filename, maps_to_nifti, roi_summary, voxel_labels
from .models import (
    EncodingResults,
    chance_correlation,
    fit_encoding_model,
    joint_features,
    prediction_scores,
    run_encoding,
    variance_partitioning,
)
from .unet import (
    CONDITIONS,
    DEFAULT_BLOCKS,
    DEFAULT_STEPS,
    UNET_CACHE_FORMAT,
    UnetFeatures,
    extract_unet_features,
    unet_block_names,
)

__all__ = [
    "CONDITIONS",
    "DEFAULT_BLOCKS",
    "DEFAULT_STEPS",
    "MAP_STATISTICS",
    "UNET_CACHE_FORMAT",
    "EncodingResults",
    "UnetFeatures",
    "bids_desc",
    "chance_correlation",
    "extract_unet_features",
    "fit_encoding_model",
    "joint_features",
    "map_filename",
    "maps_to_nifti",
    "prediction_scores",
    "roi_summary",
    "run_encoding",
    "unet_block_names",
    "variance_partitioning",
    "voxel_labels",
    "write_encoding_derivatives",
]
