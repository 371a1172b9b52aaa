"""The simulated brain: the BOLD grid and its regions, and what each voxel responds to.

``early`` voxels have population receptive fields (2D Gaussians over the image) pooling the
low-level maps of :mod:`.features`; ``ventral`` voxels are tuned to the semantic vector. A voxel's
amplitude for a stimulus (% signal change) is its intercept plus its weights · the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UsageError
from .features import LOW_LEVEL_GRID

__all__ = [
    "GRID_SHAPE",
    "ROI_LABELS",
    "VOXEL_SIZE",
    "VoxelModel",
    "brain_grid",
    "voxel_baselines",
    "voxel_model",
    "MIXED_SPACE_DIMS",
    "mixed_responses",
    "mixed_tuning",
    "planting_spaces",
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


# ----------------------------------------------------------------------------- mixed tuning

#: Dimensions of the planting spaces of mixed tuning (:func:`planting_spaces`).
MIXED_SPACE_DIMS = 10
#: Canonical pairs of the two spaces mixed into each voxel's shared component.
_SHARED_PAIRS = 2
#: Weights of the canonical pairs in the shared component (the most correlated pair dominates).
_SHARED_SCALE = np.array([1.0, 0.3])
_TRIES = 20


def planting_spaces(
    low: np.ndarray, semantic: np.ndarray, used: np.ndarray, dims: int = MIXED_SPACE_DIMS
) -> tuple[np.ndarray, np.ndarray]:
    """The two feature spaces of mixed tuning: the ``z`` (image) and ``c`` (semantic) spaces.

    Each is the stimuli's projection on the first ``dims`` principal components (over the shown
    stimuli ``used``) of the low-level maps (``z``) or of the semantic vectors (``c``), scaled
    to unit variance per component over ``used``; rows are all stimuli.
    """
    out = []
    for feats in (low, semantic):
        x = np.asarray(feats, dtype=np.float64)
        centre = x[used].mean(0)
        _, _, vt = np.linalg.svd(x[used] - centre, full_matrices=False)
        k = min(dims, vt.shape[0])
        proj = (x - centre) @ vt[:k].T
        out.append(proj / proj[used].std(0))
    return out[0], out[1]


def _solve_mix(v: np.ndarray, qz: np.ndarray, qc: np.ndarray, target: tuple[float, float]):
    """Weights ``x`` of the columns of ``v`` whose sum has unique fractions ``target``
    (``qz``, ``qc``: orthonormal bases of the two spans)."""
    from scipy.optimize import least_squares

    g = v.T @ v
    az = v.T @ (v - qc @ (qc.T @ v))  # (I - P_c) v: the part c cannot predict
    ac = v.T @ (v - qz @ (qz.T @ v))
    uz, uc = target

    def resid(x: np.ndarray) -> np.ndarray:
        total = x @ g @ x
        return np.array([x @ az @ x - uz * total, x @ ac @ x - uc * total, total - 1.0])

    start = np.sqrt(np.clip([uz, uc, 1.0 - uz - uc], 1e-3, None))
    sol = least_squares(resid, start, xtol=1e-14, ftol=1e-14, gtol=1e-14)
    x = sol.x
    total = x @ g @ x
    return x, np.array([x @ az @ x, x @ ac @ x]) / total


def mixed_tuning(
    rng: np.random.Generator,
    z_space: np.ndarray,
    c_space: np.ndarray,
    used: np.ndarray,
    fractions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus signals with planted unique-variance fractions of two feature spaces.

    Over the shown stimuli ``used``, with ``P_z`` and ``P_c`` the projections on the (centred)
    spans of ``z_space`` and ``c_space``, each voxel's signal is ``s = a u_z + b u_c + d h``:
    ``u_z = (I - P_c) Z alpha`` (a random direction of the z space with all that the c space
    predicts removed), ``u_c = (I - P_z) C beta`` and ``h`` a random mix of the two spaces'
    most correlated canonical pairs (``p_i + q_i``). ``a, b, d`` are solved so that, exactly,
    ``1 - R2_c(s) = uz`` and ``1 - R2_z(s) = uc``, the R² being those of the least-squares fit
    over ``used``: with ``R2_{z+c}(s) = 1`` these are the unique fractions of variance
    partitioning (``R2(z+c) - R2(c)`` and ``R2(z+c) - R2(z)``); ``shared = 1 - uz - uc``.

    Parameters
    ----------
    rng : numpy.random.Generator
    z_space, c_space : numpy.ndarray
        Stimuli × features (:func:`planting_spaces`).
    used : numpy.ndarray
        Indices of the shown stimuli.
    fractions : numpy.ndarray
        ``(n_voxels, 2)``: target unique z and unique c fractions of each voxel (sum <= 1; the
        shared part ``1 - uz - uc`` cannot exceed what the spaces' canonical correlations allow).

    Returns
    -------
    signal : numpy.ndarray
        Stimuli × voxels, mean 0 and SD 1 over ``used``, linear in the two spaces.
    planted : numpy.ndarray
        ``(n_voxels, 3)``: the exact unique z, unique c and shared fractions reached.
    """
    zc, cc = z_space - z_space[used].mean(0), c_space - c_space[used].mean(0)
    zu, cu = zc[used], cc[used]
    qz, rz = np.linalg.qr(zu)
    qc, rc = np.linalg.qr(cu)
    left, _, right_t = np.linalg.svd(qz.T @ qc)
    wz_can = np.linalg.solve(rz, left[:, :_SHARED_PAIRS])  # canonical weights, z side
    wc_can = np.linalg.solve(rc, right_t[:_SHARED_PAIRS].T)
    n_vox = fractions.shape[0]
    signal = np.empty((z_space.shape[0], n_vox))
    planted = np.empty((n_vox, 3))
    for v in range(n_vox):
        for _ in range(_TRIES):  # a draw whose target is out of reach is drawn again
            out = _one_voxel(rng, zu, cu, (qz, rz), (qc, rc), (wz_can, wc_can), fractions[v])
            if np.abs(out[2][:2] - fractions[v]).max() < 1e-9:
                break
        else:
            raise UsageError(
                f"unique fractions {tuple(fractions[v])}: out of reach of these stimuli "
                f"(shared {1 - sum(fractions[v]):.2f}); plant less shared variance"
            )
        w_z, w_c, planted[v] = out
        s = zc @ w_z + cc @ w_c
        signal[:, v] = s / s[used].std()
    return signal, planted


def _one_voxel(rng, zu, cu, z_qr, c_qr, canonical, target):
    """One draw of a voxel's directions; its weights on the z and c columns and fractions."""
    (qz, rz), (qc, rc) = z_qr, c_qr
    alpha = rng.normal(size=zu.shape[1])
    beta = rng.normal(size=cu.shape[1])
    mix = rng.normal(size=_SHARED_PAIRS) * _SHARED_SCALE
    # each component as weights on (z, c) columns: column 0 u_z, 1 u_c, 2 h
    z_of_c = np.linalg.solve(rz, qz.T @ (cu @ beta))  # least-squares weights: P_z C beta
    c_of_z = np.linalg.solve(rc, qc.T @ (zu @ alpha))
    w_z = np.column_stack([alpha, -z_of_c, canonical[0] @ mix])
    w_c = np.column_stack([-c_of_z, beta, canonical[1] @ mix])
    comps = zu @ w_z + cu @ w_c
    norms = np.sqrt((comps**2).sum(0))
    x, reached = _solve_mix(comps / norms, qz, qc, (float(target[0]), float(target[1])))
    return w_z @ (x / norms), w_c @ (x / norms), np.array([*reached, 1.0 - reached.sum()])


def mixed_responses(
    seed: int,
    fractions: dict[str, tuple[float, float]],
    *,
    n_train: int = 500,
    n_test: int = 200,
    n_voxels: int = 40,
    noise_sd: float = 1.0,
    image_size: int = 64,
) -> dict:
    """Single-trial responses of mixed-tuned voxels to generated scenes (no BOLD, no GLM).

    Scenes from :func:`~nipype_brainrecon.synthetic.stimuli.generate_scenes` (``seed``); the
    first ``n_train`` are the training set, the rest the test set; all are "shown" (``used``).
    ``n_voxels`` voxels per entry of ``fractions`` (``{roi: (unique z, unique c)}``) get
    :func:`mixed_tuning` signals (SD 1 over the stimuli) plus Gaussian noise of SD
    ``noise_sd``, so the planted unique R² of a voxel is its fraction times
    ``1 / (1 + noise_sd**2)``.

    Returns
    -------
    dict
        ``z``, ``c`` (stimuli × :data:`MIXED_SPACE_DIMS`, :func:`planting_spaces`), ``signal``
        and ``responses`` (stimuli × voxels), ``roi`` (name of each voxel), ``planted``
        (voxels × 3: unique z, unique c, shared fractions of the signal), ``explainable``
        (``1 / (1 + noise_sd**2)``), ``train`` and ``test`` (row indices).
    """
    from .. import stimuli as stim
    from .features import low_level_features

    scenes = stim.generate_scenes(n_train + n_test, seed=seed)
    semantic = np.stack([stim.scene_semantics(s) for s in scenes])
    low = np.stack([low_level_features(stim.render_scene(s, image_size)) for s in scenes])
    used = np.arange(len(scenes))
    z, c = planting_spaces(low.reshape(len(scenes), -1), semantic, used)
    rng = np.random.default_rng([seed, 22])
    target = np.repeat(np.array(list(fractions.values()), dtype=np.float64), n_voxels, axis=0)
    signal, planted = mixed_tuning(rng, z, c, used, target)
    noise = rng.normal(0.0, noise_sd, signal.shape)
    return {
        "z": z,
        "c": c,
        "signal": signal,
        "responses": signal + noise,
        "roi": np.repeat(list(fractions), n_voxels),
        "planted": planted,
        "explainable": 1.0 / (1.0 + noise_sd**2),
        "train": np.arange(n_train),
        "test": np.arange(n_train, n_train + n_test),
    }
