"""The simulated brain: the BOLD grid and its regions, and what each voxel responds to.

``early`` voxels have population receptive fields (2D Gaussians over the image) pooling the
low-level maps of :mod:`.features`; ``ventral`` voxels are tuned to the semantic vector. A voxel's
amplitude for a stimulus (% signal change) is its intercept plus its weights · the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import LOW_LEVEL_GRID

__all__ = [
    "GRID_SHAPE",
    "ROI_LABELS",
    "VOXEL_SIZE",
    "VoxelModel",
    "brain_grid",
    "voxel_baselines",
    "voxel_model",
]

#: BOLD grid (x: left→right, y: posterior→anterior, z: inferior→superior) and voxel size (mm).
GRID_SHAPE: tuple[int, int, int] = (16, 16, 10)
VOXEL_SIZE = 3.0
#: Labels of the visual-ROI segmentation.
ROI_LABELS: dict[int, str] = {1: "early", 2: "ventral"}


# ----------------------------------------------------------------------------- anatomy


def brain_grid() -> dict[str, np.ndarray]:
    """The simulated anatomy on the BOLD grid.

    Returns
    -------
    dict
        ``affine`` (4 × 4, RAS mm), ``mask`` (bool brain mask, an ellipsoid), ``dseg`` (int16
        labels of :data:`ROI_LABELS`: ``early`` at the occipital pole, ``ventral`` on the inferior
        surface in front of it), ``csf`` and ``white_matter`` (bool, voxels inside the brain used
        for the fMRIPrep-like confounds; they carry no stimulus response).
    """
    shape = np.array(GRID_SHAPE)
    i, j, k = np.meshgrid(*[np.arange(s) for s in GRID_SHAPE], indexing="ij")
    centre = (shape - 1) / 2
    r2 = ((i - centre[0]) / 6.9) ** 2 + ((j - centre[1]) / 7.6) ** 2 + ((k - centre[2]) / 4.6) ** 2
    mask = r2 <= 1.0
    early = mask & (j <= 4) & (k <= 6)
    ventral = mask & ~early & (j >= 5) & (j <= 10) & (k <= 3)
    dseg = np.zeros(GRID_SHAPE, dtype=np.int16)
    dseg[early] = 1
    dseg[ventral] = 2
    csf = (
        mask & (np.abs(i - centre[0]) <= 1) & (np.abs(j - centre[1] - 1) <= 1) & (k >= 4) & (k <= 6)
    )
    white_matter = mask & (r2 <= 0.45) & ~csf & (dseg == 0)
    affine = np.diag([VOXEL_SIZE, VOXEL_SIZE, VOXEL_SIZE, 1.0])
    affine[:3, 3] = -centre * VOXEL_SIZE
    return {"affine": affine, "mask": mask, "dseg": dseg, "csf": csf, "white_matter": white_matter}


def voxel_baselines(rng: np.random.Generator, anat: dict[str, np.ndarray]) -> np.ndarray:
    """Baseline signal of every voxel of the grid (C order): brain, white matter, CSF, outside."""
    flat_mask = anat["mask"].ravel()
    n_brain = int(flat_mask.sum())
    baseline = np.zeros(flat_mask.size)
    baseline[flat_mask] = rng.normal(1000, 40, n_brain)
    baseline[anat["white_matter"].ravel()] *= 0.8
    baseline[anat["csf"].ravel()] *= 1.3
    baseline[~flat_mask] = 20.0
    return baseline


# ----------------------------------------------------------------------------- tuning


@dataclass(frozen=True)
class VoxelModel:
    """What each responsive voxel of one subject responds to.

    Attributes
    ----------
    vox : numpy.ndarray
        Flat grid index of each responsive (``early`` or ``ventral``) voxel, C order.
    label : numpy.ndarray
        Their dseg labels; ``early`` and ``ventral`` are the boolean masks of the two kinds.
    prf_x, prf_y, prf_sigma : numpy.ndarray
        pRF centre and width of the early voxels (fractions of the image, 0, 0 = top left).
    channel_w : numpy.ndarray
        Early voxels × low-level channels: the weight of each channel in the pRF.
    w_early, b_early, w_ventral, b_ventral : numpy.ndarray
        Weights on the low-level (early) or semantic (ventral) features and intercepts.
    stim_amp : numpy.ndarray
        Stimuli × voxels: noiseless amplitude of each stimulus (% signal change).
    specific_sd : numpy.ndarray
        Std of ``stim_amp`` over the stimuli shown, per voxel.
    """

    vox: np.ndarray
    label: np.ndarray
    early: np.ndarray
    ventral: np.ndarray
    prf_x: np.ndarray
    prf_y: np.ndarray
    prf_sigma: np.ndarray
    channel_w: np.ndarray
    w_early: np.ndarray
    b_early: np.ndarray
    w_ventral: np.ndarray
    b_ventral: np.ndarray
    stim_amp: np.ndarray
    specific_sd: np.ndarray

    @property
    def intercept(self) -> np.ndarray:
        """The intercept of every responsive voxel (% signal change)."""
        out = np.empty(self.early.size)
        out[self.early] = self.b_early
        out[~self.early] = self.b_ventral
        return out


def _prf_profiles(x: np.ndarray, y: np.ndarray, sigma: np.ndarray, grid: int) -> np.ndarray:
    """Gaussian receptive fields on the feature grid, each summing to 1: (n_voxels, grid*grid)."""
    centres = (np.arange(grid) + 0.5) / grid
    gx = np.exp(-0.5 * ((centres[None, :] - x[:, None]) / sigma[:, None]) ** 2)
    gy = np.exp(-0.5 * ((centres[None, :] - y[:, None]) / sigma[:, None]) ** 2)
    prof = gy[:, :, None] * gx[:, None, :]
    prof /= prof.sum(axis=(1, 2), keepdims=True)
    return prof.reshape(len(x), grid * grid)


def _normalise_weights(
    raw_w: np.ndarray, feats: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Scale raw weights so each voxel's amplitudes have a chosen mean and spread over stimuli."""
    drive = feats @ raw_w.T  # stimuli × voxels
    sd = drive.std(axis=0)
    sd[sd == 0] = 1.0
    spread = rng.uniform(0.4, 0.8, raw_w.shape[0])  # % signal change
    mean = rng.uniform(0.5, 1.0, raw_w.shape[0])
    w = raw_w * (spread / sd)[:, None]
    intercept = mean - (feats @ w.T).mean(axis=0)
    return w, intercept


def voxel_model(
    rng: np.random.Generator,
    dseg: np.ndarray,
    low: np.ndarray,
    semantic: np.ndarray,
    used: np.ndarray,
) -> VoxelModel:
    """Draw the tuning of one subject's responsive voxels.

    Parameters
    ----------
    rng : numpy.random.Generator
        The subject's generator (drawn from in a fixed order).
    dseg : numpy.ndarray
        The segmentation of :func:`brain_grid`.
    low, semantic : numpy.ndarray
        Stimuli × low-level features and stimuli × semantic features.
    used : numpy.ndarray
        Sorted indices of the stimuli shown; amplitudes are normalised over these.

    Returns
    -------
    VoxelModel
    """
    flat_dseg = dseg.ravel()
    vox = np.flatnonzero(flat_dseg > 0)  # responsive voxels, C order
    vox_label = flat_dseg[vox]
    early = vox_label == 1
    ventral = vox_label == 2
    n_early, n_ventral = int(early.sum()), int(ventral.sum())

    # early: pRFs pooling the low-level maps
    grid = LOW_LEVEL_GRID
    prf_x = rng.uniform(0.05, 0.95, n_early)
    prf_y = rng.uniform(0.05, 0.95, n_early)
    ecc = np.hypot(prf_x - 0.5, prf_y - 0.5)
    prf_sigma = (0.04 + 0.2 * ecc) * rng.uniform(0.8, 1.25, n_early)
    profiles = _prf_profiles(prf_x, prf_y, prf_sigma, grid)
    channel_w = np.column_stack(
        [
            rng.normal(0, 1, n_early),
            np.abs(rng.normal(0, 1, n_early)) + 0.5,
            rng.normal(0, 0.7, n_early),
            rng.normal(0, 0.7, n_early),
        ]
    )
    raw_early = (channel_w[:, :, None] * profiles[:, None, :]).reshape(n_early, -1)
    w_early, b_early = _normalise_weights(raw_early, low[used], rng)
    # ventral: semantic tuning, each voxel to about half of the semantic features
    raw_ventral = rng.normal(0, 1, (n_ventral, semantic.shape[1]))
    raw_ventral *= rng.random(raw_ventral.shape) < 0.5
    w_ventral, b_ventral = _normalise_weights(raw_ventral, semantic[used], rng)

    stim_amp = np.empty((low.shape[0], len(vox)))  # % signal change, noiseless per stimulus
    stim_amp[:, early] = low @ w_early.T + b_early
    stim_amp[:, ventral] = semantic @ w_ventral.T + b_ventral
    return VoxelModel(
        vox=vox,
        label=vox_label,
        early=early,
        ventral=ventral,
        prf_x=prf_x,
        prf_y=prf_y,
        prf_sigma=prf_sigma,
        channel_w=channel_w,
        w_early=w_early,
        b_early=b_early,
        w_ventral=w_ventral,
        b_ventral=b_ventral,
        stim_amp=stim_amp,
        specific_sd=stim_amp[used].std(axis=0),
    )
