"""Ridge decoders: voxels -> features, with the penalty chosen per target by K-fold CV.

Voxels are standardised with the training statistics and a multi-output ridge regression is
fitted with one alpha per target, chosen by K-fold cross-validation exactly as himalaya's
``RidgeCV`` does (Takagi & Nishimoto 2023), on numpy or torch; decoders are saved as
safetensors plus a JSON sidecar.

Modules
-------
fit
    :func:`fit_ridge_cv`, the entry point: checks, standardisation statistics, voxel or kernel
    form, the decoder.
banded
    :func:`fit_banded_ridge_cv`: one alpha per feature space (himalaya's ``BandedRidgeCV``);
    :func:`fit_banded_ridge` refits given alphas.
options
    :class:`SolverOptions` (the switches choosing the solver's code paths) and memory sizes.
cv
    Alpha grids, folds and himalaya's alpha choice.
decoder
    :class:`RidgeDecoder` (the fitted decoder, prediction) and :func:`alpha_histogram`.
estimator
    :class:`RidgeDecoderCV`, the scikit-learn regressor (pipelines, any CV splitter).
stats
    Voxel mean and standard deviation.
persistence
    :func:`save_decoder` and :func:`load_decoder` (safetensors + JSON).
backends
    The array operations on numpy (scipy's BLAS and LAPACK) or torch.
source
    The training data, standardised block by block as it is read.
gram
    Float64 Gram matrices accumulated from row blocks.
basis
    Eigen-bases and their ridge weights, exact or low-rank.
series
    Neumann-series folds (no eigendecomposition) and when to use them.
scoring
    Held-out scores of a fold for a chunk of targets.
chunking
    Target chunk sizes and reused buffers.
primal, primal_pass, primal_folds, primal_refit
    The voxel form: first pass over the data, folds one at a time, refit.
kernel
    The kernel form (fewer training samples than voxels).
_blas
    Strided BLAS products through scipy's function pointers.
"""

from .backends import Backend
from .banded import BandedRidgeFit, banded_alpha_grid, fit_banded_ridge, fit_banded_ridge_cv
from .cv import DEFAULT_ALPHAS, PAPER_ALPHAS, kfold_slices, resolve_alphas
from .decoder import RidgeDecoder, alpha_histogram
from .estimator import RidgeDecoderCV
from .fit import fit_ridge_cv
from .options import (
    BIG_BLOCK_FACTOR,
    DEFAULT_BUDGET,
    DEFAULT_GPU_BUDGET,
    WIDEN_BYTES,
    SolverOptions,
)
from .persistence import DECODER_FORMAT_VERSION, load_decoder, save_decoder

__all__ = [
    "BIG_BLOCK_FACTOR",
    "DECODER_FORMAT_VERSION",
    "DEFAULT_ALPHAS",
    "DEFAULT_BUDGET",
    "DEFAULT_GPU_BUDGET",
    "PAPER_ALPHAS",
    "WIDEN_BYTES",
    "Backend",
    "BandedRidgeFit",
    "RidgeDecoder",
    "RidgeDecoderCV",
    "SolverOptions",
    "alpha_histogram",
    "banded_alpha_grid",
    "fit_banded_ridge",
    "fit_banded_ridge_cv",
    "fit_ridge_cv",
    "kfold_slices",
    "load_decoder",
    "resolve_alphas",
    "save_decoder",
]
