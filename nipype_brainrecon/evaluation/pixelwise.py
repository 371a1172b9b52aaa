"""PixCorr and SSIM: pixel-level scores of each original against its reconstruction(s).

* **PixCorr**: Pearson r between the flattened RGB pixels of an original and a reconstruction,
  both resized to ``size`` (425) px.
* **SSIM**: mean structural similarity of the grayscale images at ``size`` px, Gaussian
  weights (sigma 1.5, truncated at 3.5 sigma: an 11-tap window), population covariances,
  ``K1 = 0.01``, ``K2 = 0.03``, data range 1, and a 5 px border left out: the settings of
  scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1.0)`` on ``rgb2gray`` images, written here with
  :func:`scipy.ndimage.gaussian_filter` on whole batches.

Resizing is bilinear with antialiasing (see :mod:`nipype_brainrecon.evaluation.images`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import ndimage

from ..batching import batches
from ..config import DEFAULTS
from ..errors import UsageError
from .images import check_pairs, resize_images, squeeze_samples, to_grayscale
from .metrics import row_standardise

SSIMVariant = Literal["2d", "columns"]


def pixcorr(
    originals: Any,
    reconstructions: Any,
    *,
    size: int = DEFAULTS.evaluation.eval_size,
    batch_size: int = 4,
) -> np.ndarray:
    """Pearson r between the flattened RGB pixels of each original and its reconstruction(s).

    Both sets are resized to ``size`` x ``size`` px (bilinear, antialiased; see
    :mod:`nipype_brainrecon.evaluation.images`) before flattening, as MindEye scores PixCorr at
    425 px. There is no chance level; compare with mismatched pairs or a trivial baseline
    (:func:`~nipype_brainrecon.evaluation.evaluate` reports both).

    Parameters
    ----------
    originals : ndarray (n, H, W, 3)
        The seen images, uint8 or floats in [0, 1].
    reconstructions : ndarray (n, H', W', 3) or (n, n_samples, H', W', 3) or (H', W', 3)
        Reconstructions in the same order (any resolution of the same aspect ratio); a single
        image is compared with every original.
    size : int
        Side in pixels at which the pixels are compared.
    batch_size : int
        Originals processed at once (bounds memory: each takes ``(1 + n_samples) * size**2 * 3``
        float64 values).

    Returns
    -------
    ndarray (n,) or (n, n_samples)
        r per reconstruction (the shape follows ``reconstructions``); the reported score is the
        mean. A constant image has no pattern to correlate, so its r is taken as 0.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    >>> pixcorr(img, img, size=32).round(6).tolist()
    [1.0, 1.0]
    """
    orig, rec, had_samples = check_pairs(originals, reconstructions)
    return squeeze_samples(pixcorr_scores(orig, rec, size, batch_size), had_samples)


def pixcorr_scores(
    orig: np.ndarray,
    rec: np.ndarray,
    size: int,
    batch_size: int,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """PixCorr of checked arrays (n, H, W, 3) vs (n, S, H', W', 3) → (n, S); reconstruction i
    is compared with original ``order[i]`` (default: i)."""
    n, s = rec.shape[:2]
    idx = np.arange(n) if order is None else order
    out = np.zeros((n, s))
    for sl in batches(n, batch_size):
        o = resize_images(orig[idx[sl]], size).reshape(sl.stop - sl.start, -1)
        r = resize_images(rec[sl], size).reshape(sl.stop - sl.start, s, -1)
        o_std, o_const = row_standardise(o.astype(np.float64))
        r_std, r_const = row_standardise(r.astype(np.float64))
        corr = np.einsum("id,isd->is", o_std, r_std)
        corr[o_const[:, None] | r_const] = 0.0
        out[sl] = corr
    return np.clip(out, -1.0, 1.0)


def _ssim_batch(
    a: np.ndarray,
    b: np.ndarray,
    *,
    variant: SSIMVariant,
    sigma: float,
    truncate: float,
    data_range: float,
    k1: float,
    k2: float,
) -> np.ndarray:
    """Mean SSIM of each pair of grayscale images a[i], b[i] (float64, (m, H, W))."""
    if variant == "2d":
        sig: tuple[float, ...] = (0.0, sigma, sigma)
    else:  # "columns": each column is its own 1-D signal along the image's height
        sig = (0.0, sigma, 0.0)

    def filt(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, sig, mode="reflect", truncate=truncate)

    ux, uy = filt(a), filt(b)
    vx = filt(a * a) - ux * ux
    vy = filt(b * b) - uy * uy
    vxy = filt(a * b) - ux * uy
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    # Leave out the border where the window reaches past the image (as scikit-image does).
    pad = int(truncate * sigma + 0.5)
    h, w = s.shape[1:]
    inner = s[:, pad : h - pad, pad : w - pad] if variant == "2d" else s[:, pad : h - pad, :]
    return inner.mean(axis=(1, 2))


def ssim(
    originals: Any,
    reconstructions: Any,
    *,
    size: int = DEFAULTS.evaluation.eval_size,
    variant: SSIMVariant = "2d",
    sigma: float = 1.5,
    batch_size: int = 4,
) -> np.ndarray:
    """Structural similarity of each grayscale original and its reconstruction(s).

    Both sets are resized to ``size`` px (bilinear, antialiased), converted to gray with
    ``rgb2gray``'s weights, and compared with Gaussian-weighted local statistics (``sigma``
    1.5, truncated at 3.5 sigma), population covariances, ``K1 = 0.01``, ``K2 = 0.03``, data
    range 1; the mean is taken away from a border of ``int(3.5 * sigma + 0.5)`` px.

    Parameters
    ----------
    originals : ndarray (n, H, W, 3)
        The seen images, uint8 or floats in [0, 1].
    reconstructions : ndarray (n, H', W', 3) or (n, n_samples, H', W', 3) or (H', W', 3)
        Reconstructions in the same order; a single image is compared with every original.
    size : int
        Side in pixels at which the images are compared (at least the window, 11 px).
    variant : {"2d", "columns"}
        ``"2d"``: the standard 2-D SSIM (scikit-image's ``structural_similarity`` with the
        settings above on 2-D gray images). ``"columns"``: what the same call computes when
        ``multichannel=True`` is passed for a 2-D gray image, as MindEye's and Brain-Diffuser's
        evaluation scripts do: scikit-image versions that honour that flag take the last axis
        as channels, so each column is scored as a 1-D signal along the height and the result
        averaged over columns. Newer scikit-image ignores the flag, giving ``"2d"``. Report
        which one a number uses.
    sigma : float
        Standard deviation of the Gaussian window in pixels.
    batch_size : int
        Originals processed at once.

    Returns
    -------
    ndarray (n,) or (n, n_samples)
        SSIM per reconstruction (1 for identical images); the reported score is the mean.
    """
    check_ssim_options(size, variant, sigma)
    orig, rec, had_samples = check_pairs(originals, reconstructions)
    return squeeze_samples(ssim_scores(orig, rec, size, variant, sigma, batch_size), had_samples)


def check_ssim_options(size: int, variant: str, sigma: float) -> None:
    """Reject an unknown variant, a non-positive ``sigma`` or images smaller than the window."""
    if variant not in ("2d", "columns"):
        raise UsageError(f"variant={variant!r}: use '2d' or 'columns'")
    if not sigma > 0:
        raise UsageError(f"sigma={sigma}: the SSIM window needs a positive width")
    win = 2 * int(3.5 * sigma + 0.5) + 1
    if int(size) < win:
        raise UsageError(f"size={size}: SSIM needs images of at least {win} px (its window)")


#: Memory for one block of standardised originals in :func:`pixcorr_matrix` (float64).
_MATRIX_BLOCK_BYTES = 2**28


def pixcorr_matrix(orig: np.ndarray, rec: np.ndarray, size: int, batch_size: int) -> np.ndarray:
    """PixCorr of every original with every reconstruction of checked arrays (n, H, W, 3) and
    (n, S, H', W', 3): ``[i, c]`` is the mean over samples of r(original i, reconstruction c),
    so the diagonal is ``pixcorr_scores(...).mean(axis=1)`` and a permutation of the labels is
    a permutation of the columns (the PixCorr null). Originals are standardised in blocks of
    at most 256 MB; each block is one matrix product with the reconstructions' mean
    standardised pixels (r is linear in the standardised reconstruction)."""
    n, s = rec.shape[:2]
    block = max(1, min(n, _MATRIX_BLOCK_BYTES // (8 * 3 * size * size)))
    out = np.zeros((n, n))
    for osl in batches(n, block):
        o = resize_images(orig[osl], size).reshape(osl.stop - osl.start, -1)
        o_std, o_const = row_standardise(o.astype(np.float64))
        o_std[o_const] = 0.0  # a constant image scores 0, as in pixcorr_scores
        for rsl in batches(n, batch_size):
            r = resize_images(rec[rsl], size).reshape(rsl.stop - rsl.start, s, -1)
            r_std, r_const = row_standardise(r.astype(np.float64))
            r_std[r_const] = 0.0
            out[osl, rsl] = o_std @ r_std.mean(axis=1).T
    return np.clip(out, -1.0, 1.0)


def ssim_scores(
    orig: np.ndarray,
    rec: np.ndarray,
    size: int,
    variant: SSIMVariant,
    sigma: float,
    batch_size: int,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """SSIM of checked arrays → (n, S); reconstruction i against original ``order[i]``."""
    truncate = 3.5
    n, s = rec.shape[:2]
    idx = np.arange(n) if order is None else order
    out = np.zeros((n, s))
    for sl in batches(n, batch_size):
        m = sl.stop - sl.start
        go = to_grayscale(resize_images(orig[idx[sl]], size))
        gr = to_grayscale(resize_images(rec[sl], size))
        a = np.repeat(go, s, axis=0)
        b = gr.reshape(m * s, *gr.shape[2:])
        out[sl] = _ssim_batch(
            a, b, variant=variant, sigma=sigma, truncate=truncate, data_range=1.0, k1=0.01, k2=0.03
        ).reshape(m, s)
    return out
